"""Compatibility under the papers' open-set protocol, offline: ER vs BCT vs CoReS (both) vs CL2R vs HOC, over seeds.

Each run is ``experiments/compat_fmnist_<method>.yaml`` through ``lifelong.run.run``: Fashion-MNIST trained on
6 classes only (classes 6-9 never enter any task), 5 tasks of 2, 1, 1, 1, 1 classes, 1000 training images per
class, 3 epochs per task, a 2x256 MLP (d-Simplex methods: K = 10, d = 9). After every task the current model
embeds each open-set gallery **once** and it is kept. Two open sets (no model ever trains their classes),
mirroring CIFAR-100 -> CIFAR-10:

- ``heldout``: the 4 held-out Fashion-MNIST classes (queries: 1000 training images per class; gallery: 500
  test images per class);
- ``digits``: scikit-learn digits (8x8, bilinearly resized to 28x28; queries: its train split, 1437 images;
  gallery: its test split, 360 images).

Two protocols each, as in the papers' code: ``identification`` (iamcl2r: queries embedded by model i, top-1
against the class templates of model j's gallery) and ``verification`` (CL2R/CoReS: 3000 same-class and 3000
different-class pairs of the gallery set, image 1 through model i, image 2 through model j, squared-L2
threshold by 10-fold cross-validation). A closed-set reference: identification on the trained classes, each
pair (i, j) on the classes model j had trained. ``M[i][j]``, i >= j; AC under both tie rules (``fail``: a tie fails,
iamcl2r; ``pass``: only ``<`` fails, CL2R/CoReS), AM, BC, FC, the last self-test and the final average
classification accuracy on the 6 trained classes, mean ± std over seeds.

Second set of tables (``--skip-replacement`` to leave it out): the same runs with a **model replacement** at
task 2 (``strategy.params.replace_at``): the weights of a stronger model are swapped in before task 2 and
training continues from them (CL2R and HOC use it as their teacher, BCT its head as the old classifier, CoReS
starts that step from it instead of a fresh initialisation). The replacement model (:func:`pretrain`) is
trained jointly on the 6 training classes only, never on an evaluation class, with 3x the data (another
3000-per-class draw) and 10 epochs; a d-Simplex head (same K = 10 simplex) for the d-Simplex methods, a
linear head for ER and BCT. ``python benchmarks/compat.py --pretrain-only`` just writes those checkpoints.

    python benchmarks/compat.py [--seeds 0,1,2] [--methods er,bct,cores,cores_replay,cl2r,hoc] [--skip-replacement]
        [--simplex-classes K --tag _k100]   # more room in the d-Simplex (K classes reserved, d = K - 1)
        [--replace-at 0,2,4 --tag _r024]     # replacements at several tasks, each model stronger than the last

Prints markdown tables; writes benchmarks/results/compat.json and benchmarks/results/compat.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong import config
from lifelong.analysis import ANALYSES
from lifelong.analysis.compatibility import Compatibility
from lifelong.data import build_stream, resolve_root
from lifelong.metrics.compatibility import compatibility_metrics
from lifelong.models import build_model
from lifelong.run import run

RESULTS = Path(__file__).parent / "results"
METHODS = ("er", "bct", "cores", "cores_replay", "cl2r", "hoc")
LINEAR_HEAD = ("er", "bct")
REPLACE_AT = (2,)
BASE = "experiments/_compat_fmnist.yaml"
# replacement models, weakest to strongest (images per class, epochs); n replacements take the n strongest in order
STRENGTHS = ({"per_class": 300, "epochs": 3}, {"per_class": 1000, "epochs": 5}, {"per_class": 3000, "epochs": 10})

HELDOUT = {"dataset": "fashion_mnist", "classes": "unseen", "query_per_class": 1000, "gallery_per_class": 500}
DIGITS = {"dataset": "digits", "match_shape": True}
IDENTIFICATION = {"protocol": "identification", "query_split": "train", "gallery_split": "test"}
VERIFICATION = {"protocol": "verification", "n_pairs": 3000, "n_folds": 10}
# closed-set reference: the trained classes, each pair (i, j) on the classes model j had trained
TRAINED = {"gallery_classes": "seen", "query_per_class": 500, "gallery_per_class": 200}
# name -> the compatibility analysis's parameters; "compatibility" itself comes from the YAML
PROTOCOLS: dict[str, dict[str, Any]] = {
    "compatibility": {**HELDOUT, **IDENTIFICATION},
    "compat_heldout_verification": {**HELDOUT, **VERIFICATION},
    "compat_digits_identification": {**DIGITS, **IDENTIFICATION},
    "compat_digits_verification": {**DIGITS, **VERIFICATION},
    "compat_trained_identification": {**IDENTIFICATION, **TRAINED},
}
TITLES = {
    "compatibility": "held-out Fashion-MNIST classes, identification (top-1 vs class templates)",
    "compat_heldout_verification": "held-out Fashion-MNIST classes, pair verification (10-fold threshold)",
    "compat_digits_identification": "digits (28x28) as the open set, identification (top-1 vs class templates)",
    "compat_digits_verification": "digits (28x28) as the open set, pair verification (10-fold threshold)",
    "compat_trained_identification": "closed-set reference: the trained classes model j had seen, identification",
}


def variant(name: str, params: dict[str, Any]) -> type[Compatibility]:
    """The compatibility analysis with ``params`` fixed, writing ``<name>.csv`` (one run holds several)."""

    class Variant(Compatibility):
        artifact_stem = name

        def __init__(self, **overrides: Any) -> None:
            super().__init__(**{**params, **overrides})

    Variant.__name__ = name
    return Variant


def register_helpers() -> None:
    for name, params in PROTOCOLS.items():
        if name != "compatibility" and name not in ANALYSES:
            ANALYSES.register(name)(variant(name, params))


def read_matrix(path: Path) -> list[list[float]]:
    rows = list(csv.reader(path.open()))[1:]
    return [[float(v) if v else float("nan") for v in row[1:]] for row in rows]


def pretrain(
    head: str, seed: int, tmp: Path, simplex_classes: int | None = None, per_class: int = 3000, epochs: int = 10
) -> Path:
    """A replacement model: jointly trained on the stream's training classes only (never an evaluation class), on
    another draw of ``per_class`` images per class (3000: 3x the stream's), for ``epochs``; returns its weights."""
    base = config.load(BASE)
    torch.manual_seed(seed)
    stream = build_stream(
        "fashion_mnist",
        "class_incremental",
        1,
        root=resolve_root(None),
        seed=seed,
        train_per_class=per_class,
        exclude_classes=list(base.stream.exclude_classes or []),
    )
    info = stream.info
    head_kwargs = {"classes": simplex_classes} if head == "dsimplex" and simplex_classes else {}
    model = build_model(
        base.model.backbone,
        head,
        info.num_classes,
        info.input_shape,
        backbone_kwargs=dict(base.model.backbone_kwargs),
        head_kwargs=head_kwargs,
    )
    optim = base.optim
    optimizer = torch.optim.SGD(
        model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    data = stream.train[0].dataset
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), base.train.batch_size):
            x, y, _ = data.__getitems__(order[start : start + base.train.batch_size].tolist())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp / f"replacement_{head}{simplex_classes or ''}_{per_class}x{epochs}_s{seed}.pt"
    torch.save(model.state_dict(), path)
    return path


