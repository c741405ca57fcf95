"""One optimizer state for the whole stream (``optim.fresh_per_experience: false``).

Lightning builds the optimizer at the start of every ``fit``, so by default every experience starts a fresh
one. The official FLAVA run (and many pretraining recipes) keeps one Adam for the whole stream instead: its
moment estimates and step count carry over from one task to the next. :class:`CarriedOptimizer` keeps the
state of the optimizer that ended the last experience and loads it into the next one. The module exposes
it as its extra state, so checkpoints, step checkpoints and the annealed fork of the infinite schedule hold
the optimizer state of the moment they were taken.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from lifelong.errors import ConfigError


class CarriedOptimizer:
    """The optimizer state handed from one experience to the next (a no-op when ``enabled`` is false)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.saved: dict[str, Any] | None = None  # the state the next optimizer starts from
        self.live: torch.optim.Optimizer | None = None  # the optimizer of the experience being trained

    def attach(self, optimizer: torch.optim.Optimizer, experience: int) -> torch.optim.Optimizer:
        """Give the experience's new ``optimizer`` the carried state; returns it."""
        if not self.enabled:
            return optimizer
        if self.saved is not None:
            try:
                optimizer.load_state_dict(self.saved)
            except ValueError as err:  # another number of parameter groups or of parameters in a group
                raise ConfigError(
                    f"optim.fresh_per_experience=false carries one optimizer across the stream, but experience "
                    f"{experience} trains other parameters than the experience before it ({err}); "
                    "set optim.fresh_per_experience=true for this strategy"
                ) from None
        self.live = optimizer
        return optimizer

    def detach(self) -> None:
        """The experience's training ended: keep its optimizer's state for the next one."""
        if self.live is not None:
            self.saved = copy.deepcopy(self.live.state_dict())
            self.live = None

    def state(self) -> dict[str, Any]:
        """The state to checkpoint: the live optimizer's during training, the carried one between experiences."""
        if not self.enabled:
            return {}
        current = self.live.state_dict() if self.live is not None else self.saved
        return {} if current is None else {"optimizer": current}

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (into the live optimizer when one is training)."""
        saved = state.get("optimizer")
        if saved is None or not self.enabled:
            return
        if self.live is not None:
            self.live.load_state_dict(saved)
        else:
            self.saved = copy.deepcopy(saved)
