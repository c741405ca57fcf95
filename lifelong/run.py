"""The one wiring function (DESIGN §1): config -> stream -> model -> strategy -> loop -> tracker."""

from __future__ import annotations

import collections.abc
import inspect
import json
import time
import types
import typing
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

from lifelong import config as config_lib
from lifelong.analysis import ANALYSES, Analysis, build_analyses
from lifelong.checkpoint import RunCheckpointer, check_same_config, find_run_dir, read_state
from lifelong.config import ExperimentConfig
from lifelong.data import DATASETS, SCENARIOS, benchmark_from_name, build_stream, resolve_root, stream_from_avalanche
from lifelong.data.types import Stream
from lifelong.errors import ConfigError, NonFiniteLossError, RunInterrupted
from lifelong.journal import atomic_write_text
from lifelong.listener import RunListener
from lifelong.loop import LoaderSettings, run_stream
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.models import HEADS, build_model, validate_backbone
from lifelong.module import ContinualModule
from lifelong.registry import check_kwargs
from lifelong.safety import check_code, check_writable_dir
from lifelong.signals import StopRequest
from lifelong.strategies import STRATEGIES, Strategy, build_strategy
from lifelong.tracking import START_TIMEOUT, MlflowTracker, check_store, mark_dead_run, resolve_uri, run_dir_tag

# Keys that may differ between a run and its resumption: they do not change what is computed.
RESUME_MAY_CHANGE = ("trainer.progress_bar", "train.num_workers", "train.eval_batch_size", "tracking.uri", "output_dir")


def check_names(cfg: ExperimentConfig) -> None:
    """Every registry name and strategy parameter in ``cfg`` exists, and code it names is allowed (before anything)."""
    check_code("stream.avalanche.benchmark", cfg.stream.avalanche.benchmark)
    DATASETS.get(cfg.stream.dataset)
    SCENARIOS.get(cfg.stream.scenario)
    validate_backbone(cfg.model.backbone)
    HEADS.get(cfg.model.head)
    check_kwargs(STRATEGIES.get(cfg.strategy.name), cfg.strategy.params, "strategy.params")
    check_param_types(STRATEGIES.get(cfg.strategy.name), dict(cfg.strategy.params), "strategy.params")
    for name, params in cfg.analysis.items():
        check_kwargs(ANALYSES.get(name), params or {}, f"analysis.{name}")


def analysis_device(cfg: ExperimentConfig) -> torch.device:
    """Where analyses run the model: the first GPU when the trainer may use one, else the CPU."""
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda") if wants_gpu and torch.cuda.is_available() else torch.device("cpu")


def build_enabled_analyses(cfg: ExperimentConfig, stream: Stream) -> dict[str, Analysis]:
    """The analyses the config's ``analysis:`` section enables, set up for ``stream``."""
    try:
        analyses = build_analyses(dict(cfg.analysis))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"analysis: {err}") from None
    for analysis in analyses.values():
        analysis.setup(stream, analysis_device(cfg))
    return analyses


def online_settings(cfg: ExperimentConfig) -> tuple[int, int]:
    """(batch size, epochs): an online stream is one pass in mini-batches of ``stream.online.batch_size``."""
    if cfg.stream.online.batch_size is not None:
        return cfg.stream.online.batch_size, 1
    return cfg.train.batch_size, cfg.train.epochs


def make_optimizer(cfg: config_lib.OptimConfig):  # noqa: ANN201
    """A factory building ``cfg.name`` over given parameters."""

    def build(params):  # noqa: ANN001, ANN202
        if cfg.name == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        kind = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    return build


def build_parts(cfg: ExperimentConfig) -> tuple[Stream, ContinualModule]:
    """The stream and the module (model + strategy) a config describes."""
    stream = _build_stream(cfg)
    model = build_model(
        cfg.model.backbone,
        cfg.model.head,
        num_classes=stream.info.num_classes,
        input_shape=stream.info.input_shape,
        multi_head=cfg.model.multi_head,
        n_tasks=stream.info.n_experiences,
        backbone_kwargs=dict(cfg.model.backbone_kwargs),
        head_kwargs=dict(cfg.model.head_kwargs),
    )
    strategy: Strategy = _build_strategy(cfg)
    module = ContinualModule(
        model, strategy, make_optimizer(cfg.optim), len(stream), log_every_n_steps=cfg.train.log_every_n_steps
    )
    return stream, module