def replacement_models(head: str, seed: int, tmp: Path, tasks: tuple[int, ...], simplex: int | None) -> dict[int, Path]:
    """``{task: checkpoint}``: one model per replacement task, stronger at each later task (``STRENGTHS``)."""
    chosen = STRENGTHS[len(STRENGTHS) - len(tasks) :]
    return {
        task: pretrain(head, 1000 + seed + 100 * k, tmp, simplex, **strength)
        for k, (task, strength) in enumerate(zip(tasks, chosen, strict=True))
    }


def scores(matrix: list[list[float]]) -> dict[str, float]:
    fail, passing = compatibility_metrics(matrix, "fail"), compatibility_metrics(matrix, "pass")
    return {
        "ac": fail["ac"],
        "ac_ties_pass": passing["ac"],
        "am": fail["am"],
        "bc": fail["bc"],
        "fc": fail["fc"],
        "self_test": fail["self_test"],
    }


def one_run(
    method: str, seed: int, tmp: Path, replace_at: dict[int, Path] | None, simplex_classes: int | None = None
) -> dict[str, Any]:
    overrides = [f"seed={seed}", f"output_dir={tmp}", "tracking.enabled=false", "checkpoint.enabled=false"]
    if simplex_classes and method not in LINEAR_HEAD:
        overrides.append(f"model.head_kwargs.classes={simplex_classes}")
    overrides += [f"analysis.{name}={{}}" for name in PROTOCOLS if name != "compatibility"]
    if replace_at:
        schedule = ", ".join(f"{task}: {path}" for task, path in replace_at.items())
        overrides.append(f"strategy.params.replace_at={{{schedule}}}")
    cfg = config.load(f"experiments/compat_fmnist_{method}.yaml", overrides)
    result = run(cfg, quiet=True)
    out: dict[str, Any] = {"avg_acc": result.metrics["avg_acc"], "seconds": result.seconds}
    for name in PROTOCOLS:
        matrix = read_matrix(result.run_dir / f"{name if name != 'compatibility' else 'compatibility_matrix'}.csv")
        out[name] = {**scores(matrix), "matrix": matrix}
    return out


COLUMNS = ("ac", "ac_ties_pass", "am", "bc", "fc", "self_test")
HEADERS = ("AC (tie fails)", "AC (tie passes)", "AM", "BC", "FC", "self-test M[T-1][T-1]")


