"""Continual-learning strategies, built by name through ``STRATEGIES`` (DESIGN §3).

Every module of this package is imported here, so a new file that uses ``@register_strategy``
is registered (and picked up by the parametrized tests) without editing this file.
"""

import importlib
import pkgutil

from lifelong.strategies.base import STRATEGIES, StepOutput, Strategy, check_head, register_strategy

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STRATEGIES",
    "StepOutput",
    "Strategy",
    "build_strategy",
    "check_head",
    "register_strategy",
    "strategy_names",
]


def strategy_names(family: str = "classifier") -> list[str]:
    """The registered strategies that train a model of ``family`` (``"classifier"`` or ``"audio_video"``)."""
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).model_family == family]


def build_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy registered as ``name`` with its keyword parameters."""
    return STRATEGIES.get(name)(**params)
