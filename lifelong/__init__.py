"""lifelong: continual- and lifelong-learning on PyTorch Lightning.

Public API: ``load_config`` (YAML + overrides -> validated config), ``run`` (one seed),
``load_model`` (a run's model from the MLflow store), ``ConfigError``. Everything heavy is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lifelong.errors import ConfigError, DataError
from lifelong.version import __version__

__all__ = ["ConfigError", "DataError", "__version__", "load_config", "load_model", "run"]

if TYPE_CHECKING:
    from lifelong.config import ExperimentConfig
    from lifelong.model_io import LoadedModel
    from lifelong.run import RunResult


def load_config(paths: Any = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate an experiment config (see ``lifelong.config.load``)."""
    from lifelong.config import load

    return load(paths, overrides)


def run(cfg: ExperimentConfig, quiet: bool = False) -> RunResult:
    """Run one experiment (one seed) and track it in MLflow (see ``lifelong.run.run``)."""
    from lifelong.run import run as _run

    return _run(cfg, quiet=quiet)


def load_model(run: Any, experience: int | None = None, uri: str | None = None) -> LoadedModel:
    """A run's model after ``experience`` (default: the last), from the MLflow store (see ``lifelong.model_io``)."""
    from lifelong.model_io import load_model as _load_model

    return _load_model(run, experience, uri)
