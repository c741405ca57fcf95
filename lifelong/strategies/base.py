"""The Strategy contract (DESIGN §3): plain PyTorch, driven by Lightning or by Avalanche.

A strategy turns a batch into a loss and keeps the state a method needs between experiences
(replay memory, teachers, prototypes). It never calls ``backward()`` or ``optimizer.step()`` and
knows no Trainer, so precision, accumulation, devices and DDP stay with the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from lifelong.data.types import Experience, Stream, StreamInfo
from lifelong.errors import check_required_head
from lifelong.models.classifier import ContinualClassifier
from lifelong.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B, ...), y (B,), task labels (B,)

STRATEGIES: Registry[type[Strategy]] = Registry("strategy.name")
register_strategy = STRATEGIES.register


@dataclass
class StepOutput:
    """What one training step produced.

    Attributes:
        loss: the scalar to minimise.
        parts: named loss terms, logged as ``train/<name>`` (detached by the driver).
        logits: the current batch's logits, for hooks that reuse them (e.g. DER-style storage).
        extras: other detached tensors of this step that ``after_training_step`` needs (e.g. HPCR's
            features of the incoming samples, stored with them in the memory).

    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Strategy(nn.Module):
    """Base class: cross-entropy on the incoming batch and no state; subclasses override hooks.

    Attributes:
        model_family: the kind of model (and batch) the strategy trains: ``"classifier"`` (a backbone and a
            head, batches ``(x, y, t)``, scored by accuracy) or ``"audio_video"`` (an audio-video masked
            autoencoder, dict batches, scored by retrieval). Checked against ``model.backbone`` when the
            config is validated.
        requires_head: the ``model.head`` the strategy needs (e.g. ``"dsimplex"`` for the stationary
            strategies, ``"linear"`` for ``bct``), or ``None`` when any head works. Checked by
            :func:`check_head` when the config is validated, before anything is built.

    """

    model_family: ClassVar[str] = "classifier"
    requires_head: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.stream_info: StreamInfo | None = None
        self.experience_index = -1

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        """Called once, before the first experience; a multi-head model learns each task's classes."""
        self.stream_info = stream_info
        if model.multi_head:
            for task_label, classes in enumerate(stream_info.classes_per_experience):
                model.set_task_classes(task_label, classes)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Called before training on ``experience`` (before the optimizer is built)."""
        self.experience_index = experience.index

    def train_dataset(self, experience: Experience) -> Dataset:
        """The data to train on during ``experience``."""
        return experience.dataset

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """The loss of one step; must be differentiable w.r.t. the model's parameters."""
        x, y, t = batch
        logits = model(x, t)
        loss = nn.functional.cross_entropy(logits, y)
        return StepOutput(loss=loss, parts={"ce": loss.detach()}, logits=logits)

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        """Called after the optimizer step, under ``no_grad`` (e.g. memory updates)."""

    def after_epoch(self, model: ContinualClassifier) -> None:
        """Called at the end of every training epoch (e.g. to validate and keep the best weights).

        Under ``checkpoint.every_n_steps`` an experience's epochs run as one pass, so this is called once.
        """

    def after_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Called after training on ``experience``, before it is evaluated."""

    def eval_logits(self, model: ContinualClassifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scores used for prediction (argmax); NCM- or proxy-based methods override this."""
        return model(x, t)

    def distribute(self, rank: int, world_size: int) -> None:
        """Called by the driver on every rank before each ``fit`` and evaluation (DDP: once the world is known).

        Replay memories are sharded: every submodule with a ``shard(rank, world_size)`` method (e.g.
        :class:`~lifelong.buffers.ReservoirBuffer`) keeps ``capacity / world_size`` slots on this rank,
        filled from this rank's share of the data. Override to shard other per-sample state; must be
        idempotent. Strategy buffers are rank-local: DDP never broadcasts them.
        """
        for module in self.modules():
            shard = getattr(module, "shard", None)
            if module is not self and callable(shard):
                shard(rank, world_size)

    def on_resume(self, model: ContinualClassifier, stream: Stream) -> None:
        """Called once when a run resumes, after ``setup`` and ``load_state_dict``, before the next experience.

        Rebuild here what ``state_dict`` cannot hold, such as data kept by reference (e.g. the past
        datasets of ``joint``, restored from the experience indices it keeps as extra state). Must not
        draw from the global random generators: the checkpoint has just restored them. Default: nothing.
        """


def check_head(strategy_name: str, head_name: str) -> None:
    """Raise ``ConfigError`` if the strategy registered as ``strategy_name`` cannot run on ``model.head=head_name``.

    Args:
        strategy_name: ``strategy.name`` of the config (an unknown name is a ``ConfigError`` with a did-you-mean).
        head_name: ``model.head`` of the config.

    Example:
        >>> check_head("cl2r", "dsimplex")
        >>> check_head("er", "cosine")
        >>> check_head("cl2r", "linear")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lifelong.errors.ConfigError: strategy.name='cl2r' needs model.head='dsimplex'; got 'linear' (set model.head=...)

    """
    check_required_head(strategy_name, STRATEGIES.get(strategy_name).requires_head, head_name)
