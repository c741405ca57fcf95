"""Checkpoints inside an experience (``checkpoint.every_n_steps``), so a kill loses at most N steps of it.

With ``every_n_steps > 0`` an experience's epochs are read as one pass (:class:`EpochsLoader`: the same
batches in the same order, the loader's own generator drawn as Lightning's epochs would) and
:class:`StepCheckpoint`, a Lightning callback, commits a checkpoint generation (:mod:`lifelong.checkpoint`)
every N steps. Such a generation holds the state the experience started from (module and random states:
the experience's ``before_experience`` is done again on resume) and, under ``step``, where it is: the
steps done, the module, the optimizer, the random states and the training losses not yet reported.

A resumed run restores the experience's start, prepares the experience as before, then loads the ``step``
state when training starts and skips the batches already trained on (they are read and dropped, so the
loader's generator is where it was). The result is the uninterrupted run's. The optimizer and model are
saved once more per checkpoint, so a generation is about twice the size of one after an experience.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from lifelong.checkpoint import rng_state, set_rng_state


class EpochsLoader:
    """``epochs`` passes over ``loader`` as one, without its first ``skip`` batches (they are read and dropped)."""

    def __init__(self, loader: DataLoader, epochs: int, skip: int = 0) -> None:
        self.loader, self.epochs, self.skip = loader, epochs, skip

    def __len__(self) -> int:
        return len(self.loader) * self.epochs - self.skip

    def __iter__(self) -> Iterator[Any]:
        skip = self.skip
        for epoch in range(self.epochs):
            set_epoch = getattr(self.loader.sampler, "set_epoch", None)
            if callable(set_epoch):  # a DistributedSampler: a new permutation per epoch, as Lightning would set
                set_epoch(epoch)
            for batch in self.loader:
                if skip:
                    skip -= 1
                    continue
                yield batch


def start_snapshot(module: L.LightningModule) -> dict[str, Any]:
    """The module and random states an experience starts from (before ``before_experience``)."""
    return {"module": copy.deepcopy(module.state_dict()), "rng": rng_state()}


class StepCheckpoint(L.Callback):
    """Commit a checkpoint every ``every`` steps of experience ``experience``; load ``resumed`` when training starts.

    Args:
        every: steps between checkpoints.
        checkpoints: the run's ``RunCheckpointer`` (its ``save(completed, matrix, step=...)``).
        matrix: the score matrices so far.
        experience: the index of the experience being trained.
        start: :func:`start_snapshot` of this experience.
        resumed: the ``step`` state of the generation the run resumed from (``None``: a fresh experience).

    """

    def __init__(
        self,
        every: int,
        checkpoints: Any,
        matrix: Any,
        experience: int,
        start: dict[str, Any],
        resumed: dict[str, Any] | None = None,
    ) -> None:
        self.every, self.checkpoints, self.matrix = every, checkpoints, matrix
        self.experience, self.start, self.resumed = experience, start, resumed
        self.skip = int(resumed["steps"]) if resumed else 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.resumed is None:
            return
        pl_module.load_state_dict(self.resumed["module"])
        trainer.optimizers[0].load_state_dict(self.resumed["optimizer"])
        module: Any = pl_module  # a ContinualModule
        module.loss_sums.load(self.resumed)
        set_rng_state(self.resumed["rng"])

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        done = self.skip + batch_idx
        if batch_idx == 0 or done % self.every:
            return
        module: Any = pl_module  # a ContinualModule
        step = {
            "experience": self.experience,
            "steps": done,
            "module": module.state_dict(),
            "optimizer": trainer.optimizers[0].state_dict(),
            **module.loss_sums.state(),
            "rng": rng_state(),
        }
        self.checkpoints.save(self.experience - 1, self.matrix, step=step, start=self.start)
