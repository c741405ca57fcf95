"""Online training throughput on Split Fashion-MNIST: lifelong's loop vs a plain-PyTorch loop (and Avalanche for ER).

ER, PCR and HPCR, each as its shipped experiment (``experiments/fmnist_online_<method>.yaml``: 5 class-incremental
tasks of 2 classes, one pass in batches of 10, a reservoir memory of 500, a replay batch of 10 every step, SGD lr
0.1), on the 2x256 MLP or the reduced ResNet-18 (nf=20). The drivers:

- ``plain``: a hand-written PyTorch loop with the same model, buffer and batches. For ER the loss is written out
  (cross-entropy on incoming + replayed samples); for PCR and HPCR the loop calls the strategy's own
  ``training_loss`` / ``after_training_step`` (plain PyTorch: replay, augmented view, loss) around a bare
  ``backward()`` and ``optimizer.step()``, so the maths and the augmentation are the method's, and only the
  driver differs;
- ``lifelong``: the Lightning loop, through ``train_experience`` as ``lifelong run`` drives it (tracking off);
- ER only, unless ``--skip-avalanche``: ``avalanche`` (Avalanche 0.6's own online ER) and ``as_avalanche``
  (lifelong's ER strategy inside Avalanche's loop).

Only training is timed (no evaluation); the figure is stream samples per second (incoming samples, replay not
counted), the median of interleaved repeats, each with the 1-minute load average when it ended.

    python benchmarks/throughput.py [--backbones mlp,reduced_resnet18] [--methods er,pcr,hpcr] [--repeats 3]
        [--per-class 1000] [--quick] [--json PATH]

Prints a markdown table; ``--json`` writes a list of records
``{"backbone", "method", "samples_per_s": {driver: median}, "ratio_to_plain": lifelong / plain, ...}``.
Run it with ``OMP_NUM_THREADS=1`` (one intra-op thread, as the figures in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from lifelong import config
from lifelong.build import build_parts, loader_settings, trainer_factory
from lifelong.data.types import Stream
from lifelong.loop import evaluate, train_experience
from lifelong.module import ContinualModule

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BACKBONES = {"mlp": {"hidden": [256, 256]}, "reduced_resnet18": {"nf": 20}}
METHODS = ("er", "pcr", "hpcr")
MEMORY, BATCH, LR = 500, 10, 0.1
# --quick: training images per class, so that every backbone and method runs once in well under two minutes
QUICK_PER_CLASS = {"mlp": 200, "reduced_resnet18": 8}


def load_config(backbone: str, method: str, per_class: int, tmp: Path) -> config.ExperimentConfig:
    """The method's shipped experiment with ``backbone`` (its options replaced, not merged) and ``per_class``."""
    data = config.read_yaml(EXPERIMENTS / f"fmnist_online_{method}.yaml")
    data["model"]["backbone"], data["model"]["backbone_kwargs"] = backbone, BACKBONES[backbone]
    path = tmp / f"{backbone}_{method}.yaml"
    path.write_text(yaml.safe_dump(data))
    overrides = ["tracking.enabled=false", "checkpoint.enabled=false", f"output_dir={tmp / 'runs'}"]
    return config.load(path, [*overrides, f"stream.train_per_class={per_class}", "stream.test_per_class=1"])


def build(cfg: config.ExperimentConfig) -> tuple[Stream, ContinualModule]:
    """Stream and module of ``cfg``, the model initialised from seed 0 (the same weights for every driver)."""
    torch.manual_seed(0)
    stream, module = build_parts(cfg)
    module.strategy.setup(module.model, stream.info)
    return stream, module


def plain_er(cfg: config.ExperimentConfig) -> float:
    """ER written out: reservoir memory, replay batch appended, cross-entropy, SGD."""
    stream, module = build(cfg)
    model, memory = module.model, module.strategy.memory  # a fresh ReservoirBuffer(500, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    samples, started = 0, time.perf_counter()
    model.train()
    for experience in stream.train:
        data = experience.dataset
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), BATCH):
            x, y, t = data.__getitems__(order[start : start + BATCH].tolist())
            replay = memory.sample(BATCH)
            xr, yr = (torch.cat([x, replay["x"]]), torch.cat([y, replay["y"]])) if replay else (x, y)
            loss = torch.nn.functional.cross_entropy(model(xr), yr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            memory.add(x=x, y=y, t=t)
            samples += len(t)
    return samples / (time.perf_counter() - started)


def plain_strategy(cfg: config.ExperimentConfig) -> float:
    """The strategy's own loss and memory update in a bare loop: ``backward()`` and ``step()`` by hand."""
    stream, module = build(cfg)
    model, strategy = module.model, module.strategy
    generator = torch.Generator().manual_seed(0)
    samples, started = 0, time.perf_counter()
    model.train()
    for experience in stream.train:
        strategy.before_experience(model, experience)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)  # fresh per experience, as lifelong does
        data = strategy.train_dataset(experience)
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), BATCH):
            batch = data.__getitems__(order[start : start + BATCH].tolist())
            output = strategy.training_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()
            with torch.no_grad():
                strategy.after_training_step(model, batch, output)
            samples += len(batch[1])
        strategy.after_experience(model, experience)
    return samples / (time.perf_counter() - started)


