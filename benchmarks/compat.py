"""Compatibility on Split Fashion-MNIST: ER (learnable classifier) vs BCT vs CoReS vs CL2R vs HOC, over seeds.

Each run is ``experiments/compat_fmnist_<method>.yaml`` through ``lifelong.run.run`` (5 tasks of 2 classes,
1000 training images per class, 3 epochs per task, a 2x256 MLP, replay memory of 500). After every task
the ``compatibility`` analysis embeds the test gallery (200 images per class, all 10 classes) once with the
current model and keeps it; ``M[i][j]`` is the leave-one-out CMC top-1 of queries embedded by model ``i``
against the gallery of model ``j``. Reported, mean ± std over seeds: AC (strict: ties fail), AM, the final
self-test ``M[T-1][T-1]`` and the average classification accuracy after the last task. A second
compatibility matrix in the same runs restricts each pair to the classes the gallery's model had trained
on (``gallery_classes: seen``).

Second table (``--skip-replacement`` to leave it out): the same runs with a **model replacement** at task 2:
the weights of a model trained independently (jointly on all 10 classes, another random 1000 images per
class, same architecture and optimiser; d-Simplex head for the d-Simplex methods, linear head for ER)
are swapped in before task 2 (CL2R and HOC then use it as their teacher). BCT is left out there (its old
classifier would come from the swapped-in model). ER gets replacement through a benchmark-local
strategy ``er_replace``.

    python benchmarks/compat.py [--seeds 0,1,2] [--methods er,bct,cores,cl2r,hoc] [--skip-replacement]

Prints markdown tables and writes benchmarks/results/compat.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lifelong import config
from lifelong.analysis import ANALYSES
from lifelong.analysis.compatibility import Compatibility
from lifelong.data import build_stream, resolve_root
from lifelong.metrics.compatibility import compatibility_metrics
from lifelong.models import build_model
from lifelong.run import run
from lifelong.strategies import STRATEGIES, register_strategy
from lifelong.strategies.er import ExperienceReplay
from lifelong.strategies.replacement import load_replacement, parse_replacements

RESULTS = Path(__file__).parent / "results"
METHODS = ("er", "bct", "cores", "cl2r", "hoc")
REPLACED_METHODS = ("er", "cores", "cl2r", "hoc")
REPLACE_AT = 2


class SeenCompatibility(Compatibility):
    """The compatibility analysis restricted to the classes each gallery's model had trained on."""

    artifact_stem = "compatibility_seen_matrix"

    def __init__(self, **params: Any) -> None:
        super().__init__(**{**params, "gallery_classes": "seen"})


class ERWithReplacement(ExperienceReplay):
    """ER whose model is swapped for another one at the experiences of ``replace_at`` (benchmark only)."""

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed)
        self.replacements = parse_replacements(replace_at)

    def before_experience(self, model, experience) -> None:  # noqa: ANN001
        super().before_experience(model, experience)
        if experience.index in self.replacements:
            load_replacement(model, self.replacements[experience.index])


def register_helpers() -> None:
    if "compatibility_seen" not in ANALYSES:
        ANALYSES.register("compatibility_seen")(SeenCompatibility)
    if "er_replace" not in STRATEGIES:
        register_strategy("er_replace")(ERWithReplacement)


def read_matrix(path: Path) -> list[list[float]]:
    rows = list(csv.reader(path.open()))[1:]
    return [[float(v) if v else float("nan") for v in row[1:]] for row in rows]


def pretrain(head: str, seed: int, tmp: Path) -> Path:
    """An independent model: jointly trained on all 10 classes of another 1000-per-class subsample."""
    base = config.load("experiments/_compat_fmnist.yaml")
    torch.manual_seed(seed)
    stream = build_stream(
        "fashion_mnist", "class_incremental", 1, root=resolve_root(None), seed=seed, train_per_class=1000
    )
    info = stream.info
    model = build_model(
        base.model.backbone, head, info.num_classes, info.input_shape, backbone_kwargs=dict(base.model.backbone_kwargs)
    )
    optim = base.optim
    optimizer = torch.optim.SGD(
        model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    data = stream.train[0].dataset
    generator = torch.Generator().manual_seed(seed)
    for _ in range(base.train.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), base.train.batch_size):
            x, y, _ = data.__getitems__(order[start : start + base.train.batch_size].tolist())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp / f"replacement_{head}_s{seed}.pt"
    torch.save(model.state_dict(), path)
    return path


