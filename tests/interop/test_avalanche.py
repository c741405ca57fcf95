"""Every registered strategy inside Avalanche's own loop, with the same losses as under Lightning."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics
from avalanche.training.plugins import EvaluationPlugin
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.build import trainer_factory
from lifelong.data import avalanche_benchmark, resolve_root, stream_from_avalanche
from lifelong.interop.avalanche import as_avalanche
from lifelong.interop.mlflow_logger import MlflowLogger
from lifelong.loop import LoaderSettings, train_experience
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names

PER_CLASS = 4  # 2 classes x 4 samples: every experience is exactly one batch of 8


@pytest.fixture(scope="module")
def benchmark():
    return avalanche_benchmark(
        "digits", "class_incremental", 5, root=resolve_root(None), seed=0, train_per_class=PER_CLASS
    )


def fresh_model(name: str):
    head = STRATEGIES.get(name).requires_head or "linear"
    torch.manual_seed(0)
    return build_model("mlp", head, num_classes=10, input_shape=(1, 8, 8), backbone_kwargs={"hidden": [32]})


def seeded(strategy):
    """The strategy with the global RNG re-seeded before setup and every step (augmentations draw from it).

    Both drivers then give each step the same random numbers whatever else consumed the RNG before.
    """
    original_setup, original_loss, steps = strategy.setup, strategy.training_loss, itertools.count()

    def setup(model, stream_info):  # strategies may build their own modules here (SCR's projection)
        torch.manual_seed(999)
        return original_setup(model, stream_info)

    def training_loss(model, batch):
        torch.manual_seed(1000 + next(steps))
        return original_loss(model, batch)

    strategy.setup, strategy.training_loss = setup, training_loss
    return strategy


class LossRecorder(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def before_backward(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def avalanche_losses(name, benchmark, n_experiences=2):
    model = fresh_model(name)
    recorder = LossRecorder()
    learner = as_avalanche(
        seeded(build_strategy(name)),
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=2 * PER_CLASS,
        plugins=[recorder],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    L.seed_everything(0, verbose=False)
    for experience in list(benchmark.train_stream)[:n_experiences]:
        learner.train(experience)
    return recorder.losses


def lightning_losses(name, benchmark, n_experiences=2):
    stream = stream_from_avalanche(benchmark, "digits", "class_incremental")
    model = fresh_model(name)
    strategy = seeded(build_strategy(name))
    module = ContinualModule(model, strategy, lambda p: torch.optim.SGD(p, lr=0.1), len(stream), log_every_n_steps=1)
    losses: list[float] = []
    module.step_reporter = lambda step, metrics: losses.append(metrics["train/loss"])
    strategy.setup(model, stream.info)
    make_trainer = trainer_factory(config.load(overrides=["train.epochs=1"]))
    L.seed_everything(0, verbose=False)
    for experience in stream.train[:n_experiences]:
        train_experience(module, experience, make_trainer(), LoaderSettings(2 * PER_CLASS, 256))
    return losses


@pytest.mark.parametrize("name", strategy_names("classifier"))
def test_avalanche_and_lightning_drivers_give_the_same_losses(name, benchmark):
    from_avalanche = avalanche_losses(name, benchmark)
    from_lightning = lightning_losses(name, benchmark)
    assert len(from_avalanche) == len(from_lightning) >= 2  # one step per batch of 8 (joint: more later)
    assert from_avalanche == pytest.approx(from_lightning, rel=1e-5, abs=1e-6)


def test_two_experiences_in_avalanche_end_in_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    bench = avalanche_benchmark("digits", "class_incremental", 5, root=resolve_root(None), seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", "linear", num_classes=10, input_shape=(1, 8, 8), backbone_kwargs={"hidden": [64]})
    logger = MlflowLogger("avalanche-interop", "er-digits-s0", uri=uri, params={"strategy.name": "er"})
    evaluator = EvaluationPlugin(
        accuracy_metrics(minibatch=True, experience=True, stream=True),
        loss_metrics(minibatch=True, experience=True),
        forgetting_metrics(experience=True, stream=True),
        loggers=[logger],
    )
    learner = as_avalanche(
        build_strategy("er", memory_size=100),
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=16,
        train_epochs=3,
        evaluator=evaluator,
    )
    test_stream = list(bench.test_stream)[:2]
    learner.eval(test_stream)
    for experience in list(bench.train_stream)[:2]:
        learner.train(experience, eval_streams=[])
        learner.eval(test_stream)
    logger.close()

    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy.name"] == "er"
    history = {m.step: m.value for m in client.get_metric_history(logger.run_id, "eval/acc/exp0")}
    assert sorted(history) == [0, 1]
    assert len(client.get_metric_history(logger.run_id, "eval/init_acc/exp1")) == 1
    avg = {m.step: m.value for m in client.get_metric_history(logger.run_id, "stream/avg_acc")}
    row = [logger.matrix.row(1)[j] for j in range(2)]
    assert avg[1] == pytest.approx(sum(row) / 2)
    assert avg[1] > 0.7  # two binary tasks of real digits, with replay: far above chance (0.5 within the stream)
    train_loss = client.get_metric_history(logger.run_id, "train/loss")
    assert len(train_loss) > 10
    assert [m.step for m in train_loss] == sorted(m.step for m in train_loss)
    artifacts = {a.path for a in client.list_artifacts(logger.run_id)}
    assert {"accuracy_matrix.csv", "accuracy_matrix.png"} <= artifacts


def test_the_adapter_needs_a_lifelong_model():
    with pytest.raises(TypeError, match="ContinualClassifier"):
        as_avalanche(build_strategy("finetune"), torch.nn.Linear(4, 2), torch.optim.SGD([torch.zeros(1)], lr=0.1))


def test_stream_info_without_a_class_timeline_comes_from_the_targets(digits_stream, tiny_model):
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import as_classification_dataset

    from lifelong.interop.avalanche import stream_info_of

    class Items(torch.utils.data.Dataset):
        def __init__(self, data):
            self.data, self.targets = data, data.y.tolist()

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return self.data.x[i], int(self.data.y[i]), 0

    datasets = [as_classification_dataset(Items(e.dataset)) for e in digits_stream.train[:3]]
    bench = benchmark_from_datasets(train=datasets, test=datasets)
    info = stream_info_of(bench.train_stream[0], tiny_model)
    assert info.classes_per_experience == [sorted(e.classes) for e in digits_stream.train[:3]]
    assert info.input_shape == (1, 8, 8)
    assert info.n_experiences == 3
