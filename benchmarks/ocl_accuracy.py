"""Online class-incremental accuracy on Split Fashion-MNIST: finetune, ER, ER-ACE, DER, DER++, SCR, PCR and HPCR.

Every method runs the experiment file ``experiments/fmnist_online_<method>.yaml`` (5 tasks of 2 classes,
one pass in batches of 10, a memory of 500 and a replay batch of 10 where the method has one, SGD lr 0.1,
the 2x256 MLP) through ``lifelong.run.run``, with tracking and checkpoints off, once per seed. Seeds are the
outer loop, so machine-load drifts hit every method alike. When ``--per-class`` changes the steps per task,
HPCR's temperature period follows the rule written in its experiment file (:func:`hpcr_period`).

    python benchmarks/ocl_accuracy.py [--seeds 0,1,2] [--methods er,pcr,hpcr] [--per-class 6000]
        [--backbone reduced_resnet18 [--backbone-kwargs '{"nf": 20}']] [--set optim.lr=0.05 ...]

Reports per method the final average accuracy and the forgetting (lifelong's: max-based, averaged over the
first T-1 tasks), mean ± sample std over seeds, and the training throughput (stream samples per second,
evaluation excluded) and its ratio to ER's on the same seeds. Prints a markdown table and writes
``benchmarks/results/ocl_accuracy_<backbone>.json`` (``--out`` to change). Seeds run as separate processes
(e.g. in parallel) are combined with ``--merge a.json b.json --out all.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from lifelong import config
from lifelong.run import run

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
RESULTS = Path(__file__).parent / "results"
METHODS = ("finetune", "er", "er_ace", "der", "derpp", "scr", "pcr", "hpcr")
CLASSES_PER_TASK, ONLINE_BATCH, OFFICIAL_PERIOD = 2, 10, 500


def hpcr_period(per_class: int) -> int:
    """HPCR's temperature period for ``per_class`` training images: whole cycles per task, near the official 500.

    The official tasks are 500 or 1,000 steps long with a 500-step cycle, so each ends at the cycle's minimum;
    this keeps that property for other task lengths.

    Example:
        >>> hpcr_period(6000), hpcr_period(2000), hpcr_period(1000)
        (600, 400, 200)

    """
    steps = per_class * CLASSES_PER_TASK // ONLINE_BATCH
    cycles = max(1, round(steps / OFFICIAL_PERIOD))
    return steps // cycles


def load_config(method: str, seed: int, args: argparse.Namespace, tmp: Path) -> config.ExperimentConfig:
    """The method's experiment file with this run's seed, subset, backbone and overrides; no tracking."""
    data = config.read_yaml(EXPERIMENTS / f"fmnist_online_{method}.yaml")
    if args.backbone is not None:  # replace (not merge) the backbone options of the file
        data.setdefault("model", {})["backbone"] = args.backbone
        data["model"]["backbone_kwargs"] = json.loads(args.backbone_kwargs)
    path = tmp / f"{method}.yaml"
    path.write_text(yaml.safe_dump(data))
    overrides = [f"seed={seed}", "tracking.enabled=false", "checkpoint.enabled=false", f"output_dir={tmp / 'runs'}"]
    if args.per_class is not None:
        overrides.append(f"stream.train_per_class={args.per_class}")
        if method == "hpcr":
            overrides.append(f"strategy.params.temperature_period={hpcr_period(args.per_class)}")
    if args.test_per_class is not None:
        overrides.append(f"stream.test_per_class={args.test_per_class}")
    return config.load(path, overrides + list(args.set))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per method: mean/std of accuracy and forgetting, mean throughput and its ratio to ER's (paired by seed)."""
    er_speed = {r["seed"]: r["samples_per_second"] for r in runs.get("er", [])}
    summary = {}
    for method, rows in runs.items():
        acc, acc_std = mean_std([r["avg_acc"] for r in rows])
        forgetting, forgetting_std = mean_std([r["forgetting"] for r in rows])
        speeds = [r["samples_per_second"] for r in rows]
        ratios = [er_speed[r["seed"]] / r["samples_per_second"] for r in rows if r["seed"] in er_speed]
        summary[method] = {
            "avg_acc_mean": acc,
            "avg_acc_std": acc_std,
            "forgetting_mean": forgetting,
            "forgetting_std": forgetting_std,
            "samples_per_second_mean": statistics.fmean(speeds),
            "er_speed_over_this": statistics.median(ratios) if ratios else None,
            "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in rows),
            "runs": len(rows),
        }
    return summary