def one_run(method: str, seed: int, tmp: Path, replacement: Path | None) -> dict[str, Any]:
    overrides = [
        f"seed={seed}",
        f"output_dir={tmp}",
        "tracking.enabled=false",
        "checkpoint.enabled=false",
        "analysis.compatibility_seen.gallery_per_class=200",
    ]
    if replacement is not None:
        name = "er_replace" if method == "er" else method
        overrides += [f"strategy.name={name}", "strategy.params.memory_size=500"]
        overrides += [f"strategy.params.replace_at={{{REPLACE_AT}: {replacement}}}"]
    cfg = config.load(f"experiments/compat_fmnist_{method}.yaml", overrides)
    result = run(cfg, quiet=True)
    matrix = read_matrix(result.run_dir / "compatibility_matrix.csv")
    seen = read_matrix(result.run_dir / "compatibility_seen_matrix.csv")
    all_metrics, seen_metrics = compatibility_metrics(matrix), compatibility_metrics(seen)
    return {
        "ac": all_metrics["ac"],
        "am": all_metrics["am"],
        "self_test": all_metrics["self_test"],
        "bc": all_metrics["bc"],
        "fc": all_metrics["fc"],
        "ac_seen": seen_metrics["ac"],
        "am_seen": seen_metrics["am"],
        "avg_acc": result.metrics["avg_acc"],
        "seconds": result.seconds,
        "matrix": matrix,
        "matrix_seen": seen,
    }


COLUMNS = ("ac", "am", "self_test", "bc", "fc", "ac_seen", "am_seen", "avg_acc")
HEADERS = ("AC", "AM", "self-test M[T-1][T-1]", "BC", "FC", "AC (seen)", "AM (seen)", "final avg acc")


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    out = {}
    for method, per_seed in runs.items():
        out[method] = {}
        for key in COLUMNS:
            values = [r[key] for r in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[method][key] = [statistics.fmean(values), std]
    return out


def table(title: str, summary: dict[str, dict[str, list[float]]]) -> str:
    lines = [f"\n{title}", "| method | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    for method, values in summary.items():
        cells = [f"{values[k][0]:.3f} ± {values[k][1]:.3f}" for k in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--skip-replacement", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    register_helpers()
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    replaced: dict[str, list[dict[str, Any]]] = {m: [] for m in methods if m in REPLACED_METHODS}
    for seed in seeds:
        for method in methods:
            runs[method].append(one_run(method, seed, tmp, None))
            print(
                f"seed {seed} {method}: AC {runs[method][-1]['ac']:.2f} ({runs[method][-1]['seconds']:.0f}s)",
                flush=True,
            )
        if args.skip_replacement:
            continue
        paths = {head: pretrain(head, 1000 + seed, tmp) for head in ("linear", "dsimplex")}
        for method in replaced:
            path = paths["linear" if method == "er" else "dsimplex"]
            replaced[method].append(one_run(method, seed, tmp, path))
            print(f"seed {seed} {method} + replacement: AC {replaced[method][-1]['ac']:.2f}", flush=True)
    wall = time.perf_counter() - started
    summary = summarise(runs)
    text = table(f"Split Fashion-MNIST, 5 tasks, closed-set retrieval (CMC top-1), seeds {seeds}", summary)
    replaced_summary = summarise(replaced) if not args.skip_replacement else {}
    if replaced_summary:
        text += "\n" + table(f"Same, with a model replacement at task {REPLACE_AT}", replaced_summary)
    print(text)
    print(f"\nwall time {wall:.0f} s")
    out = {
        "setting": {
            "experiments": [f"experiments/compat_fmnist_{m}.yaml" for m in methods],
            "protocol": "retrieval, CMC top-1, leave-one-out, 200 test images per class as query and gallery",
            "replace_at": REPLACE_AT,
            "seeds": seeds,
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "wall_seconds": round(wall, 1),
        "summary": summary,
        "summary_replacement": replaced_summary,
        "runs": runs,
        "runs_replacement": replaced,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "compat.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