def _build_stream(cfg: ExperimentConfig) -> Stream:
    if cfg.stream.avalanche.benchmark is not None:
        benchmark = benchmark_from_name(cfg.stream.avalanche.benchmark, cfg.stream.avalanche.kwargs)
        return stream_from_avalanche(benchmark, cfg.stream_name, cfg.stream.scenario)
    return build_stream(
        cfg.stream.dataset,
        cfg.stream.scenario,
        cfg.stream.n_experiences,
        root=resolve_root(cfg.stream.root),
        download=cfg.stream.download,
        seed=cfg.seed,
        class_order=cfg.stream.class_order,
        train_per_class=cfg.stream.train_per_class,
        test_per_class=cfg.stream.test_per_class,
    )


def _matches(value: object, hint: Any) -> bool:
    """Whether a config value fits a parameter annotation (plain types, unions, sequences; others pass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list | tuple)
    return True


def check_param_types(factory: Any, params: dict[str, Any], key: str) -> None:
    """Raise ``ConfigError`` naming ``key.<param>`` when a value does not fit the factory's annotation."""
    try:
        hints = typing.get_type_hints(factory.__init__ if isinstance(factory, type) else factory)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the checks to the factory
        return
    for name, value in params.items():
        if name in hints and not _matches(value, hints[name]):
            hint = hints[name]
            shown = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ConfigError(f"{key}.{name}={value!r} is not allowed; expected {shown}")


def _build_strategy(cfg: ExperimentConfig) -> Strategy:
    params = dict(cfg.strategy.params)
    if "seed" in inspect.signature(STRATEGIES.get(cfg.strategy.name)).parameters and "seed" not in params:
        params["seed"] = cfg.seed
    try:
        return build_strategy(cfg.strategy.name, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"strategy {cfg.strategy.name!r}: {err}") from None


