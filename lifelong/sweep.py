"""``lifelong sweep``: the cross product of a grid of overrides and seeds, as nested runs of one parent MLflow run.

``--grid strategy.name=er,hpcr strategy.params.memory_size=200,500 --seeds 0,1`` makes 2 x 2 x 2 runs. The
parent (:class:`lifelong.provenance.SeedGroup` with a grid) is created first; every run is a
:class:`lifelong.launch.RunJob` nested in it, launched by :func:`lifelong.launch.launch`. Each run's directory
is fixed before it starts (``<output_dir>/<experiment>/<run name>-<sweep time>``), so a requeued job resumes
its own run. ``lifelong compare <experiment> --grid`` prints the sweep as a grid.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lifelong import config, shipped
from lifelong.launch import LaunchOptions, RunJob, cpu_threads, launch, make_executor
from lifelong.provenance import SeedGroup, tracked_run_name
from lifelong.run import check_names


@dataclass
class SweepOutcome:
    """What a sweep did: its parent run and, per run, its job and its result (or the error it failed with)."""

    parent: str | None
    jobs: list[RunJob]
    results: list[dict[str, Any] | BaseException]

    @property
    def failed(self) -> list[tuple[RunJob, BaseException]]:
        return [(j, r) for j, r in zip(self.jobs, self.results, strict=True) if isinstance(r, BaseException)]


def sweep_stamp() -> str:
    """``<date>-<time>-<random>``: two sweeps started in the same second still get their own run directories."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def cells(grid: dict[str, list[str]], seeds: list[int]) -> list[tuple[list[str], int]]:
    """Every (overrides, seed) of the grid's cross product with the seeds, seeds varying fastest."""
    combos = itertools.product(*([f"{key}={value}" for value in values] for key, values in grid.items()))
    return [(list(combo), seed) for combo in combos for seed in seeds]


def plan(
    config_path: str,
    overrides: list[str],
    grid: dict[str, list[str]],
    seeds: list[int],
    threads: int = 0,
    stamp: str = "",
) -> tuple[config.ExperimentConfig, list[RunJob]]:
    """The base config and one job per cell; every cell's config is loaded and checked before anything runs.

    Each run directory ends with ``stamp`` (default: the time and a random suffix), unique to this sweep.
    """
    path = str(shipped.resolve(config_path).resolve())  # jobs may start elsewhere (SLURM); bare names are shipped
    base = config.load(path, overrides)
    stamp = stamp or sweep_stamp()
    jobs = []
    for extra, seed in cells(grid, seeds):
        cfg = replace(config.load(path, [*overrides, *extra]), seed=seed)
        check_names(cfg)
        run_dir = Path(cfg.output_dir).resolve() / cfg.experiment_name / f"{tracked_run_name(cfg)}-{stamp}"
        jobs.append(RunJob(path, [*overrides, *extra], seed, str(run_dir), threads=threads))
    return base, jobs


def sweep(
    config_path: str,
    overrides: list[str],
    grid: dict[str, list[str]],
    seeds: list[int],
    options: LaunchOptions,
    allowed: list[str] | None = None,
) -> SweepOutcome:
    """Run the sweep under one parent MLflow run and close the parent (FINISHED only if every run finished)."""
    threads = cpu_threads(options.jobs) if options.launcher == "local" else 0
    stamp = sweep_stamp()
    base, jobs = plan(config_path, overrides, grid, seeds, threads, stamp)
    folder = Path(base.output_dir).resolve() / "submitit" / f"{base.experiment_name}-{stamp}"
    options = replace(options, folder=folder)
    executor = make_executor(options)  # a launcher that cannot be used fails before the parent run exists
    group = SeedGroup.start(base, seeds, grid=grid)
    jobs = [replace(job, parent=group.run_id if group else None, allowed=list(allowed or [])) for job in jobs]
    results: list[dict[str, Any] | BaseException] = []
    try:
        results = launch(jobs, options, executor)
    finally:
        if group is not None:
            done = [r["metrics"] for r in results if isinstance(r, dict)]
            group.end(done, finished=len(done) == len(jobs))
    return SweepOutcome(group.run_id if group else None, jobs, results)
