"""What a tracked run records about itself (DESIGN §6): resolved params, its name, tags and the stream input.

The params of a run are its resolved config *with the defaults filled in*: the constructor defaults
of the strategy and of the backbone and head (``strategy.params.replay_batch_size`` is there even
when the YAML does not name it). The config digest (:mod:`lifelong.digest`) is computed from these
params, so a YAML that spells out a default and one that leaves it out are the same setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lifelong import config as config_lib
from lifelong.config import ExperimentConfig
from lifelong.data.types import Stream
from lifelong.digest import config_digest, short_digest

__all__ = ["resolved_params", "run_tags", "stream_input", "tracked_run_name"]

PACKAGE_DIR = Path(__file__).resolve().parent


def _defaults(factory: Callable[..., object], given: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword defaults of ``factory`` that ``given`` does not set (positional-only and ``skip`` left out)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in given
        and p.name not in skip
    }


def _text(value: Any) -> str:
    """A default as the flattened config writes a value (tuples as lists, like YAML lists)."""
    if isinstance(value, tuple):
        value = list(value)
    return str(value)


def resolved_params(cfg: ExperimentConfig) -> dict[str, str]:
    """The flattened resolved config plus the strategy's, backbone's and head's defaults (MLflow params).

    ``strategy.params.seed`` is not added: the run's ``seed`` sets it.
    """
    from lifelong.models import BACKBONES, HEADS
    from lifelong.models.av_models import AV_MODELS, av_model_config
    from lifelong.strategies import STRATEGIES

    params = config_lib.flatten(cfg)
    sections: list[tuple[str, Callable[..., object] | None, dict[str, Any], tuple[str, ...]]] = [
        ("strategy.params", _get(STRATEGIES, cfg.strategy.name), dict(cfg.strategy.params), ("seed",)),
        ("model.backbone_kwargs", _get(BACKBONES, cfg.model.backbone), dict(cfg.model.backbone_kwargs), ()),
    ]
    if cfg.model.backbone in AV_MODELS:  # an audio-video model: its config's fields, no head
        size = dataclasses.asdict(av_model_config(cfg.model.backbone, dict(cfg.model.backbone_kwargs)))
        params.pop("model.backbone_kwargs", None)
        params.update({f"model.backbone_kwargs.{k}": _text(v) for k, v in size.items()})
    else:
        sections.append(("model.head_kwargs", _get(HEADS, cfg.model.head), dict(cfg.model.head_kwargs), ()))
    for prefix, factory, given, skip in sections:
        if factory is None:
            continue
        added = _defaults(factory, given, skip)
        if added and params.get(prefix) == "{}":  # an empty mapping flattens to "{}": replace it by its keys
            del params[prefix]
        params.update({f"{prefix}.{name}": _text(value) for name, value in added.items()})
    return dict(sorted(params.items()))


def _get(registry: Any, name: str) -> Callable[..., object] | None:
    return registry.get(name) if name in registry else None


def tracked_run_name(cfg: ExperimentConfig) -> str:
    """``<strategy>-<stream>-<digest>-s<seed>``: the seeds of one setting share all but the last part."""
    return f"{cfg.strategy.name}-{cfg.stream_name}-{short_digest(resolved_params(cfg))}-s{cfg.seed}"


def run_tags(cfg: ExperimentConfig, parent_run_id: str | None = None) -> dict[str, str]:
    """The config digest, the command (``mlflow.source.*``; the tracker adds the package's git commit), the parent."""
    tags = {
        "lifelong.config_digest": config_digest(resolved_params(cfg)),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500] or "lifelong",
    }
    with contextlib.suppress(OSError, KeyError):
        tags["mlflow.user"] = getpass.getuser()
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def _tensor_digest(hasher: Any, tensor: torch.Tensor) -> None:
    hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def stream_input(cfg: ExperimentConfig, stream: Stream) -> dict[str, Any]:
    """The stream as an MLflow dataset input: name, digest of its samples, and a profile.

    The profile holds the scenario, the class order (the classes of each experience in order) and the
    train/test sample counts per experience; the digest hashes every sample's input, label and task
    label in stream order, so two runs with the same digest saw the same data in the same order.
    """
    hasher = hashlib.sha256()
    for part in (stream.train, stream.test):
        for experience in part:
            data = experience.dataset
            hasher.update(str(len(data)).encode())
            for name in ("x", "y", "t", "video", "audio", "group"):  # in-memory data; lazy datasets: counts only
                if isinstance(tensor := getattr(data, name, None), torch.Tensor):
                    _tensor_digest(hasher, tensor)
    info = stream.info
    profile = {
        "scenario": info.scenario,
        "num_classes": info.num_classes,
        "n_experiences": info.n_experiences,
        "input_shape": list(info.input_shape),
        "class_order": [[c if isinstance(c, str) else int(c) for c in cs] for cs in info.classes_per_experience],
        "train_counts": [len(e.dataset) for e in stream.train],
        "test_counts": [len(e.dataset) for e in stream.test],
    }
    source = {"dataset": cfg.stream_name, "scenario": cfg.stream.scenario, "seed": cfg.seed}
    return {
        "name": stream.name,
        "digest": hasher.hexdigest()[:36],
        "source": json.dumps(source),
        "profile": json.dumps(profile),
    }


