"""A lifelong strategy (here ER; any registered name works) trained by Avalanche's own loop.

Avalanche keeps its loop, plugins, metrics and loggers; lifelong supplies the strategy. Metrics go
to MLflow through lifelong's MlflowLogger with lifelong's names (open them with `just ui`).

    python examples/lifelong_strategy_in_avalanche.py --strategy er
"""

from __future__ import annotations

import argparse

import torch
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics
from avalanche.training.plugins import EvaluationPlugin

from lifelong.data import avalanche_benchmark, resolve_root
from lifelong.interop.avalanche import as_avalanche
from lifelong.interop.mlflow_logger import MlflowLogger
from lifelong.models import build_model
from lifelong.strategies import STRATEGIES, build_strategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="er", choices=STRATEGIES.names())
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    # Any Avalanche benchmark works here (SplitMNIST(...), your own); Split Digits needs no download.
    benchmark = avalanche_benchmark("digits", "class_incremental", 5, root=resolve_root(None), seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", "linear", num_classes=10, input_shape=(1, 8, 8))
    logger = MlflowLogger("avalanche_examples", f"{args.strategy}-digits-s0", params=vars(args))
    learner = as_avalanche(
        build_strategy(args.strategy),
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=32,
        train_epochs=args.epochs,
        evaluator=EvaluationPlugin(
            accuracy_metrics(minibatch=True, experience=True, stream=True),
            loss_metrics(minibatch=True, experience=True),
            forgetting_metrics(experience=True, stream=True),
            loggers=[logger],
        ),
    )
    learner.eval(benchmark.test_stream)
    for experience in benchmark.train_stream:
        learner.train(experience, eval_streams=[])
        learner.eval(benchmark.test_stream)
    logger.close()
    assert logger.matrix is not None
    avg_acc = logger.matrix.metrics_so_far()["avg_acc"]
    print(f"average accuracy after the stream: {avg_acc:.3f} (MLflow run {logger.run_id})")


if __name__ == "__main__":
    main()
