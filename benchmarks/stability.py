"""Stability vs plasticity of CL methods on online Split Fashion-MNIST: layer-wise CKA and linear probes.

Runs experiments/analysis_fmnist_<method>.yaml (or analysis_fmnist_finetune.yaml with
``strategy.name=<method>`` and the method's default parameters when no such file exists) once per
seed, with the ``cka`` and ``linear_probe`` analyses of Kim & Han (CVPR 2023) enabled, and tabulates:

- CKA of every hidden layer between the reference model and the model after each experience;
- linear-probe test accuracy of the frozen backbone, overall / on the first experience's classes /
  on the later classes, before training and after each experience;
- the stream metrics (average accuracy, forgetting) for context.

    python benchmarks/stability.py [--methods finetune,er] [--seeds 0,1,2] [--per-class 2000] [--reference first]

Writes benchmarks/results/stability.json and .md, and an HTML report of every run (``--report``,
default <output>/stability.html). Methods default to finetune, er and every other registered method
among ``EXTRA_METHODS`` (e.g. hpcr once it exists).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from lifelong import config
from lifelong.report import load_run, write_report
from lifelong.run import run
from lifelong.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
BASE = "analysis_fmnist_finetune.yaml"
EXTRA_METHODS = ("hpcr",)
PROBE_KEYS = ("acc", "acc_first", "acc_later")


def experiment_file(method: str) -> tuple[Path, list[str]]:
    """The method's own analysis experiment, or the shared one with the method's defaults."""
    own = ROOT / "experiments" / f"analysis_fmnist_{method}.yaml"
    if own.exists():
        return own, []
    return ROOT / "experiments" / BASE, [f"strategy.name={method}", "strategy.params={}"]


def run_method(method: str, seed: int, args: argparse.Namespace) -> Path:
    path, overrides = experiment_file(method)
    cfg = config.load(
        str(path),
        [
            *overrides,
            f"seed={seed}",
            f"output_dir={args.output}",
            "tracking.enabled=false",
            f"stream.train_per_class={args.per_class}",
            f"analysis.cka.reference={args.reference}",
        ],
    )
    started = time.perf_counter()
    result = run(cfg, quiet=True)
    print(f"{method} seed {seed}: avg_acc {result.metrics['avg_acc']:.4f} in {time.perf_counter() - started:.0f}s")
    return result.run_dir


def mean_columns(tables: list[list[list[float]]]) -> tuple[list[list[float]], list[list[float]]]:
    """Cell-wise mean and sample std (0 for one run) of equally shaped tables; NaN cells stay NaN."""

    def reduce(values: list[float], std: bool) -> float:
        if any(math.isnan(v) for v in values):
            return math.nan
        if std:
            return statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values)

    shape = (len(tables[0]), len(tables[0][0]))
    cells = [[[t[i][j] for t in tables] for j in range(shape[1])] for i in range(shape[0])]
    return [[reduce(c, False) for c in row] for row in cells], [[reduce(c, True) for c in row] for row in cells]


def summarise(run_dirs: list[Path]) -> dict:
    """Mean (± std over seeds) CKA per layer and probe accuracies per evaluation point of one method."""
    runs = [load_run(d) for d in run_dirs]
    if any(r.cka is None or r.probe is None for r in runs):
        raise RuntimeError(f"a run of {run_dirs} lacks cka.csv or linear_probe.csv")
    points = [label for label, _ in runs[0].cka.rows]
    layers = runs[0].cka.header[1:]
    cka_mean, cka_std = mean_columns([[values for _, values in r.cka.rows] for r in runs])  # (points, layers)
    probe_index = [runs[0].probe.header.index(k) - 1 for k in PROBE_KEYS]
    probe_mean, probe_std = mean_columns(
        [[[values[i] for i in probe_index] for _, values in r.probe.rows] for r in runs]
    )
    stream = {}
    for key in ("avg_acc", "avg_inc_acc", "forgetting", "bwt"):
        values = [float(r.summary["metrics"][key]) for r in runs]
        stream[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return {
        "runs": len(runs),
        "points": points,
        "cka": {
            layer: {"mean": [row[i] for row in cka_mean], "std": [row[i] for row in cka_std]}
            for i, layer in enumerate(layers)
        },
        "linear_probe": {
            key: {"mean": [row[i] for row in probe_mean], "std": [row[i] for row in probe_std]}
            for i, key in enumerate(PROBE_KEYS)
        },
        "stream": stream,
    }


def finite_or_none(value):
    """NaN (not measured, e.g. CKA before the reference point) as ``None``: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def cell(mean: float | None, std: float | None, runs: int) -> str:
    if mean is None or std is None or math.isnan(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if runs > 1 else f"{mean:.3f}"


def markdown(results: dict) -> str:
    methods = results["methods"]
    first = next(iter(methods.values()))
    labels = ["init" if p == "init" else f"after {p}" for p in first["points"]]
    setting = results["setting"]
    lines = [
        "# Stability / plasticity on online Split Fashion-MNIST",
        "",
        f"{setting['per_class']} training images per class, 5 tasks of 2 classes, batches of 10, MLP 3x256; "
        f"CKA vs the `{setting['reference']}` model on {setting['cka_probe']} test images; linear probe on "
        f"{setting['probe_per_class']} training images per class (all classes), tested on the test stream; "
        f"seeds {setting['seeds']}.",
        "",
        "## Stream metrics",
        "",
        "| method | avg_acc | avg_inc_acc | forgetting |",
        "|---|---|---|---|",
    ]
    for name, m in methods.items():
        s, n = m["stream"], m["runs"]
        lines.append(
            f"| {name} | {cell(s['avg_acc']['mean'], s['avg_acc']['std'], n)} | "
            f"{cell(s['avg_inc_acc']['mean'], s['avg_inc_acc']['std'], n)} | "
            f"{cell(s['forgetting']['mean'], s['forgetting']['std'], n)} |"
        )
    for title, key, rows_of in (
        ("Layer-wise CKA vs the reference model", "cka", lambda m: m["cka"]),
        ("Linear-probe accuracy of the frozen backbone", "linear_probe", lambda m: m["linear_probe"]),
    ):
        lines += ["", f"## {title}", "", "| method | " + ("layer" if key == "cka" else "classes") + " | "]
        lines[-1] += " | ".join(labels) + " |"
        lines.append("|---|---|" + "---|" * len(labels))
        for name, m in methods.items():
            for row, values in rows_of(m).items():
                cells = [cell(a, b, m["runs"]) for a, b in zip(values["mean"], values["std"], strict=True)]
                lines.append(f"| {name} | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def default_methods() -> str:
    return ",".join(["finetune", "er", *(m for m in EXTRA_METHODS if m in STRATEGIES)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated strategy names (default: finetune,er[,hpcr])")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--per-class", type=int, default=2000, help="training images per class (6000 = full set)")
    parser.add_argument("--reference", default="first", choices=["init", "first"], help="CKA reference model")
    parser.add_argument("--output", default="runs/benchmarks/stability", help="where the runs are written")
    parser.add_argument("--report", default=None, help="HTML report (default: <output>/stability.html)")
    args = parser.parse_args()
    methods = [m.strip() for m in (args.methods or default_methods()).split(",") if m.strip()]
    unknown = [m for m in methods if m not in STRATEGIES]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {', '.join(STRATEGIES.names())}")
    seeds = [int(s) for s in args.seeds.split(",")]
    run_dirs = {m: [run_method(m, seed, args) for seed in seeds] for m in methods}
    base = config.load(str(ROOT / "experiments" / BASE))
    results = {
        "setting": {
            "per_class": args.per_class,
            "reference": args.reference,
            "seeds": seeds,
            "cka_probe": base.analysis["cka"]["probe_size"],
            "probe_per_class": base.analysis["linear_probe"]["train_per_class"],
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "methods": finite_or_none({m: summarise(dirs) for m, dirs in run_dirs.items()}),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stability.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / "stability.md").write_text(table)
    report = write_report(
        [d for dirs in run_dirs.values() for d in dirs],
        args.report or Path(args.output) / "stability.html",
        title=f"Stability / plasticity benchmark: {', '.join(methods)} (seeds {args.seeds})",
    )
    print(table)
    print(f"written: {RESULTS / 'stability.json'}, {RESULTS / 'stability.md'}, {report}")


if __name__ == "__main__":
    main()
