"""The one wiring function (DESIGN §1): config -> stream -> model -> strategy -> loop -> tracker."""

from __future__ import annotations

import inspect
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch

from lifelong import config as config_lib
from lifelong.analysis import ANALYSES, Analysis, build_analyses
from lifelong.config import ExperimentConfig
from lifelong.data import DATASETS, SCENARIOS, benchmark_from_name, build_stream, resolve_root, stream_from_avalanche
from lifelong.data.types import Experience, Stream
from lifelong.errors import ConfigError
from lifelong.loop import LoaderSettings, run_stream
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.models import HEADS, build_model, validate_backbone
from lifelong.module import ContinualModule
from lifelong.registry import check_kwargs
from lifelong.strategies import STRATEGIES, Strategy, build_strategy
from lifelong.tracking import MlflowTracker, resolve_uri


def check_names(cfg: ExperimentConfig) -> None:
    """Every registry name and strategy parameter in ``cfg`` exists (before anything is built)."""
    DATASETS.get(cfg.stream.dataset)
    SCENARIOS.get(cfg.stream.scenario)
    validate_backbone(cfg.model.backbone)
    HEADS.get(cfg.model.head)
    check_kwargs(STRATEGIES.get(cfg.strategy.name), cfg.strategy.params, "strategy.params")
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

    def make() -> L.Trainer:
        return L.Trainer(
            max_epochs=epochs,
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            strategy=cfg.trainer.strategy,
            precision=cfg.trainer.precision,  # type: ignore[arg-type]
            deterministic=cfg.trainer.deterministic,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=cfg.trainer.progress_bar,
            num_sanity_val_steps=0,
        )

    return make


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


class RunListener:
    """Prints progress and forwards metrics to the tracker."""

    def __init__(
        self,
        tracker: MlflowTracker | None,
        quiet: bool = False,
        run_dir: Path | None = None,
        analyses: dict[str, Analysis] | None = None,
    ) -> None:
        self.tracker = tracker
        self.quiet = quiet
        self.run_dir = run_dir
        self.analyses = analyses or {}
        self.train_seconds = 0.0
        self.train_samples = 0
        self.last_loss = float("nan")
        self.matrix: AccuracyMatrix | None = None
        self._line = ""

    def on_train_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.last_loss = metrics.get("train/loss", self.last_loss)
        if self.tracker:
            self.tracker.log_metrics(metrics, step)

    def on_experience_end(self, experience: Experience, seconds: float, samples: int) -> None:
        self.train_seconds += seconds
        self.train_samples += samples
        self._line = (
            f"exp {experience.index}: classes {experience.classes} | {samples} samples in {seconds:.1f}s "
            f"({samples / max(seconds, 1e-9):.0f}/s) | loss {self.last_loss:.3f}"
        )

    def on_evaluated(self, after: int, accuracies: list[float], matrix: AccuracyMatrix) -> None:
        self.matrix = matrix
        metrics = matrix.metrics_so_far() if after >= 0 else {}
        if self.tracker:
            step = max(after, 0)
            values = {f"eval/acc/exp{j}": a for j, a in enumerate(accuracies)}
            if after < 0:
                values = {f"eval/init_acc/exp{j}": a for j, a in enumerate(accuracies)}
            values.update({f"stream/{k}": v for k, v in metrics.items()})
            self.tracker.log_metrics(values, step)
        if not self.quiet and after >= 0:
            seen = accuracies[: after + 1]
            print(f"{self._line} | acc on seen {sum(seen) / len(seen):.3f} | avg_acc {metrics.get('avg_acc', 0):.3f}")

    def on_analysis(self, after: int, metrics: dict[str, float]) -> None:
        if self.tracker and metrics:
            self.tracker.log_metrics(metrics, max(after, 0))
        if self.run_dir is not None:
            for analysis in self.analyses.values():
                analysis.write_artifacts(self.run_dir)
        if not self.quiet and metrics and after >= 0:
            print("  " + " | ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))


def run(cfg: ExperimentConfig, quiet: bool = False) -> RunResult:
    """Run one experiment with one seed and track it."""
    check_names(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    batch_size, epochs = online_settings(cfg)
    stream, module = build_parts(cfg)
    run_dir = Path(cfg.output_dir) / cfg.experiment_name / f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    analyses = build_enabled_analyses(cfg, stream)
    tracker = _start_tracker(cfg) if cfg.tracking.enabled else None
    listener = RunListener(tracker, quiet, run_dir, analyses)
    if not quiet:
        print(
            f"{cfg.run_name}: {len(stream)} experiences of {stream.name} ({stream.info.scenario}), "
            f"strategy {cfg.strategy.name}, batch {batch_size} x {epochs} epoch(s)"
        )
    started = time.perf_counter()
    status = "FAILED"
    try:
        matrix = run_stream(
            module,
            stream,
            trainer_factory(cfg, epochs),
            LoaderSettings(batch_size, cfg.train.eval_batch_size, cfg.train.num_workers, cfg.seed),
            listener,
            analyses,
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # Whatever happened, the rows evaluated so far are written and logged.
        if status != "FINISHED":
            matrix = listener.matrix or AccuracyMatrix(len(stream))
        result = RunResult(
            cfg,
            matrix,
            matrix.metrics_so_far(),
            run_dir,
            tracker.run_id if tracker else None,
            time.perf_counter() - started,
            listener.train_samples / max(listener.train_seconds, 1e-9),
        )
        _write_outputs(result, status)
        if tracker:
            tracker.log_artifact(run_dir)
            tracker.end(status)
    return result


def _start_tracker(cfg: ExperimentConfig) -> MlflowTracker:
    uri = resolve_uri(cfg.tracking.uri, cfg.output_dir)
    tracker = MlflowTracker(uri, cfg.experiment_name, cfg.run_name, artifact_root=Path(cfg.output_dir) / "artifacts")
    tags = {
        "strategy": cfg.strategy.name,
        "device": cfg.trainer.accelerator,
        "precision": cfg.trainer.precision,
        "world_size": str(cfg.trainer.devices),
    }
    tracker.start(config_lib.flatten(cfg), tags)
    return tracker


def _write_outputs(result: RunResult, status: str = "FINISHED") -> None:
    from lifelong.plots import matrix_heatmap

    run_dir = result.run_dir
    (run_dir / "config.yaml").write_text(config_lib.to_yaml(result.config))
    result.matrix.to_csv(run_dir / "accuracy_matrix.csv")
    matrix_heatmap(result.matrix, run_dir / "accuracy_matrix.png", title=f"Accuracy: {result.config.run_name}")
    summary = {
        "run_name": result.config.run_name,
        "run_id": result.run_id,
        "status": status,
        "experiences_evaluated": result.matrix.rows_filled,
        "metrics": result.metrics,
        "seconds": round(result.seconds, 2),
        "train_samples_per_second": round(result.samples_per_second, 1),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def run_seeds(cfg: ExperimentConfig, seeds: list[int], quiet: bool = False) -> list[RunResult]:
    """The same experiment once per seed."""
    return [run(replace(cfg, seed=seed), quiet=quiet) for seed in seeds]
