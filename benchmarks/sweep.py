"""Wall time of N quickstart runs: one after the other (``lifelong run --seeds``) vs ``lifelong sweep --jobs J``.

Both are the CLI in a fresh process, on the same seeds, each with its own output folder and SQLite store:

    python benchmarks/sweep.py [--runs 8] [--jobs 2] [extra overrides, e.g. train.epochs=1]

Prints a table and writes benchmarks/results/sweep.json (with the machine's load average before and after:
other work on the machine slows both variants).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    seeds = ",".join(str(s) for s in range(args.runs))
    lifelong = [sys.executable, "-m", "lifelong.cli"]
    times, load = {}, {"before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sequential", "sweep"):
            where = [f"output_dir={tmp}/{name}", f"tracking.uri=sqlite:///{tmp}/{name}/mlflow.db", *args.overrides]
            if name == "sequential":
                command = [*lifelong, "run", "experiments/quickstart.yaml", *where, "--seeds", seeds, "--quiet"]
            else:
                command = [*lifelong, "sweep", "experiments/quickstart.yaml", *where, "--seeds", seeds]
                command += ["--jobs", str(args.jobs)]
            times[name] = timed(command)
            print(f"{name}: {times[name]:.1f} s", flush=True)
    load["after"] = os.getloadavg()[0]
    result = {
        "runs": args.runs,
        "jobs": args.jobs,
        "overrides": args.overrides,
        "sequential_seconds": round(times["sequential"], 1),
        "sweep_seconds": round(times["sweep"], 1),
        "speedup": round(times["sequential"] / times["sweep"], 2),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": load,
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"\n| {args.runs} quickstart runs | wall time |\n|---|---|")
    print(f"| sequential (`run --seeds`) | {result['sequential_seconds']} s |")
    print(f"| `sweep --jobs {args.jobs}` | {result['sweep_seconds']} s |")
    print(f"| speedup | {result['speedup']}x |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