def quiet_lightning() -> None:
    """Silence Lightning's per-Trainer banners and the warnings that do not apply to this loop."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (
        ".*does not have many workers.*",
        ".*but have no `val_dataloader`.*",
        ".*LeafSpec.*",
        ".*GPU available but not used.*",
        ".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def trainer_factory(cfg: ExperimentConfig, epochs: int):  # noqa: ANN201
    """Builds the fresh Trainer used for each experience (DESIGN §4)."""
    quiet_lightning()

    strategy = cfg.trainer.strategy
    if strategy == "ddp" and cfg.model.multi_head:  # the heads of other tasks get no gradient in a step
        strategy = "ddp_find_unused_parameters_true"

    def make() -> L.Trainer:
        try:
            return _trainer(cfg, epochs, strategy)
        except (MisconfigurationException, ImportError, ValueError, TypeError) as err:
            t = cfg.trainer
            raise ConfigError(
                f"trainer: {str(err).strip().splitlines()[0]} (trainer.accelerator={t.accelerator!r}, "
                f"trainer.devices={t.devices!r}, trainer.strategy={t.strategy!r}, trainer.precision={t.precision!r})"
            ) from None

    return make


def _trainer(cfg: ExperimentConfig, epochs: int, strategy: str) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=strategy,
        precision=cfg.trainer.precision,  # type: ignore[arg-type]
        deterministic=cfg.trainer.deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.trainer.progress_bar,
        num_sanity_val_steps=0,
    )


@dataclass
class RunResult:
    """What one run produced."""

    config: ExperimentConfig
    matrix: AccuracyMatrix
    metrics: dict[str, float]
    run_dir: Path
    run_id: str | None = None
    seconds: float = 0.0
    samples_per_second: float = 0.0
    rank: int = 0  # this process's rank (DDP); only rank 0 reports


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


def run(cfg: ExperimentConfig, quiet: bool = False, resume: str | Path | None = None) -> RunResult:
    """Run one experiment with one seed and track it.

    Under DDP every rank calls this; only rank 0 writes the run directory's outputs and talks to MLflow.

    Args:
        cfg: the experiment.
        quiet: print nothing but errors.
        resume: continue the stopped run in this run directory (or with this MLflow run id), in the
            same run directory and MLflow run; the config must be the one it started with.

    """
    check_names(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    batch_size, epochs = online_settings(cfg)
    make_trainer = trainer_factory(cfg, epochs)
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
    stream, module = build_parts(cfg)
    analyses = build_enabled_analyses(cfg, stream)
    run_dir = previous[0] if previous else (new_run_dir(cfg) if rank == 0 else None)
    tracker = None
    if rank == 0 and cfg.tracking.enabled:
        tracker = _start_tracker(cfg, uri, run_dir, world_size, previous[1] if previous else None)  # type: ignore[arg-type]
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        atomic_write_text(run_dir / "config.yaml", config_lib.to_yaml(cfg))  # type: ignore[operator]
    listener = RunListener(tracker, quiet, run_dir, analyses)
    info = {"run_id": tracker.run_id if tracker else None, "experiment": cfg.experiment_name, "run_name": cfg.run_name}
    checkpoints = RunCheckpointer(
        run_dir, rank, world_size, module, analyses, listener, info, previous is not None, cfg.checkpoint.enabled
    )
    checkpoints.journal = tracker  # its values are made durable before each checkpoint commits
    if not quiet:
        print(
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
                LoaderSettings(batch_size, cfg.train.eval_batch_size, cfg.train.num_workers, cfg.seed),
                listener,
                analyses,
                checkpoints,
            )
        status = "FINISHED"
    except (RunInterrupted, KeyboardInterrupt, SystemExit, NonFiniteLossError) as err:  # SystemExit: Lightning's
        status = "FAILED" if isinstance(err, NonFiniteLossError) else "KILLED"
        err.run_dir, err.checkpointed, err.rank = checkpoints.run_dir, checkpoints.completed, rank  # type: ignore[union-attr]
        raise
    finally:
        module.stop_request = None
        # Whatever happened, the rows evaluated so far are written and logged.
        if status != "FINISHED":
            matrix = listener.matrix or AccuracyMatrix(len(stream))
        result = RunResult(
            cfg,
            matrix,
            matrix.metrics_so_far(),
            checkpoints.run_dir or Path(),
            tracker.run_id if tracker else None,
            time.perf_counter() - started,
            listener.train_samples / max(listener.train_seconds, 1e-9),
            rank,
        )
        if rank == 0 and (listener.matrix is not None or previous is None):  # a failed restore keeps the old files
            _write_outputs(result, status, checkpoints.completed)
        if tracker:
            tracker.log_run_dir(result.run_dir)
            tracker.end(status)
    return result


def _start_tracker(
    cfg: ExperimentConfig, uri: str, run_dir: Path, world_size: int, resumed: dict[str, Any] | None
) -> MlflowTracker:
    tracker = MlflowTracker(
        uri, cfg.experiment_name, cfg.run_name, Path(cfg.output_dir) / "artifacts", journal=run_dir / "tracking"
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
    }
    tracker.start(config_lib.flatten(cfg), tags)
    return tracker


def _write_outputs(result: RunResult, status: str = "FINISHED", checkpointed: int | None = None) -> None:
    from lifelong.plots import matrix_heatmap

    run_dir = result.run_dir
    atomic_write_text(run_dir / "config.yaml", config_lib.to_yaml(result.config))
    result.matrix.to_csv(run_dir / "accuracy_matrix.csv")
    matrix_heatmap(result.matrix, run_dir / "accuracy_matrix.png", title=f"Accuracy: {result.config.run_name}")
    summary = {
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
    return [run(replace(cfg, seed=seed), quiet=quiet) for seed in seeds]