def mean_std(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for method, per_seed in runs.items():
        if not per_seed:
            continue
        out[method] = {"avg_acc": mean_std([r["avg_acc"] for r in per_seed])}
        for name in PROTOCOLS:
            entry = {key: mean_std([r[name][key] for r in per_seed]) for key in COLUMNS}
            with warnings.catch_warnings():  # the upper triangle is NaN in every seed
                warnings.simplefilter("ignore", RuntimeWarning)
                entry["matrix"] = np.nanmean([r[name]["matrix"] for r in per_seed], axis=0).round(3).tolist()
            out[method][name] = entry
    return out


def table(title: str, summary: dict[str, dict[str, Any]], name: str) -> str:
    lines = [f"\n**{title}**\n", "| method | " + " | ".join(HEADERS) + " | final avg acc |"]
    lines.append("|---" * (len(HEADERS) + 2) + "|")
    for method, values in summary.items():
        cells = [f"{values[name][k][0]:.3f} ± {values[name][k][1]:.3f}" for k in COLUMNS]
        acc = values["avg_acc"]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {acc[0]:.3f} ± {acc[1]:.3f} |")
    return "\n".join(lines)


def matrices(summary: dict[str, dict[str, Any]], name: str) -> str:
    """The seed-mean matrices of protocol ``name``, one per method (rows: query model i, columns: gallery j)."""
    lines = []
    for method, values in summary.items():
        lines.append(f"\n{method}:\n```")
        for i, row in enumerate(values[name]["matrix"]):
            lines.append(f"  M[{i}] " + " ".join(f"{v:.3f}" for v in row[: i + 1]))
        lines.append("```")
    return "\n".join(lines)


def report(
    summary: dict[str, Any],
    replaced: dict[str, Any],
    seeds: list[int],
    wall: float,
    room: str = "",
    tasks: tuple[int, ...] = REPLACE_AT,
) -> str:
    parts = [f"# Compatibility, open-set protocol, Split Fashion-MNIST (6 trained classes), seeds {seeds}{room}"]
    at = f"replacement at task{'s' if len(tasks) > 1 else ''} {', '.join(map(str, tasks))}"
    for name, title in TITLES.items():
        parts.append(table(f"{title}, no replacement", summary, name))
        if replaced:
            parts.append(table(f"{title}, model {at}", replaced, name))
    for label, data in (("no replacement", summary), (at, replaced)):
        if data:
            parts.append(f"\n## Seed-mean M, {TITLES['compatibility']}, {label}\n" + matrices(data, "compatibility"))
    parts.append(f"\nwall time {wall:.0f} s on {torch.get_num_threads()} CPU thread(s)")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--skip-replacement", action="store_true")
    parser.add_argument("--pretrain-only", action="store_true", help="only write the replacement checkpoints")
    parser.add_argument("--simplex-classes", type=int, default=None, help="K of the d-Simplex (default: 10)")
    parser.add_argument("--tag", default="", help="suffix of the result files (compat<tag>.json / .md)")
    parser.add_argument("--replace-at", default="2", help="replacement tasks, e.g. 0,2,4 (official 7-task configs)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    tasks = tuple(int(t) for t in args.replace_at.split(","))
    if len(tasks) > len(STRENGTHS):
        parser.error(f"--replace-at: at most {len(STRENGTHS)} replacement tasks")
    register_helpers()
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if args.pretrain_only:
        for seed in seeds:
            for head in ("linear", "dsimplex"):
                for path in replacement_models(head, seed, tmp, tasks, args.simplex_classes).values():
                    print(f"written {path}", flush=True)
        return
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    replaced: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed in seeds:
        for method in methods:
            runs[method].append(one_run(method, seed, tmp, None, args.simplex_classes))
            done = runs[method][-1]
            print(f"seed {seed} {method}: AC {done['compatibility']['ac']:.2f} ({done['seconds']:.0f}s)", flush=True)
        if args.skip_replacement:
            continue
        models = {h: replacement_models(h, seed, tmp, tasks, args.simplex_classes) for h in ("linear", "dsimplex")}
        for method in methods:
            schedule = models["linear" if method in LINEAR_HEAD else "dsimplex"]
            replaced[method].append(one_run(method, seed, tmp, schedule, args.simplex_classes))
            done = replaced[method][-1]
            print(f"seed {seed} {method} + replacement: AC {done['compatibility']['ac']:.2f}", flush=True)
    wall = time.perf_counter() - started
    summary, replaced_summary = summarise(runs), summarise(replaced)
    room = f", d-Simplex K = {args.simplex_classes}" if args.simplex_classes else ""
    text = report(summary, replaced_summary, seeds, wall, room, tasks)
    print(text)
    out = {
        "setting": {
            "experiments": [f"experiments/compat_fmnist_{m}.yaml" for m in methods],
            "protocols": PROTOCOLS,
            "replace_at": list(tasks),
            "replacement_models": {
                "strengths": list(STRENGTHS[len(STRENGTHS) - len(tasks) :]),
                "classes": "the 6 training classes",
                "seed": "1000 + run seed + 100 * k for the k-th replacement",
            },
            "seeds": seeds,
            "simplex_classes": args.simplex_classes or 10,
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
    (RESULTS / f"compat{args.tag}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"compat{args.tag}.md").write_text(text)
    print(f"written {RESULTS / f'compat{args.tag}.json'} and {RESULTS / f'compat{args.tag}.md'}")


if __name__ == "__main__":
    main()
