"""Continual-learning strategies, built by name through ``STRATEGIES`` (DESIGN §3)."""

from lifelong.strategies import er, finetune, joint  # noqa: F401  (registration)
from lifelong.strategies.base import STRATEGIES, StepOutput, Strategy, register_strategy

__all__ = ["STRATEGIES", "StepOutput", "Strategy", "register_strategy", "build_strategy"]


def build_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy registered as ``name`` with its keyword parameters."""
    return STRATEGIES.get(name)(**params)