def lifelong_loop(cfg: config.ExperimentConfig) -> float:
    """Our Lightning loop through the same code path as ``lifelong run`` (evaluation excluded)."""
    stream, module = build(cfg)
    make_trainer = trainer_factory(cfg)
    settings = loader_settings(cfg)
    samples, seconds = 0, 0.0
    for experience in stream.train:
        trainer = make_trainer()  # built outside the timed region, as the loop builds it once per experience
        started = time.perf_counter()
        samples += train_experience(module, experience, trainer, settings)
        seconds += time.perf_counter() - started
    return samples / seconds


def avalanche_tasks(stream: Stream):  # noqa: ANN201
    """The stream's training tasks as an Avalanche benchmark (one experience per task)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import as_classification_dataset

    from lifelong.data.types import TensorExperienceDataset

    class Plain(torch.utils.data.Dataset):  # (x, y, t) items with .targets, as Avalanche expects
        def __init__(self, data: TensorExperienceDataset) -> None:
            self.data, self.targets = data, data.y.tolist()

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int):  # noqa: ANN204
            return self.data.x[i], int(self.data.y[i]), 0

    warnings.filterwarnings("ignore", module="avalanche")  # per-experience deprecation and logger notices
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # ReplayPlugin's, once per 10-sample experience
    train = [as_classification_dataset(Plain(e.dataset)) for e in stream.train]
    return benchmark_from_datasets(train=train, test=train[:1])


def avalanche_loop(cfg: config.ExperimentConfig) -> float:
    """Avalanche 0.6's online ER: an online stream of 10-sample experiences, Naive + ReplayPlugin(reservoir)."""
    from avalanche.benchmarks.scenarios import split_online_stream
    from avalanche.training import Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

    stream, module = build(cfg)
    online = split_online_stream(avalanche_tasks(stream).train_stream, experience_size=BATCH, seed=0)
    model = module.model
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


def adapter_loop(cfg: config.ExperimentConfig) -> float:
    """lifelong's ER strategy driven by Avalanche's own loop (``as_avalanche``), one task per ``train`` call."""
    from avalanche.training.plugins import EvaluationPlugin

    from lifelong.interop.avalanche import as_avalanche

    stream, module = build(cfg)
    benchmark = avalanche_tasks(stream)
    model = module.model
    learner = as_avalanche(
        module.strategy,
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


def compiled_loop(cfg: config.ExperimentConfig) -> float:
    """The Lightning loop with ``trainer.compile=true`` (compilation included in the time)."""
    return lifelong_loop(replace(cfg, trainer=replace(cfg.trainer, compile=True)))


Driver = Callable[[config.ExperimentConfig], float]


def drivers(method: str, avalanche: bool, compiled: bool = False) -> dict[str, Driver]:
    """The loops timed for ``method``: ``plain`` and ``lifelong`` always, Avalanche's for ER, compiled on request."""
    out: dict[str, Driver] = {"plain": plain_er if method == "er" else plain_strategy, "lifelong": lifelong_loop}
    if compiled:
        out["lifelong_compiled"] = compiled_loop
    if avalanche and method == "er":
        out.update(avalanche=avalanche_loop, as_avalanche=adapter_loop)
    return out


def evaluation_seconds(backbone: str, test_per_class: int, batch_size: int, tmp: Path) -> float:
    """Seconds of one evaluation pass (``lifelong.loop.evaluate``, as after each experience) over the test stream."""
    cfg = load_config(backbone, "er", 1, tmp)
    cfg = replace(
        cfg,
        stream=replace(cfg.stream, test_per_class=test_per_class),
        train=replace(cfg.train, eval_batch_size=batch_size),
    )
    stream, module = build(cfg)
    trainer = trainer_factory(cfg)()
    started = time.perf_counter()
    evaluate(trainer, module, stream, loader_settings(cfg))
    return time.perf_counter() - started


def measure_evaluation(backbone: str, per_class: int, batch_size: int, repeats: int, tmp: Path) -> dict[str, Any]:
    """The median seconds of ``repeats`` evaluation passes over ``10 * per_class`` test images."""
    seconds, loads = [], []
    for _ in range(repeats):
        seconds.append(evaluation_seconds(backbone, per_class, batch_size, tmp))
        loads.append(load_average())
    return {
        "backbone": backbone,
        "eval_batch_size": batch_size,
        "images": 10 * per_class,
        "seconds": statistics.median(seconds),
        "repeats": seconds,
        "load_average": {"min": min(loads), "max": max(loads)},
    }


def load_average() -> float:
    """The 1-minute load average (``uptime``'s first figure)."""
    return os.getloadavg()[0]


def record(backbone: str, method: str, runs: dict[str, list[float]], loads: list[float]) -> dict[str, Any]:
    """One result: the median samples/s of each driver over its repeats and lifelong's ratio to the plain loop."""
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "backbone": backbone,
        "method": method,
        "samples_per_s": medians,
        "ratio_to_plain": medians["lifelong"] / medians["plain"],
        "repeats": runs,
        "load_average": {"min": min(loads), "max": max(loads)},
    }


