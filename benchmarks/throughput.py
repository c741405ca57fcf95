"""Online ER throughput on Split Fashion-MNIST: lifelong's loop vs a plain-PyTorch loop vs Avalanche.

Also lifelong's ER strategy inside Avalanche's own loop (``lifelong.interop.avalanche``).

All three do the same math: 5 class-incremental tasks of 2 classes, one pass in batches of 10,
a reservoir memory of 500, a replay batch of 10 drawn every step, cross-entropy on the joint
batch of 20, SGD lr 0.1, the same backbone. Only training is timed (no evaluation); the figure
is stream samples per second (incoming samples, replay not counted).

    python benchmarks/throughput.py [--per-class 1000] [--backbone mlp|reduced_resnet18|timm:...] [--repeats 3]

Prints a markdown table and writes benchmarks/results/throughput_<backbone>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from lifelong import config
from lifelong.buffers import ReservoirBuffer
from lifelong.data import build_stream, resolve_root
from lifelong.models import build_model

RESULTS = Path(__file__).parent / "results"
MEMORY, BATCH, LR = 500, 10, 0.1


def load_stream(per_class: int):
    return build_stream(
        "fashion_mnist", "class_incremental", 5, root=resolve_root(None), seed=0, train_per_class=per_class
    )


def new_model(stream, backbone: str):
    torch.manual_seed(0)
    info = stream.info
    return build_model(backbone, "linear", num_classes=info.num_classes, input_shape=info.input_shape)


def plain_loop(stream, backbone: str) -> float:
    """The reference: a hand-written loop with the same model, buffer and batches."""
    model = new_model(stream, backbone)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    memory = ReservoirBuffer(MEMORY, seed=0)
    generator = torch.Generator().manual_seed(0)
    samples, started = 0, time.perf_counter()
    model.train()
    for experience in stream.train:
        data = experience.dataset
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), BATCH):
            x, y, t = data.__getitems__(order[start : start + BATCH].tolist())
            replay = memory.sample(BATCH)
            if replay:
                x, y = torch.cat([x, replay["x"]]), torch.cat([y, replay["y"]])
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            memory.add(x=x[: len(t)], y=y[: len(t)], t=t)
            samples += len(t)
    return samples / (time.perf_counter() - started)


def lifelong_loop(stream, backbone: str, tracking: bool, tmp: Path) -> float:
    """Our Lightning loop through the same code path as `lifelong run` (evaluation excluded)."""
    from lifelong.build import make_optimizer, trainer_factory
    from lifelong.listener import RunListener
    from lifelong.loop import LoaderSettings, train_experience
    from lifelong.module import ContinualModule
    from lifelong.strategies import build_strategy
    from lifelong.tracking import MlflowTracker, default_uri

    cfg = config.load("experiments/fmnist_online_er.yaml", [f"model.backbone={backbone}", f"output_dir={tmp}"])
    model = new_model(stream, backbone)
    strategy = build_strategy("er", memory_size=MEMORY, replay_batch_size=BATCH, seed=0)
    module = ContinualModule(model, strategy, make_optimizer(cfg.optim), len(stream), cfg.train.log_every_n_steps)
    tracker = None
    if tracking:
        tracker = MlflowTracker(default_uri(tmp), "throughput", "er-bench")
        tracker.start({}, {})
    listener = RunListener(tracker, quiet=True)
    module.step_reporter = listener.on_train_metrics
    strategy.setup(model, stream.info)
    make_trainer = trainer_factory(cfg)
    settings = LoaderSettings(BATCH, 1000, 0, 0)
    samples, seconds = 0, 0.0
    for experience in stream.train:
        trainer = make_trainer()  # built outside the timed region, as the loop builds it once per experience
        started = time.perf_counter()
        samples += train_experience(module, experience, trainer, settings)
        seconds += time.perf_counter() - started
    if tracker:
        tracker.end()
    return samples / seconds


def avalanche_tasks(stream):
    """The stream's training tasks as an Avalanche benchmark (one experience per task)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import as_classification_dataset

    from lifelong.data.types import TensorExperienceDataset

    class Plain(torch.utils.data.Dataset):  # (x, y, t) items with .targets, as Avalanche expects
        def __init__(self, data: TensorExperienceDataset) -> None:
            self.data, self.targets = data, data.y.tolist()

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int):
            return self.data.x[i], int(self.data.y[i]), 0

    warnings.filterwarnings("ignore", module="avalanche")  # per-experience deprecation and logger notices
    train = [as_classification_dataset(Plain(e.dataset)) for e in stream.train]
    return benchmark_from_datasets(train=train, test=train[:1])