class RunExtras:
    """What a tracked run logs besides metrics: the stream input, system metrics, the model after each experience.

    Everything is off on ranks > 0 and without tracking (``tracker`` is ``None``).
    """

    def __init__(
        self, tracker: Any, cfg: ExperimentConfig, stream: Stream, module: Any, run_dir: Path | None, resuming: bool
    ) -> None:
        from lifelong.model_io import ModelLogger
        from lifelong.tracking import SystemMetrics, log_stream_input

        self.system: SystemMetrics | None = None
        self.log_model: ModelLogger | None = None
        if tracker is None or run_dir is None:
            return
        if not resuming:
            log_stream_input(tracker, stream_input(cfg, stream))
        if cfg.tracking.system_metrics:
            self.system = SystemMetrics(tracker)
        if cfg.tracking.log_models:
            self.log_model = ModelLogger(tracker, module.model, module.strategy, cfg, stream.info, run_dir)

    def close(self) -> None:
        """Stop the system metrics (before the run ends)."""
        if self.system is not None:
            self.system.stop()


class SeedGroup:
    """The parent MLflow run of one invocation over several seeds (or of a sweep); its runs are nested in it.

    On the parent: the seeds' shared params, ``seeds``, and per stream metric its mean over the seeds
    (``stream/<metric>``) and sample std (``stream/<metric>_std``), so the UI compares groups. The parent
    of a sweep (``grid``: the swept keys and their values) holds the params shared by all its runs,
    ``sweep.grid`` and the number of runs; its settings are compared by ``lifelong compare --grid``.
    """

    def __init__(self, uri: str, run_id: str, grid: dict[str, list[str]] | None = None) -> None:
        self.uri, self.run_id, self.grid = uri, run_id, grid

    @classmethod
    def start(
        cls, cfg: ExperimentConfig, seeds: list[int], grid: dict[str, list[str]] | None = None
    ) -> SeedGroup | None:
        """The group's parent run; ``None`` for one seed and no grid, without tracking, or on ranks > 0."""
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        from lifelong.tracking import PARENT_ROLE, ROLE_TAG, SWEEP_ROLE, resolve_uri, start_parent_run

        if (len(seeds) < 2 and not grid) or not cfg.tracking.enabled or getattr(rank_zero_only, "rank", 0) != 0:
            return None
        uri = resolve_uri(cfg.tracking.uri, cfg.output_dir)
        resolved = resolved_params(cfg)
        swept = {"seed", *(grid or {})}
        params = {**{k: v for k, v in resolved.items() if k not in swept}, "seeds": ",".join(map(str, seeds))}
        name = f"{cfg.strategy.name}-{cfg.stream_name}-{short_digest(resolved)}-x{len(seeds)}"
        tags = {**run_tags(cfg), ROLE_TAG: PARENT_ROLE}
        if grid:
            params["sweep.grid"] = grid_text(grid)
            runs = len(seeds) * math.prod(len(values) for values in grid.values())
            name = f"sweep-{cfg.stream_name}-{short_digest(params)}-x{runs}"
            tags[ROLE_TAG] = SWEEP_ROLE
        root = Path(cfg.output_dir) / "artifacts"
        return cls(uri, start_parent_run(uri, cfg.experiment_name, name, params, tags, root), grid)

    def end(self, metrics: list[dict[str, float]], finished: bool) -> None:
        """Log mean and std over the seeds' final ``metrics`` (a sweep: their number) and close the parent."""
        import statistics

        from lifelong.tracking import end_parent_run

        values: dict[str, float] = {"seeds/n": float(len(metrics))}
        if self.grid:  # a mean over different settings means nothing: compare --grid shows them side by side
            end_parent_run(self.uri, self.run_id, {"sweep/runs": float(len(metrics))}, _status(finished))
            return
        for key in sorted({k for m in metrics for k in m}):
            column = [m[key] for m in metrics if key in m]
            values[f"stream/{key}"] = statistics.fmean(column)
            values[f"stream/{key}_std"] = statistics.stdev(column) if len(column) > 1 else 0.0
        end_parent_run(self.uri, self.run_id, values if metrics else {}, _status(finished))


def _status(finished: bool) -> str:
    return "FINISHED" if finished else "KILLED"


def grid_text(grid: dict[str, list[str]]) -> str:
    """``key=v1,v2 key2=v3,v4``: a grid as it is typed after ``--grid`` (the parent's ``sweep.grid`` param)."""
    return " ".join(f"{key}={','.join(values)}" for key, values in grid.items())
