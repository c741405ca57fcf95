"""FLAVA vs DER++ vs ER vs finetune: continual audio-video pretraining on ``av_digits`` (tiny CAV-MAE, CPU).

Each (method, seed) is one ``lifelong.run.run`` of the settings of ``experiments/pretrain/flava_av_digits.yaml``
(the engine of every run; tracking and checkpoints off) in a fresh spawned process, so ``peak_rss_mb`` (the
process's peak resident memory, ``ru_maxrss``) is per run. Reported: average and forgetting (FLAVA's
definitions) of audio->video and video->audio R@1 over the 5 tasks, training samples/s (incoming clips only)
and peak memory.

Test protocol: by default held-out digit images with fresh renditions of the training voices;
``--test-voices it`` gives the held-out-voice protocol (a different language: chance by construction, see
``lifelong.data.av_digits``). ``--joint`` is the non-continual sanity check: one task with all 10 digits.

    OMP_NUM_THREADS=1 python benchmarks/flava.py --jobs 2   # 3 seeds, writes benchmarks/results/flava.json (~20 min)
    OMP_NUM_THREADS=1 python benchmarks/flava.py --joint --methods finetune --seeds 1 --out /tmp/joint.json
    python benchmarks/flava.py --merge seeds0-2.json seeds3-5.json --out all.json   # one table of both

``--shared-init`` trains ONE init checkpoint (seed ``--init-seed``) and starts every (method, seed) from it, as
the paper's runs all start from one pretrained CAV-MAE + AVM; ``--init-checkpoint`` loads a ready one. The
256 + 256-token benchmark of ``benchmarks/results/flava.md`` (first section) gives its exact commands.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = ("finetune", "er", "derpp", "flava")
STRATEGY = {"finetune": "av_finetune", "er": "av_er", "derpp": "av_derpp", "flava": "flava"}


def config(method: str, seed: int, args: argparse.Namespace):
    """The run's ``ExperimentConfig``: the shipped FLAVA YAML's layout with the benchmark's arguments."""
    from lifelong import config as config_lib

    params = {} if method == "finetune" else {"memory_size": args.memory}
    if method == "flava":
        params.update(keep_ratio=args.keep_ratio, audio_chunk=args.audio_chunk)
    stream = {
        "train_copies": args.copies,
        "train_voices": args.train_voices.split(","),
        "test_voices": args.test_voices.split(",") if args.test_voices else None,
        "frames": args.frames,
        "image_size": args.image_size,
        "target_frames": args.audio_frames,
        "mel_bins": args.mel_bins,
        "frame_shift_ms": args.frame_shift_ms,
    }
    layout = {k: getattr(args, k) for k in ("frames", "image_size", "patch_size", "audio_frames", "mel_bins")}
    if args.joint:
        stream["tasks"] = [list(range(10))]
    cfg = {
        "name": "flava_benchmark",
        "seed": seed,
        "output_dir": args.output_dir,
        "stream": {"dataset": "av_digits", "params": stream},
        "model": {
            "backbone": "cavmae_tiny",
            "backbone_kwargs": {
                "contrastive_weight": args.contrastive_weight,
                "visible_ratio": args.visible_ratio,
                **layout,
            },
        },
        "strategy": {"name": STRATEGY[method], "params": params},
        "optim": {
            "name": "adam",
            "lr": args.lr,
            "betas": [0.95, 0.999],
            "weight_decay": 5e-7,
            "fresh_per_experience": args.fresh_optimizer,
        },
        "train": {"epochs": args.epochs, "batch_size": 16, "drop_last": True, "eval_batch_size": 64},
        "tracking": {"enabled": False},
        "checkpoint": {"enabled": False},
    }
    if args.init_voices:
        init_stream = {"tasks": [list(range(10))], "train_voices": args.init_voices.split(",")}
        init_stream["train_copies"] = args.init_copies
        # the pool's clips in the stream's layout (part of the init section, so of the cache key)
        init_stream.update(
            {k: stream[k] for k in ("frames", "image_size", "target_frames", "mel_bins", "frame_shift_ms")}
        )
        cfg["init"] = {
            "dataset": "av_digits",
            "params": init_stream,
            "strategy": "av_contrast" if args.init_contrast == "unmasked" else "av_finetune",
            "epochs": args.init_epochs,
            "lr": args.init_lr,
            "batch_size": args.init_batch_size,
            "model_kwargs": {"contrastive_weight": args.init_contrastive_weight},
            "avm_epochs": args.avm_epochs,
            "cache_dir": args.init_cache,
            "checkpoint": args.init_checkpoint,  # --init-checkpoint, or set by --shared-init: one file for every run
        }
    return config_lib.load(overrides=[f"{k}={json.dumps(v)}" for k, v in cfg.items()])


