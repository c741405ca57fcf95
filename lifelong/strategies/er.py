"""Experience Replay with a reservoir memory."""

from __future__ import annotations

import torch
from torch import nn

from lifelong.buffers import ReservoirBuffer
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, Strategy, register_strategy
from lifelong.strategies.common import append_replay


@register_strategy("er")
class ExperienceReplay(Strategy):
    """Experience Replay (ER) with reservoir sampling; works online (single pass) and offline.

    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 1902.10486 (2019).
    Every step draws ``replay_batch_size`` samples uniformly from the memory, concatenates them
    with the incoming batch and minimises cross-entropy on the joint batch; after the optimizer
    step the incoming samples (as they came, before any augmentation) are offered to the reservoir.

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: replayed samples per step; ``None`` uses the incoming batch's size.
        seed: seed of the memory's random generator.

    """

    def __init__(self, memory_size: int = 500, replay_batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"strategy.params.memory_size={memory_size} is not allowed; use >= 1")
        if replay_batch_size is not None and replay_batch_size < 1:
            raise ValueError(f"strategy.params.replay_batch_size={replay_batch_size} is not allowed; use >= 1")
        self.memory = ReservoirBuffer(memory_size, seed=seed)
        self.replay_batch_size = replay_batch_size

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
