"""Analyses run at every evaluation point of the loop, enabled by the config's ``analysis:`` section.

Every module of this package is imported here, so a new file that uses ``@register_analysis``
is available by name without editing this file.
"""

import importlib
import pkgutil
from typing import Any

from lifelong.analysis.base import ANALYSES, Analysis, evaluation_mode, register_analysis

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ANALYSES", "Analysis", "build_analyses", "evaluation_mode", "register_analysis"]


def build_analyses(settings: dict[str, dict[str, Any] | None]) -> dict[str, Analysis]:
    """One analysis per enabled entry of ``settings`` (name -> keyword parameters; null = defaults)."""
    return {name: ANALYSES.get(name)(**(params or {})) for name, params in settings.items()}