def _child(method: str, seed: int, args: argparse.Namespace, queue: mp.Queue) -> None:
    import torch

    torch.set_num_threads(1)
    from lifelong.metrics.functional import flava_forgetting
    from lifelong.run import run

    start = time.perf_counter()
    result = run(config(method, seed, args), quiet=True)
    summary = {}
    for score, matrix in result.matrices.matrices.items():
        rows = matrix.as_tensor().tolist()
        name = score.replace("_R", "/R@")  # a2v_R1 -> a2v/R@1, the names of the earlier result files
        summary[f"{name}/average"] = result.metrics[f"{score}/avg"]
        summary[f"{name}/forgetting"] = flava_forgetting(rows)
    queue.put(
        {
            "summary": summary,
            "matrices": {s: m.as_tensor().tolist() for s, m in result.matrices.matrices.items()},
            "initial": {s: m.initial for s, m in result.matrices.matrices.items()},
            "samples_per_s": result.samples_per_second,
            "wall_s": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _init_child(method: str, seed: int, args: argparse.Namespace, queue: mp.Queue) -> None:
    import torch

    torch.set_num_threads(1)
    from lifelong.build import build_parts
    from lifelong.init_stage import init_key

    start = time.perf_counter()
    cfg = config(method, seed, args)
    build_parts(cfg)  # trains and caches the init checkpoint of this seed (loads it when cached)
    path = Path(cfg.init.cache_dir or Path(cfg.output_dir) / "init") / f"init-{init_key(cfg.init, cfg.model, seed)}.pt"
    queue.put({"wall_s": time.perf_counter() - start, "checkpoint": str(path)})


def run_one(method: str, seed: int, args: argparse.Namespace, target=_child) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(method, seed, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's arguments (``argv`` default: the command line)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--memory", type=int, default=100)
    parser.add_argument("--copies", type=int, default=24)
    parser.add_argument("--train-voices", default="en,es,fr,ru")
    parser.add_argument("--test-voices", default="", help="empty: the training voices (held-out images only)")
    parser.add_argument("--joint", action="store_true", help="one task with all 10 digits (sanity check)")
    parser.add_argument("--contrastive-weight", type=float, default=1.0, help="paper: 0.1 (see the README)")
    parser.add_argument("--visible-ratio", type=float, default=0.45, help="paper: 0.2 (see the README)")
    parser.add_argument("--keep-ratio", type=float, default=0.5, help="FLAVA's share of tokens kept per modality")
    parser.add_argument("--audio-chunk", type=int, default=2, help="FLAVA's audio chunk in time patches (paper: 1/16)")
    parser.add_argument("--frames", type=int, default=2, help="video frames per clip")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=8, help="4 with 4 frames: 256 video + 256 audio tokens")
    parser.add_argument("--audio-frames", type=int, default=64, help="fbank frames (time)")
    parser.add_argument("--mel-bins", type=int, default=32)
    parser.add_argument("--frame-shift-ms", type=float, default=15.0, help="fbank hop (7.5 with 128 frames: 0.96 s)")
    parser.add_argument(
        "--fresh-optimizer", action="store_true", help="a fresh Adam per task (the earlier tables); default: one"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one CPU thread each)")
    parser.add_argument("--init-voices", default="it", help="voices of the init pool (all digits); empty: no init")
    parser.add_argument("--init-copies", type=int, default=96)
    parser.add_argument("--init-epochs", type=int, default=40)
    parser.add_argument("--init-contrast", default="unmasked", choices=("masked", "unmasked"))
    parser.add_argument("--init-contrastive-weight", type=float, default=1.0)
    parser.add_argument("--avm-epochs", type=int, default=3)
    parser.add_argument("--init-lr", type=float, default=None, help="the init stage's lr (default: --lr)")
    parser.add_argument("--init-batch-size", type=int, default=None, help="the init stage's batch (default: 16)")
    parser.add_argument(
        "--shared-init",
        action="store_true",
        help="train ONE init checkpoint (seed --init-seed) and start every (method, seed) from it, as the paper's "
        "runs all start from the same pretrained CAV-MAE + AVM; default: one init checkpoint per seed",
    )
    parser.add_argument("--init-seed", type=int, default=0, help="the seed of the shared init checkpoint")
    parser.add_argument(
        "--init-checkpoint",
        default=None,
        help="start every run from this init checkpoint (e.g. a shared one trained with other loss-only settings)",
    )
    parser.add_argument("--init-cache", default="runs/init")
    parser.add_argument("--output-dir", default="runs/benchmarks", help="run folders (tracking and checkpoints off)")
    parser.add_argument("--out", default="benchmarks/results/flava.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only combine these result files into --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.merge:
        runs, merged_args = merged_runs(args.merge)
        write_table(runs, merged_args, Path(args.out))
        return
    methods = args.methods.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with ThreadPoolExecutor(args.jobs) as pool:
        if args.init_checkpoint:  # a ready init checkpoint for every run
            pass
        elif args.init_voices and args.shared_init:  # one init checkpoint (seed --init-seed) for every run
            shared = run_one(methods[0], args.init_seed, args, _init_child)
            args.init_checkpoint, args.init_wall_s = shared["checkpoint"], shared["wall_s"]
            print(f"shared init: {args.init_checkpoint} ({args.init_wall_s:.0f} s, 0 if it was cached)")
        elif args.init_voices:  # one init checkpoint per seed, trained before the methods that share it
            init_wall = list(pool.map(lambda s: run_one(methods[0], s, args, _init_child)["wall_s"], seeds))
            print("init stage wall seconds per seed:", [round(w) for w in init_wall])
        jobs = {(m, s): pool.submit(run_one, m, s, args) for m in methods for s in seeds}
        runs = {m: [jobs[m, s].result() for s in seeds] for m in methods}
    write_table(runs, vars(args), Path(args.out))


def merged_runs(paths: list[str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """The runs of several result files (e.g. seeds 0-2 and 3-5 of one setting), concatenated per method."""
    runs: dict[str, list[dict]] = {}
    args = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        args.append(result["args"])
        for method, rs in result["runs"].items():
            runs.setdefault(method, []).extend(rs)
    return runs, args


def write_table(runs: dict[str, list[dict]], args: dict | list, out: Path) -> None:
    """Print the mean ± std tables of ``runs`` and write them, the arguments and the runs to ``out``.

    Table 1: R@1 average and forgetting (class level), the init checkpoint's R@1 (the matrices' "init" row,
    mean over the tasks), samples/s and peak memory. Table 2: R@5 / R@10 averages and the instance-level R@1.
    Last: the paired difference FLAVA - DER++ (mean ± standard error over the shared seeds) when both ran.
    """
    keys = ["a2v/R@1/average", "a2v/R@1/forgetting", "v2a/R@1/average", "v2a/R@1/forgetting"]
    more = [f"{d}/R@{k}/average" for k in (5, 10) for d in ("a2v", "v2a")]
    more += [f"{d}_inst/R@1/average" for d in ("a2v", "v2a")]
    table = {}
    head = " | ".join(keys)
    lines = [f"| method | runs | {head} | init a2v / v2a R@1 | samples/s | peak RSS (MB) |", "|" + "---|" * 9]
    lines2 = ["| method | " + " | ".join(more) + " |", "|" + "---|" * (len(more) + 1)]
    for m, rs in runs.items():
        row = {k: [r["summary"][k] for r in rs if k in r["summary"]] for k in keys + more}
        row["init a2v/R@1"] = [statistics.mean(r["initial"]["a2v_R1"]) for r in rs if r["initial"]["a2v_R1"]]
        row["init v2a/R@1"] = [statistics.mean(r["initial"]["v2a_R1"]) for r in rs if r["initial"]["v2a_R1"]]
        row["samples_per_s"] = [r["samples_per_s"] for r in rs]
        row["peak_rss_mb"] = [r["peak_rss_mb"] for r in rs]
        table[m] = row
        cells = [_ms(row[k]) for k in keys]
        init = " / ".join(f"{statistics.mean(row[k]):.3f}" if row[k] else "-" for k in ("init a2v/R@1", "init v2a/R@1"))
        sps, rss = statistics.mean(row["samples_per_s"]), statistics.mean(row["peak_rss_mb"])
        lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + f" | {init} | {sps:.0f} | {rss:.0f} |")
        lines2.append(f"| {m} | " + " | ".join(_ms(row[k]) if row[k] else "-" for k in more) + " |")
    diffs = {}
    if "flava" in runs and "derpp" in runs and len(runs["flava"]) == len(runs["derpp"]) > 1:
        for k in ("a2v/R@1/average", "v2a/R@1/average", "a2v/R@1/forgetting", "v2a/R@1/forgetting"):
            d = [f["summary"][k] - g["summary"][k] for f, g in zip(runs["flava"], runs["derpp"], strict=True)]
            diffs[k] = {"mean": statistics.mean(d), "se": statistics.stdev(d) / len(d) ** 0.5, "per_seed": d}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": args, "table": table, "flava_minus_derpp": diffs, "runs": runs}, indent=1))
    print("\n".join(lines + [""] + lines2))
    for k, d in diffs.items():
        print(f"FLAVA - DER++ {k}: {d['mean']:+.3f} ± {d['se']:.3f} (s.e., paired over {len(d['per_seed'])} seeds)")
    print(f"chance R@1 (label match, 10 digits) = 0.1; wrote {out}")


if __name__ == "__main__":
    main()
