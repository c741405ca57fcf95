"""Experience Replay with a reservoir memory (and, optionally, model replacement at scheduled experiences)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lifelong.buffers import ReservoirBuffer
from lifelong.data.types import Experience
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, Strategy, register_strategy
from lifelong.strategies.common import append_replay
from lifelong.strategies.replacement import load_replacement, parse_replacements


@register_strategy("er")
class ExperienceReplay(Strategy):
    """Experience Replay (ER) with reservoir sampling; works online (single pass) and offline.

    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 1902.10486 (2019).
    Every step draws ``replay_batch_size`` samples uniformly from the memory, concatenates them
    with the incoming batch and minimises cross-entropy on the joint batch; after the optimizer
    step the incoming samples (as they came, before any augmentation) are offered to the reservoir.

    Model replacement (``replace_at``, the compatibility setting of the HOC/IAM-CL2R configs): at the
    start of a scheduled experience the model's weights are swapped for a checkpoint's (e.g. a stronger,
    independently trained model; ``benchmarks/compat.py`` shows how to make one), and training goes on
    from there. A fixed d-Simplex classifier stays (see :mod:`lifelong.strategies.replacement`).

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: replayed samples per step; ``None`` uses the incoming batch's size.
        seed: seed of the memory's random generator.
        replace_at: ``{experience index: checkpoint}``: swap these weights into the model at the start of
            that experience (``None``: never).

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        seed: int = 0,
        replace_at: Mapping[Any, Any] | None = None,
    ) -> None:
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"strategy.params.memory_size={memory_size} is not allowed; use >= 1")
        if replay_batch_size is not None and replay_batch_size < 1:
            raise ValueError(f"strategy.params.replay_batch_size={replay_batch_size} is not allowed; use >= 1")
        self.memory = ReservoirBuffer(memory_size, seed=seed)
        self.replay_batch_size = replay_batch_size
        self.replacements = parse_replacements(replace_at)
        self.replaced_now = False

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Swap in a replacement model if one is scheduled for this experience."""
        super().before_experience(model, experience)
        self.replaced_now = experience.index in self.replacements
        if self.replaced_now:
            load_replacement(model, self.replacements[experience.index])

    def replay_batch(self, batch: Batch) -> Batch:
        """The incoming batch with a replay batch appended (unchanged while the memory is empty)."""
        return append_replay(self.memory, batch, self.replay_batch_size)[0]

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """Cross-entropy on the incoming batch and the replayed samples together."""
        x, y, t = self.replay_batch(batch)
        logits = model(x, t)
        loss = nn.functional.cross_entropy(logits, y)
        return StepOutput(loss=loss, parts={"ce": loss.detach()}, logits=logits[: len(batch[1])])

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        """Offer the incoming (unaugmented) samples to the reservoir."""
        x, y, t = batch
        self.memory.add(x=x, y=y, t=t)