ORDER = (("hpcr", "pcr"), ("pcr", "er"))  # the paper's claim: HPCR > PCR > ER


def paired_gaps(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """For each pair in ``ORDER``: the accuracy gap paired by seed (mean, sd) and on how many seeds it is positive."""
    gaps = {}
    for better, worse in ORDER:
        if better not in runs or worse not in runs:
            continue
        base = {r["seed"]: r["avg_acc"] for r in runs[worse]}
        diffs = [r["avg_acc"] - base[r["seed"]] for r in runs[better] if r["seed"] in base]
        if diffs:
            mean, std = mean_std(diffs)
            gaps[f"{better}-{worse}"] = {
                "mean": mean,
                "std": std,
                "positive": sum(d > 0 for d in diffs),
                "seeds": len(diffs),
            }
    return gaps


def markdown(summary: dict[str, dict], title: str, gaps: dict[str, dict] | None = None) -> str:
    lines = [
        title,
        "",
        "| method | final avg acc | forgetting | train samples/s | ER speed / this | runs |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        ratio = "" if s["er_speed_over_this"] is None else f"{s['er_speed_over_this']:.2f}x"
        lines.append(
            f"| {method} | {100 * s['avg_acc_mean']:.1f} ± {100 * s['avg_acc_std']:.1f} "
            f"| {100 * s['forgetting_mean']:.1f} ± {100 * s['forgetting_std']:.1f} "
            f"| {s['samples_per_second_mean']:.0f} | {ratio} | {s['runs']} |"
        )
    lines += [""] if gaps else []
    for pair, g in (gaps or {}).items():
        lines.append(
            f"{pair} accuracy, paired by seed: {100 * g['mean']:+.1f} ± {100 * g['std']:.1f} points, "
            f"positive on {g['positive']} of {g['seeds']} seeds"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--per-class", type=int, default=None, help="training images per class (default: all 6000)")
    parser.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all 1000)")
    parser.add_argument("--backbone", default=None, help="replace the files' backbone (e.g. reduced_resnet18)")
    parser.add_argument("--backbone-kwargs", default="{}", help="JSON options of --backbone, e.g. '{\"nf\": 8}'")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run (default 1)")
    parser.add_argument("--set", action="append", default=[], help="extra config override key=value (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/ocl_accuracy_<backbone>.json")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="combine result files of the same setting run with different seeds (e.g. in parallel) into --out",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the published tables use one thread; parallel seeds must not oversubscribe
    args.out = args.out or RESULTS / f"ocl_accuracy_{args.backbone or 'mlp'}.json"
    if args.merge:
        out = merge(args.merge, args.out)
        print(out["markdown"] + f"\n\nwritten {args.out}")
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocl_accuracy_") as tmp:
        for seed in seeds:
            for method in methods:
                runs[method].append(run_once(method, seed, args, Path(tmp)))
                write_results(args, seeds, methods, runs, time.perf_counter() - started, complete=False)
    out = write_results(args, seeds, methods, runs, time.perf_counter() - started, complete=True)
    print("\n" + out["markdown"])
    print(f"\nwall time {out['wall_seconds']:.0f}s\nwritten {args.out}")


def run_once(method: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict:
    """One run of ``method`` with ``seed``: its final accuracy, forgetting, throughput and final row."""
    cfg = load_config(method, seed, args, tmp)
    t0 = time.perf_counter()
    result = run(cfg, quiet=True)
    row = {
        "seed": seed,
        "avg_acc": result.metrics["avg_acc"],
        "forgetting": result.metrics["forgetting"],
        "samples_per_second": result.samples_per_second,
        "wall_seconds": time.perf_counter() - t0,
        "final_row": result.matrix.row(result.matrix.n_experiences - 1),
    }
    print(
        f"seed {seed} {method:9s} avg_acc {row['avg_acc']:.4f} forgetting {row['forgetting']:.4f} "
        f"{row['samples_per_second']:.0f} samples/s ({row['wall_seconds']:.0f}s)",
        flush=True,
    )
    return row


def write_results(
    args: argparse.Namespace,
    seeds: list[int],
    methods: list[str],
    runs: dict[str, list[dict]],
    wall: float,
    complete: bool,
) -> dict:
    """Write the JSON of the runs so far (after every run, so an interrupted benchmark keeps what it measured)."""
    done = {method: rows for method, rows in runs.items() if rows}
    summary = summarise(done)
    gaps = paired_gaps(done)
    backbone = args.backbone or "mlp 2x256"
    subset = f"{args.per_class}/class" if args.per_class else "full"
    title = (
        f"Online Split Fashion-MNIST (5 tasks, {subset} training set), M=500, batch 10 + replay 10, {backbone}, "
        f"seeds {args.seeds}" + (f", overrides {args.set}" if args.set else "")
    )
    out = {
        "setting": {
            "seeds": seeds,
            "methods": methods,
            "per_class": args.per_class,
            "test_per_class": args.test_per_class,
            "backbone": backbone,
            "backbone_kwargs": json.loads(args.backbone_kwargs),
            "overrides": args.set,
        },
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "complete": complete,
        "wall_seconds": wall,
        "summary": summary,
        "paired_gaps": gaps,
        "runs": done,
        "markdown": markdown(summary, title, gaps),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    return out


def merge(paths: list[Path], out: Path) -> dict:
    """One result file from several runs of the same setting on disjoint seeds; the summary is recomputed."""
    files = [json.loads(path.read_text()) for path in paths]
    first = files[0]["setting"]
    for path, data in zip(paths[1:], files[1:], strict=True):
        other = {k: v for k, v in data["setting"].items() if k not in ("seeds", "methods")}
        if other != {k: v for k, v in first.items() if k not in ("seeds", "methods")}:
            raise SystemExit(f"{path}: its setting differs from {paths[0]}'s; only seeds and methods may differ")
    runs: dict[str, list[dict]] = {}
    for path, data in zip(paths, files, strict=True):
        for method, rows in data["runs"].items():
            seen = {r["seed"] for r in runs.get(method, [])}
            if seen & {r["seed"] for r in rows}:
                raise SystemExit(f"{path}: {method} seed(s) {sorted(seen & {r['seed'] for r in rows})} already merged")
            runs.setdefault(method, []).extend(rows)
    for rows in runs.values():
        rows.sort(key=lambda r: r["seed"])
    seeds = sorted({r["seed"] for rows in runs.values() for r in rows})
    complete = all(len(rows) == len(seeds) for rows in runs.values())  # an interrupted file may be completed by another
    args = argparse.Namespace(
        backbone=None if first["backbone"] == "mlp 2x256" else first["backbone"],
        backbone_kwargs=json.dumps(first["backbone_kwargs"]),
        per_class=first["per_class"],
        test_per_class=first["test_per_class"],
        set=first["overrides"],
        seeds=",".join(map(str, seeds)),
        out=out,
    )
    wall = sum(data["wall_seconds"] for data in files)
    return write_results(args, seeds, list(runs), runs, wall, complete=complete)


if __name__ == "__main__":
    main()
