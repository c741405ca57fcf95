"""Executing a run (DESIGN §1): the parts ``lifelong.build`` makes from the config, driven by the loop and tracked.

``run(cfg)`` is the same for every kind of run (classification or audio-video pretraining): one module,
one outer loop, one tracker, checkpoints, signals and DDP.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lifelong import config as config_lib
from lifelong import progress
from lifelong.build import (
    build_enabled_analyses,
    build_parts,
    check_names,
    loader_settings,
    online_settings,
    trainer_factory,
)
from lifelong.checkpoint import RunCheckpointer, check_same_config, find_run_dir, read_state
from lifelong.config import ExperimentConfig
from lifelong.errors import ConfigError, NonFiniteLossError, RunInterrupted
from lifelong.journal import atomic_write_text
from lifelong.listener import RunListener
from lifelong.logs import LOG, ensure_console
from lifelong.loop import run_stream
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.metrics.score_matrices import ACCURACY, ScoreMatrices, matrix_file
from lifelong.progress import LiveBar
from lifelong.provenance import RunExtras, SeedGroup, resolved_params, run_tags, tracked_run_name
from lifelong.safety import check_writable_dir
from lifelong.signals import StopRequest
from lifelong.tracking import START_TIMEOUT, MlflowTracker, check_store, mark_dead_run, resolve_uri, run_dir_tag

__all__ = ["RunResult", "build_parts", "check_names", "run", "run_seeds"]

# Keys that may differ between a run and its resumption: they do not change what is computed.
RESUME_MAY_CHANGE = ("trainer.progress_bar", "train.num_workers", "train.eval_batch_size", "tracking.uri", "output_dir")


@dataclass
class RunResult:
    """What one run produced."""

    config: ExperimentConfig
    matrices: ScoreMatrices  # one matrix per score of the run's evaluator (accuracy: "acc"; retrieval: "a2v_R1" ...)
    metrics: dict[str, float]
    run_dir: Path
    run_id: str | None = None
    seconds: float = 0.0
    samples_per_second: float = 0.0
    rank: int = 0  # this process's rank (DDP); only rank 0 reports
    scenario: str = ""  # the stream's scenario (class_incremental ..., audio_video)

    @property
    def matrix(self) -> AccuracyMatrix:
        """The matrix of the primary score (the accuracy matrix of a classification run)."""
        return self.matrices.primary


def world_of(make_trainer) -> tuple[int, int]:  # noqa: ANN001
    """(global rank, world size) of this process, as the Trainers of this run will see them."""
    trainer = make_trainer()
    return trainer.global_rank, trainer.world_size


def locate_run(cfg: ExperimentConfig, target: str, world_size: int) -> tuple[Path, dict[str, Any]]:
    """The run directory and checkpoint state ``--resume target`` names (a run directory or an MLflow run id).

    Raises:
        ConfigError: nothing to resume there, or the config or the number of processes differs from the run's.

    """
    run_dir = find_run_dir(target, Path(cfg.output_dir) / cfg.experiment_name)
    if run_dir is None and cfg.tracking.enabled:
        tagged = run_dir_tag(resolve_uri(cfg.tracking.uri, cfg.output_dir), target)
        run_dir = Path(tagged) if tagged else None
    if run_dir is None:
        raise ConfigError(
            f"--resume {target!r} is neither a run directory nor the MLflow run id of a run under "
            f"{Path(cfg.output_dir) / cfg.experiment_name}; pass the run directory that `lifelong run` printed"
        )
    try:
        state = read_state(run_dir)
    except ConfigError:
        if cfg.tracking.enabled:
            mark_dead_run(run_dir)  # died before its first checkpoint: FAILED, not RUNNING for ever
        raise
    saved = run_dir / "config.yaml"
    try:
        before = config_lib.flatten(config_lib.load(saved))
    except ConfigError as err:
        raise ConfigError(f"--resume {run_dir}: its config.yaml does not load: {err}") from None
    check_same_config(before, config_lib.flatten(cfg), RESUME_MAY_CHANGE, f"--resume {run_dir}", saved)
    if state["world_size"] != world_size:
        raise ConfigError(
            f"--resume {run_dir}: the run used {state['world_size']} process(es), this one would use {world_size}; "
            "resume with the trainer.devices and trainer.num_nodes it started with"
        )
    return run_dir, state


def new_run_dir(cfg: ExperimentConfig) -> Path:
    """A new ``<output_dir>/<experiment>/<run name>-<date>-<time>`` (not created; a suffix keeps runs apart)."""
    base = Path(cfg.output_dir) / cfg.experiment_name / f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = base, 1
    while run_dir.exists():
        run_dir, n = base.with_name(f"{base.name}-{n}"), n + 1
    return run_dir


def run(
    cfg: ExperimentConfig,
    quiet: bool = False,
    resume: str | Path | None = None,
    parent: str | None = None,
    run_dir: Path | None = None,
) -> RunResult:
    """Run one experiment with one seed and track it.

    Under DDP every rank calls this; only rank 0 writes the run directory's outputs and talks to MLflow.

    Args:
        cfg: the experiment.
        quiet: print nothing but errors.
        resume: continue the stopped run in this run directory (or with this MLflow run id), in the
            same run directory and MLflow run; the config must be the one it started with.
        parent: the MLflow run id of the parent (several seeds, or a sweep) this run is nested in.
        run_dir: the run directory of a new run (default: a new dated folder); a sweep names it in advance,
            so that a requeued job finds it again.

    """
    check_names(cfg)
    ensure_console()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    batch_size, epochs = online_settings(cfg)
    make_trainer = trainer_factory(cfg)
    rank, world_size = world_of(make_trainer)
    quiet = quiet or rank > 0
    if resume is not None and not cfg.checkpoint.enabled:
        raise ConfigError("--resume needs checkpoints; remove checkpoint.enabled=false")
    previous = locate_run(cfg, str(resume), world_size) if resume is not None else None
    uri = resolve_uri(cfg.tracking.uri, cfg.output_dir)
    if rank == 0:
        check_writable_dir("output_dir", cfg.output_dir)  # fail fast, before the data is loaded
    if rank == 0 and cfg.tracking.enabled:
        check_store(uri, START_TIMEOUT)
    bar = LiveBar() if not quiet and progress.wanted() else None  # the module draws it while training
    stream, module = build_parts(cfg, say=None if quiet else LOG.info, progress=bar)  # an init stage says what it does
    analyses = build_enabled_analyses(cfg, stream)
    if previous:
        run_dir = previous[0]
    elif rank == 0:
        run_dir = run_dir or new_run_dir(cfg)
    tracker = None
    if rank == 0 and cfg.tracking.enabled:
        tracker = _start_tracker(cfg, uri, run_dir, world_size, previous[1] if previous else None, parent)  # type: ignore[arg-type]
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        atomic_write_text(run_dir / "config.yaml", config_lib.to_yaml(cfg))  # type: ignore[operator]
    extras = RunExtras(tracker, cfg, stream, module, run_dir, resuming=previous is not None)
    listener = RunListener(tracker, quiet, run_dir, analyses, on_model=extras.log_model, bar=bar)
    module.progress = bar
    info = {"run_id": tracker.run_id if tracker else None, "experiment": cfg.experiment_name, "run_name": cfg.run_name}
    checkpoints = RunCheckpointer(
        run_dir, rank, world_size, module, analyses, listener, info, previous is not None, cfg.checkpoint.enabled
    )
    checkpoints.journal = tracker  # its values are made durable before each checkpoint commits
    checkpoints.every_n_steps = cfg.checkpoint.every_n_steps
    if not quiet:
        LOG.info(
            f"{cfg.run_name}: {len(stream)} experiences of {stream.name} ({stream.info.scenario}), "
            f"strategy {cfg.strategy.name}, batch {batch_size} x {epochs} epoch(s)"
            + (f", {world_size} processes" if world_size > 1 else "")
            + f"\nrun dir: {run_dir}"
        )
    started = time.perf_counter()
    status = "FAILED"
    stop = StopRequest()
    module.stop_request = stop
    try:
        with stop:
            matrix = run_stream(
                module,
                stream,
                make_trainer,
                loader_settings(cfg),
                listener,
                analyses,
                checkpoints,
            )
        status = "FINISHED"
    except (RunInterrupted, KeyboardInterrupt, SystemExit, NonFiniteLossError) as err:  # SystemExit: Lightning's
        status = "FAILED" if isinstance(err, NonFiniteLossError) else "KILLED"
        # Lightning ends a fit with exit(1) on a KeyboardInterrupt (a second Ctrl+C): report it as one. Any other
        # exit goes on as it is (submitit's exit(-1) after requeueing a preempted job must reach its controller).
        lightning_exit = isinstance(err, SystemExit) and err.code == 1
        stopped = KeyboardInterrupt() if lightning_exit else err
        stopped.run_dir, stopped.checkpointed, stopped.rank = checkpoints.run_dir, checkpoints.completed, rank  # type: ignore[union-attr]
        raise stopped from None
    finally:
        with stop.shielded():  # a further Ctrl+C must not leave the records half-written
            module.stop_request = None
            # Whatever happened, the rows evaluated so far are written and logged.
            if status != "FINISHED":
                matrix = listener.matrix or ScoreMatrices(module.evaluator.score_names, len(stream))
            result = RunResult(
                cfg,
                matrix,
                matrix.metrics_so_far(),
                checkpoints.run_dir or Path(),
                tracker.run_id if tracker else None,
                time.perf_counter() - started,
                listener.train_samples / max(listener.train_seconds, 1e-9),
                rank,
                stream.info.scenario,
            )
            if rank == 0 and (listener.matrix is not None or previous is None):  # a failed restore keeps the old files
                _write_outputs(result, status, checkpoints.completed)
            extras.close()
            if tracker:
                tracker.log_run_dir(result.run_dir)
                tracker.end(status)
    return result


def _start_tracker(
    cfg: ExperimentConfig,
    uri: str,
    run_dir: Path,
    world_size: int,
    resumed: dict[str, Any] | None,
    parent: str | None = None,
) -> MlflowTracker:
    tracker = MlflowTracker(
        uri,
        cfg.experiment_name,
        tracked_run_name(cfg),
        Path(cfg.output_dir) / "artifacts",
        journal=run_dir / "tracking",
    )
    if resumed is not None and tracker.journal.meta.get("run_id"):
        tracker.resume(resumed.get("journal", {}).get("metrics"))
        return tracker
    tags = {
        "strategy": cfg.strategy.name,
        "device": cfg.trainer.accelerator,
        "precision": cfg.trainer.precision,
        "world_size": str(world_size),
        "lifelong.run_dir": str(run_dir.resolve()),
        **run_tags(cfg, parent),
    }
    tracker.start(resolved_params(cfg), tags)
    return tracker


def _write_outputs(result: RunResult, status: str = "FINISHED", checkpointed: int | None = None) -> None:
    from lifelong.plots import matrix_heatmap

    run_dir = result.run_dir
    atomic_write_text(run_dir / "config.yaml", config_lib.to_yaml(result.config))
    for score, matrix in result.matrices.matrices.items():
        stem = matrix_file(score)
        matrix.to_csv(run_dir / f"{stem}.csv")
        title = "Accuracy" if score == ACCURACY else score.replace("_", " ")
        matrix_heatmap(matrix, run_dir / f"{stem}.png", title=f"{title}: {result.config.run_name}")
    summary = {
        "scores": result.matrices.names,
        "scenario": result.scenario,
        "run_name": result.config.run_name,
        "run_id": result.run_id,
        "status": status,
        "experiences_evaluated": result.matrix.rows_filled,
        "checkpoint_after_experience": checkpointed,
        "metrics": result.metrics,
        "seconds": round(result.seconds, 2),
        "train_samples_per_second": round(result.samples_per_second, 1),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def run_seeds(
    cfg: ExperimentConfig, seeds: list[int], quiet: bool = False, resume: str | None = None
) -> list[RunResult]:
    """The same experiment once per seed (``resume`` continues one stopped run: one seed only)."""
    if resume is not None:
        if len(seeds) != 1:
            raise ConfigError(f"--resume continues one run; got --seeds {','.join(map(str, seeds))}")
        return [run(replace(cfg, seed=seeds[0]), quiet=quiet, resume=resume)]
    group = SeedGroup.start(cfg, seeds)  # several seeds: a parent run with the seeds nested
    results: list[RunResult] = []
    try:
        for seed in seeds:
            results.append(run(replace(cfg, seed=seed), quiet=quiet, parent=group.run_id if group else None))
    finally:
        if group is not None:
            group.end([r.metrics for r in results], finished=len(results) == len(seeds))
    return results
