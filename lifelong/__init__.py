"""lifelong: continual- and lifelong-learning on PyTorch Lightning.

Public API: ``load_config`` (YAML + overrides -> validated config), ``run`` (one seed),
``ConfigError``. Everything heavy is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lifelong.errors import ConfigError, DataError
from lifelong.version import __version__

__all__ = ["ConfigError", "DataError", "__version__", "load_config", "run"]

if TYPE_CHECKING:
    from lifelong.config import ExperimentConfig
    from lifelong.run import RunResult


def load_config(paths: Any = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate an experiment config (see ``lifelong.config.load``)."""
    from lifelong.config import load

    return load(paths, overrides)


def run(cfg: ExperimentConfig, quiet: bool = False) -> RunResult:
    """Run one experiment (one seed) and track it in MLflow (see ``lifelong.run.run``)."""
    from lifelong.run import run as _run

    return _run(cfg, quiet=quiet)