def measure(
    backbone: str, method: str, per_class: int, repeats: int, avalanche: bool, tmp: Path, compiled: bool = False
) -> dict[str, Any]:
    """Time every driver of ``method`` ``repeats`` times, interleaved (a drift in load hits every driver alike)."""
    cfg = load_config(backbone, method, per_class, tmp)
    loops = drivers(method, avalanche, compiled)
    runs: dict[str, list[float]] = {name: [] for name in loops}
    loads = []
    for _ in range(repeats):
        for name, loop in loops.items():
            runs[name].append(loop(cfg))
            loads.append(load_average())
    return record(backbone, method, runs, loads) | {"per_class": per_class}


def table(records: Sequence[dict[str, Any]]) -> str:
    """The records as a markdown table, one row per backbone and method."""
    lines = ["| backbone | method | driver | samples/s (median) | ratio to plain | repeats | load |", "|---" * 7 + "|"]
    for r in records:
        plain = r["samples_per_s"]["plain"]
        load = f"{r['load_average']['min']:.2f}-{r['load_average']['max']:.2f}"
        for name, value in r["samples_per_s"].items():
            values = ", ".join(f"{v:.0f}" for v in r["repeats"][name])
            lines.append(
                f"| {r['backbone']} | {r['method']} | {name} | {value:.0f} | {value / plain:.2f}x | {values} | {load} |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mlp,reduced_resnet18", help="comma-separated: mlp, reduced_resnet18")
    parser.add_argument("--methods", default="er,pcr,hpcr", help="comma-separated: er, pcr, hpcr")
    parser.add_argument("--per-class", type=int, default=None, help="training images per class (default: by backbone)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--skip-avalanche", action="store_true", help="time only plain and lifelong for ER")
    parser.add_argument("--quick", action="store_true", help="one repeat of small subsets, no Avalanche (< 2 min)")
    parser.add_argument("--compile", action="store_true", help="also time lifelong with trainer.compile=true")
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument("--eval-batch-sizes", default="", help="also time evaluation, e.g. 100,1000")
    parser.add_argument("--eval-per-class", type=int, default=1000, help="test images per class scored (1000 = all)")
    parser.add_argument("--eval-json", type=Path, default=None, help="write the evaluation records here")
    args = parser.parse_args(argv)
    args.backbones, args.methods = args.backbones.split(","), args.methods.split(",")
    args.eval_batch_sizes = [int(b) for b in args.eval_batch_sizes.split(",") if b]
    for name, allowed in (("backbones", BACKBONES), ("methods", METHODS)):
        unknown = [v for v in getattr(args, name) if v not in allowed]
        if unknown:
            parser.error(f"--{name}: unknown {unknown}; choose from {', '.join(allowed)}")
    if args.quick:
        args.repeats, args.skip_avalanche, args.eval_per_class = 1, True, 20
    return args


def per_class_of(args: argparse.Namespace, backbone: str) -> int:
    """``--per-class``, or the backbone's default (1000 for the MLP, 100 for the ResNet; ``--quick``: fewer)."""
    if args.per_class is not None:
        return args.per_class
    return QUICK_PER_CLASS[backbone] if args.quick else {"mlp": 1000, "reduced_resnet18": 100}[backbone]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        records = [
            measure(
                backbone,
                method,
                per_class_of(args, backbone),
                args.repeats,
                not args.skip_avalanche,
                Path(tmp),
                args.compile,
            )
            for backbone in args.backbones
            for method in args.methods
        ]
        evaluations = [
            measure_evaluation(backbone, args.eval_per_class, batch_size, args.repeats, Path(tmp))
            for backbone in args.backbones
            for batch_size in args.eval_batch_sizes
        ]
    threads = torch.get_num_threads()
    print(f"\nOnline Split Fashion-MNIST, batch {BATCH} + replay {BATCH}, M={MEMORY}, {threads} thread(s)")
    print(table(records))
    if evaluations:
        print("\n| backbone | eval batch size | test images | seconds (median) | images/s | load |")
        print("|---" * 6 + "|")
        for e in evaluations:
            load = f"{e['load_average']['min']:.2f}-{e['load_average']['max']:.2f}"
            print(
                f"| {e['backbone']} | {e['eval_batch_size']} | {e['images']} | {e['seconds']:.2f} | "
                f"{e['images'] / e['seconds']:.0f} | {load} |"
            )
    if args.eval_json is not None:
        args.eval_json.write_text(json.dumps(evaluations, indent=2))
    if args.json is not None:
        machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r | {"machine": machine} for r in records], indent=2))
        print(f"written {args.json}")
    return records


if __name__ == "__main__":
    main()
