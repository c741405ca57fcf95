"""Driving the infinite learning-rate schedule over a run (``optim.schedule.name: infinite``).

The main branch follows :class:`~lifelong.schedules.InfiniteSchedule` over a step counter that never
restarts (warmup and cooldown once, then constant). Within each experience, the last ``anneal_fraction`` of
its steps anneal a *fork*: the module's whole state is copied when the anneal starts, the model is evaluated
at the end of the annealed branch, and training continues from the copy (:meth:`InfiniteLR.restore`,
called by the loop after the evaluation, before the checkpoint). The step counter is a buffer, so it is
checkpointed with the module.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lifelong.schedules import InfiniteSchedule


class InfiniteLR(nn.Module):
    """The learning rate of each step and the fork of the annealed branch (see the module docstring)."""

    main_step: torch.Tensor

    def __init__(self, schedule: InfiniteSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.register_buffer("main_step", torch.zeros((), dtype=torch.long))
        self.task_step, self.task_steps = 0, 0
        self.fork: dict[str, Any] | None = None

    def begin_experience(self, steps: int) -> None:
        """An experience of ``steps`` optimiser steps starts."""
        self.task_step, self.task_steps = 0, steps

    def next_lr(self, module: nn.Module) -> float:
        """The learning rate of the coming step; copies ``module``'s state when the annealed branch starts."""
        anneal = round(self.schedule.anneal_fraction * self.task_steps)
        start = self.task_steps - anneal
        if self.task_step < start:
            lr = self.schedule.lr(int(self.main_step))
            self.main_step += 1
        else:
            if self.fork is None and anneal > 0:
                self.fork = copy.deepcopy(module.state_dict())
            lr = self.schedule.anneal_lr(self.task_step - start + 1, anneal)
        self.task_step += 1
        return lr

    def restore(self, module: nn.Module) -> bool:
        """Return ``module`` to its state before the annealed branch; ``False`` when there was none."""
        if self.fork is None:
            return False
        module.load_state_dict(self.fork)
        self.fork = None
        return True
