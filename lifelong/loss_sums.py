"""The training losses summed since the last report: Python floats on CPU, device tensors on accelerators.

A plain object, not module state: adding to it costs a dict update, where an attribute of the
LightningModule would go through ``nn.Module.__setattr__`` on every step.
"""

from __future__ import annotations

from typing import Any


class LossSums:
    """Name -> sum of the values added since the last :meth:`take`, and how many steps added them."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.steps = 0

    def add(self, values: dict[str, Any]) -> None:
        """One step's values (each a float, or a tensor that is read only when reported)."""
        sums = self.sums
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        self.steps += 1

    def take(self) -> tuple[dict[str, Any], int]:
        """The sums and their step count; both start again from zero."""
        taken = self.sums, self.steps
        self.sums, self.steps = {}, 0
        return taken

    def state(self) -> dict[str, Any]:
        """What a checkpoint inside an experience saves (see :meth:`load`)."""
        return {"pending": dict(self.sums), "pending_steps": self.steps}

    def load(self, state: dict[str, Any]) -> None:
        self.sums, self.steps = dict(state["pending"]), int(state["pending_steps"])