def avalanche_loop(stream, backbone: str) -> float:
    """Avalanche 0.6's online ER: an online stream of 10-sample experiences, Naive + ReplayPlugin(reservoir)."""
    from avalanche.benchmarks.scenarios import split_online_stream
    from avalanche.training import Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

    online = split_online_stream(avalanche_tasks(stream).train_stream, experience_size=BATCH, seed=0)
    model = new_model(stream, backbone)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=LR),
        train_mb_size=BATCH,
        train_epochs=1,
        eval_mb_size=1000,
        device="cpu",
        evaluator=None,
        plugins=[ReplayPlugin(mem_size=MEMORY, batch_size_mem=BATCH, storage_policy=ReservoirSamplingBuffer(MEMORY))],
    )
    samples, started = 0, time.perf_counter()
    for experience in online:
        strategy.train(experience)
        samples += len(experience.dataset)
    return samples / (time.perf_counter() - started)


def adapter_loop(stream, backbone: str) -> float:
    """lifelong's ER strategy driven by Avalanche's own loop (``as_avalanche``), one task per ``train`` call."""
    from avalanche.training.plugins import EvaluationPlugin

    from lifelong.interop.avalanche import as_avalanche
    from lifelong.strategies import build_strategy

    benchmark = avalanche_tasks(stream)
    model = new_model(stream, backbone)
    learner = as_avalanche(
        build_strategy("er", memory_size=MEMORY, replay_batch_size=BATCH),
        model,
        torch.optim.SGD(model.parameters(), lr=LR),
        train_mb_size=BATCH,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    samples, started = 0, time.perf_counter()
    for experience in benchmark.train_stream:
        learner.train(experience, eval_streams=[])
        samples += len(experience.dataset)
    return samples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000, help="training images per class (6000 = full set)")
    parser.add_argument("--backbone", default="mlp")
    parser.add_argument("--skip-avalanche", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    args = parser.parse_args()
    stream = load_stream(args.per_class)
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    loops = {
        "plain PyTorch loop": lambda: plain_loop(stream, args.backbone),
        "lifelong (tracking off)": lambda: lifelong_loop(stream, args.backbone, False, tmp),
        "lifelong (MLflow SQLite)": lambda: lifelong_loop(stream, args.backbone, True, tmp),
    }
    if not args.skip_avalanche:
        loops["Avalanche 0.6 Naive+ReplayPlugin"] = lambda: avalanche_loop(stream, args.backbone)
        loops["lifelong ER in Avalanche's loop (as_avalanche)"] = lambda: adapter_loop(stream, args.backbone)
    runs: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every loop alike
        for name, loop in loops.items():
            runs[name].append(loop())
    rows = {name: statistics.median(values) for name, values in runs.items()}
    plain = rows["plain PyTorch loop"]
    print(
        f"\nOnline ER, Split Fashion-MNIST ({args.per_class}/class), {args.backbone}, batch {BATCH}+{BATCH}, M={MEMORY}"
    )
    print("| loop | samples/s (median) | ratio to plain | all repeats |\n|---|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.0f} | {value / plain:.2f}x | {', '.join(f'{v:.0f}' for v in runs[name])} |")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "setting": {"per_class": args.per_class, "backbone": args.backbone, "batch": BATCH, "memory": MEMORY},
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "repeats": args.repeats,
        "samples_per_second": rows,
        "samples_per_second_all": runs,
        "ratio_to_plain": {k: v / plain for k, v in rows.items()},
    }
    path = RESULTS / f"throughput_{args.backbone.replace(':', '_')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
