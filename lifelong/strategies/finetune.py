"""Fine-tuning: the lower bound of continual learning."""

from __future__ import annotations

from lifelong.strategies.base import Strategy, register_strategy


@register_strategy("finetune")
class Finetune(Strategy):
    """Plain cross-entropy on each experience in turn, no protection against forgetting (lower bound)."""
