"""Running many runs on an existing launcher: submitit's local executor on one machine, its SLURM executor on a cluster.

Each run is a :class:`RunJob`, a ``submitit.helpers.Checkpointable`` callable with its run directory fixed in
advance. When SLURM preempts or times out a job (or ``lifelong`` sends the local job submitit's preemption
signal, USR2), submitit calls the job's ``checkpoint()``, which resubmits the same callable; the requeued job
finds the run directory's last checkpoint and resumes it, into the same MLflow run. A job killed without
warning (SIGKILL, a lost node) resumes the same way when it is submitted again.

On one machine at most ``jobs`` runs are in flight; each sees one GPU (``CUDA_VISIBLE_DEVICES``) when there
are GPUs, otherwise the CPU cores are split between them (``torch.set_num_threads(cores // jobs)``). On SLURM
the runs go out as one job array of at most ``jobs`` concurrent tasks, one GPU each when ``gpus`` is set.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import submitit
import torch

from lifelong.errors import ConfigError

LAUNCHERS = ("local", "slurm")
POLL_SECONDS = 0.5


@dataclass
class RunJob(submitit.helpers.Checkpointable):
    """One run of a sweep: ``lifelong run <config> <overrides>`` with ``seed``, in ``run_dir``, nested in ``parent``."""

    config: str
    overrides: list[str]
    seed: int
    run_dir: str
    parent: str | None = None
    threads: int = 0  # torch intra-op threads (0: torch's default)
    allowed: list[str] = field(default_factory=list)  # modules the config may name code from (lifelong.safety)

    def __call__(self) -> dict[str, Any]:
        from lifelong import config
        from lifelong.checkpoint import DIRNAME as CHECKPOINTS
        from lifelong.generations import Generations
        from lifelong.run import run
        from lifelong.safety import allow_code
        from lifelong.tracking import mark_dead_run

        if self.threads:
            torch.set_num_threads(self.threads)
        allow_code(self.allowed)
        cfg = replace(config.load(self.config, self.overrides), seed=self.seed)
        run_dir = Path(self.run_dir)
        committed = Generations(run_dir / CHECKPOINTS).latest_name() is not None
        resume = run_dir if committed else None
        if resume is None and (run_dir / "tracking").exists():
            mark_dead_run(run_dir)  # an attempt that died before its first checkpoint: FAILED, then a fresh start
        result = run(cfg, quiet=True, resume=resume, parent=self.parent, run_dir=run_dir)
        return {"run_id": result.run_id, "run_dir": str(result.run_dir), "metrics": result.metrics}


@dataclass
class LaunchOptions:
    """Where and how the runs go: ``--launcher``, ``--jobs`` and the SLURM settings."""

    launcher: str = "local"
    jobs: int = 1
    folder: Path = Path("runs/submitit")  # submitit's pickles and the jobs' logs
    timeout_min: int = 24 * 60
    partition: str | None = None
    gpus: int = 0  # SLURM: GPUs per job (local: one per job whenever the machine has GPUs)
    slurm: dict[str, Any] = field(default_factory=dict)  # more SLURM parameters (submitit's slurm_* names)


def cpu_threads(jobs: int) -> int:
    """Torch threads per job when ``jobs`` runs share this machine's cores."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, jobs))


def make_executor(options: LaunchOptions) -> submitit.Executor:
    """The submitit executor for ``options.launcher`` with the per-job resources set."""
    if options.launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {options.launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if options.jobs < 1:
        raise ConfigError(f"--jobs {options.jobs}: run at least one job at a time")
    if options.launcher == "local":
        local = submitit.LocalExecutor(folder=options.folder)
        local.update_parameters(timeout_min=options.timeout_min, gpus_per_node=min(torch.cuda.device_count(), 1))
        return local
    if shutil.which("srun") is None:
        raise ConfigError(
            "--launcher slurm needs SLURM (srun, sbatch) on PATH: run the sweep on the cluster's login node"
        )
    executor = submitit.SlurmExecutor(folder=options.folder)
    settings: dict[str, Any] = {"time": options.timeout_min, "array_parallelism": options.jobs, **options.slurm}
    if options.partition:
        settings["partition"] = options.partition
    if options.gpus:
        settings["gpus_per_node"] = options.gpus
    executor.update_parameters(**settings)
    return executor


def launch(
    jobs: list[RunJob], options: LaunchOptions, executor: submitit.Executor | None = None
) -> list[dict[str, Any] | BaseException]:
    """Run ``jobs`` (on ``executor``, default :func:`make_executor`'s) and wait for them.

    Each result is the job's return value or the exception it failed with.
    """
    executor = executor if executor is not None else make_executor(options)
    if options.launcher == "slurm":
        with executor.batch():  # one job array; SLURM runs at most ``jobs`` of its tasks at once
            submitted = [executor.submit(job) for job in jobs]
        return [_outcome(job) for job in submitted]
    return _run_locally(executor, jobs, options.jobs)


def _outcome(job: submitit.Job) -> dict[str, Any] | BaseException:
    try:
        return job.result()
    except Exception as err:  # noqa: BLE001 - one failed run does not stop the others; the caller reports it
        return err


def _run_locally(executor: submitit.Executor, jobs: list[RunJob], slots: int) -> list[dict[str, Any] | BaseException]:
    """At most ``slots`` jobs at once, slot ``k`` on GPU ``k`` when there are GPUs (submitit has no local queue)."""
    gpus = torch.cuda.device_count()
    pending = list(enumerate(jobs))
    running: dict[int, tuple[int, submitit.Job]] = {}  # slot -> (index of the job, its submitit job)
    results: list[dict[str, Any] | BaseException] = [RuntimeError("not run")] * len(jobs)
    while pending or running:
        for slot in [s for s in range(slots) if s not in running][: len(pending)]:
            index, run_job = pending.pop(0)
            if gpus:
                executor.update_parameters(visible_gpus=[slot % gpus])
            running[slot] = (index, executor.submit(run_job))
        time.sleep(POLL_SECONDS)
        for slot, (index, job) in list(running.items()):
            if job.done():
                results[index] = _outcome(job)
                del running[slot]
    return results
