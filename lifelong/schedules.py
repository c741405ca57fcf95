"""Learning-rate schedules for continual pretraining.

The infinite schedule (Ibrahim et al. 2024; Singh et al., "Beyond Cosine Decay", CoLLAs 2025, arXiv 2503.02844)::

    lr(n) = lr_max * n / N_w                                              n <= N_w   (warmup)
    lr(n) = lr_c + (lr_max - lr_c) * (1 + cos(pi (n - N_w) / (N_cd - N_w))) / 2   N_w < n <= N_cd  (cooldown)
    lr(n) = lr_c                                                          n > N_cd   (constant, unbounded)
    anneal(s) = lr_c * (lr_min / lr_c) ** (s / N_ann)                     s = 0..N_ann (side branch)

Warmup and cooldown happen once (first task); every task then trains at ``lr_c`` and, for evaluation,
anneals a *fork* of the weights over its last ``anneal_fraction`` of steps; training continues from the
pre-anneal state (:mod:`lifelong.annealing` drives it over a run). Shapes ``linear`` and ``inverse_sqrt``
(alpha 10) of the cooldown follow the co-author's MAE-1 code.

>>> s = InfiniteSchedule(lr_max=1.0, warmup_steps=10, cooldown_steps=30, const_ratio=0.5, min_ratio=0.05)
>>> [round(s.lr(n), 3) for n in (0, 5, 10, 20, 30, 1000)]
[0.0, 0.5, 1.0, 0.75, 0.5, 0.5]
>>> round(s.anneal_lr(0, 10), 3), round(s.anneal_lr(10, 10), 3)
(0.5, 0.05)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class InfiniteSchedule:
    """Step-based infinite schedule (see the module docstring).

    Attributes:
        lr_max: peak learning rate.
        warmup_steps: ``N_w``.
        cooldown_steps: ``N_cd`` (the step where the constant phase starts, > ``warmup_steps``).
        const_ratio: ``lr_c / lr_max`` (0.75 in the paper's final runs).
        min_ratio: ``lr_min / lr_max`` reached at the end of each anneal (0.05).
        shape: cooldown shape, ``cosine``, ``linear`` or ``inverse_sqrt``.
        anneal_fraction: share of each task's steps spent in the annealed side branch (0.2).

    """

    lr_max: float
    warmup_steps: int
    cooldown_steps: int
    const_ratio: float = 0.75
    min_ratio: float = 0.05
    shape: str = "cosine"
    anneal_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_steps < self.cooldown_steps:
            raise ValueError(f"schedule needs 0 <= warmup_steps < cooldown_steps, got {self}")
        if not 0 < self.min_ratio <= self.const_ratio <= 1:
            raise ValueError(f"schedule needs 0 < min_ratio <= const_ratio <= 1, got {self}")
        if self.shape not in ("cosine", "linear", "inverse_sqrt"):
            raise ValueError(f"schedule.shape={self.shape!r}; choose cosine, linear or inverse_sqrt")
        if not 0 <= self.anneal_fraction < 1:
            raise ValueError(f"schedule.anneal_fraction={self.anneal_fraction} must be in [0, 1)")

    @classmethod
    def for_first_task(
        cls, lr_max: float, task_steps: int, warmup: float = 0.05, cooldown: float = 0.5, **kw
    ) -> InfiniteSchedule:  # noqa: E501
        """Phases as fractions of the first task's steps (warmup 5%, constant from 50%)."""
        n_w = max(1, round(warmup * task_steps))
        return cls(lr_max, n_w, max(n_w + 1, round(cooldown * task_steps)), **kw)

    @property
    def lr_const(self) -> float:
        """The constant-phase learning rate."""
        return self.lr_max * self.const_ratio

    def lr(self, step: int) -> float:
        """Main-branch learning rate at global step ``step`` (warmup, cooldown, then constant forever)."""
        if step <= self.warmup_steps:
            return self.lr_max * step / max(1, self.warmup_steps)
        if step > self.cooldown_steps:
            return self.lr_const
        p = (step - self.warmup_steps) / (self.cooldown_steps - self.warmup_steps)
        if self.shape == "cosine":
            return self.lr_const + 0.5 * (self.lr_max - self.lr_const) * (1 + math.cos(math.pi * p))
        if self.shape == "linear":
            return self.lr_max - (self.lr_max - self.lr_const) * p

        def h(x: float) -> float:
            return 1 / math.sqrt(1 + 10 * x) - 1

        return self.lr_max + (self.lr_const - self.lr_max) * h(p) / h(1)

    def anneal_lr(self, step_in_anneal: int, anneal_steps: int) -> float:
        """Side-branch learning rate, exponential from ``lr_c`` to ``lr_max * min_ratio`` over ``anneal_steps``."""
        frac = min(1.0, step_in_anneal / max(1, anneal_steps))
        return self.lr_const * (self.min_ratio / self.const_ratio) ** frac
