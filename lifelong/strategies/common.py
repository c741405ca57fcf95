"""Small helpers that several strategies share; registers nothing.

- seen classes: :class:`SeenClasses` (classes trained on, masks the others out of predictions; ``er_ace``,
  ``scr``, ``pcr``, ``hpcr``) and :func:`classes_before` (the classes of earlier experiences; ``bct``,
  ``cl2r``);
- replay mixing: :func:`append_replay` (the incoming batch with a replay batch appended; ``er`` and its
  subclasses, ``scr``, ``pcr``, ``hpcr``);
- dark-experience targets: :func:`stored_target_mse` (MSE to outputs stored with the memory samples, fp32;
  ``der``, ``derpp``, ``av_er``, ``av_derpp``);
- pair masks of contrastive losses: :func:`same_label` and :func:`positive_mask` (``scr``, ``hpcr``, ``hoc``);
- lazily sized state: :func:`resize_buffers` (buffers whose shape is known only once data or a checkpoint
  arrives);
- parameter checks with the messages of ``strategy.params``: :func:`positive_number`,
  :func:`non_negative_number`, :func:`positive_integer`.

The frozen teacher snapshot is in :mod:`lifelong.strategies.teacher`, model replacement in
:mod:`lifelong.strategies.replacement`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from lifelong.buffers import ReservoirBuffer
from lifelong.data.types import StreamInfo
from lifelong.models.heads import mask_value
from lifelong.strategies.base import Batch

# --------------------------------------------------------------------------- seen classes


def classes_before(stream_info: StreamInfo | None, index: int) -> set[int]:
    """The classes of the experiences before ``index`` (empty without stream info, i.e. before ``setup``)."""
    if stream_info is None:
        return set()
    return {int(c) for classes in stream_info.classes_per_experience[:index] for c in classes}


class SeenClasses(nn.Module):
    """Which classes the strategy has trained on; masks the others out of predictions.

    The mask is a buffer, so it moves with the strategy and lands in checkpoints; it is sized on the
    first update (or when a checkpoint is loaded) and grows if wider logits come along.
    """

    seen: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))

    def update(self, labels: torch.Tensor, num_classes: int) -> None:
        """Mark ``labels`` as seen (no host-device sync)."""
        if self.seen.numel() < num_classes:
            grown = torch.zeros(num_classes, dtype=torch.bool, device=labels.device)
            grown[: self.seen.numel()] = self.seen.to(labels.device)
            self.seen = grown
        self.seen[labels.to(self.seen.device)] = True

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with the unseen classes set to a very negative value (unchanged before any update)."""
        if self.seen.numel() == 0:
            return logits
        seen = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        width = min(self.seen.numel(), logits.shape[1])
        seen[:width] = self.seen[:width].to(logits.device)
        masked = logits.masked_fill(~seen, mask_value(logits.dtype))
        return torch.where(seen.any(), masked, logits)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        resize_buffers(self, state_dict, prefix, ("seen",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# --------------------------------------------------------------------------- replay mixing


def append_replay(memory: ReservoirBuffer, batch: Batch, size: int | None) -> tuple[Batch, dict[str, torch.Tensor]]:
    """The incoming batch with a replay batch from ``memory`` appended, and the replayed fields.

    Args:
        memory: the replay memory (samples stored with at least ``x``, ``y``, ``t``).
        batch: the incoming ``(x, y, t)``.
        size: replayed samples to draw; ``None`` draws as many as the incoming batch holds.

    Returns:
        ``((x, y, t) incoming then replayed, every field of the replayed samples)``; while the memory is
        empty, the incoming batch unchanged and an empty dict.

    """
    x, y, t = batch
    replayed = memory.sample(size or len(y), device=x.device)
    if not replayed:
        return batch, replayed
    return (torch.cat([x, replayed["x"]]), torch.cat([y, replayed["y"]]), torch.cat([t, replayed["t"]])), replayed


def stored_target_mse(current: torch.Tensor, stored: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """DER's anchor: the mean squared error between current outputs and the targets stored with the samples, in fp32.

    ``mean((current - stored)^2)`` over the entries that are targets: those where ``stored`` is finite (NaN marks
    a column that did not exist when the sample was stored, see :class:`~lifelong.strategies.der.DER`) and
    ``valid`` is true. With every entry a target this is ``F.mse_loss(current, stored)``.

    Args:
        current: ``(B, D)`` outputs of this step for the replayed samples (any precision).
        stored: ``(B, D')`` stored targets, ``D' <= D``: the first ``D'`` columns of ``current`` are compared.
        valid: optional ``(B, D')`` bool, the entries that are targets.

    Example:
        >>> stored_target_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))  # (1 + 4) / 2
        tensor(2.5000)
        >>> stored_target_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, float("nan")]]))
        tensor(1.)

    """
    stored = stored.float()
    current = current[:, : stored.shape[1]].float()
    targets = torch.isfinite(stored)
    if valid is not None:
        targets = targets & valid.to(targets.device)
    squared = (current - torch.where(targets, stored, current.detach())).square()  # masked entries: 0
    return squared.sum() / targets.sum().clamp(min=1)


# --------------------------------------------------------------------------- pair masks


def same_label(labels: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` bool: ``[i, j]`` is true when anchors ``i`` and ``j`` have the same label (the diagonal included)."""
    return labels[:, None] == labels[None, :]


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` bool: the positives of each anchor, the other anchors with its label (``i != j``).

    Example:
        >>> positive_mask(torch.tensor([0, 1, 0])).int()
        tensor([[0, 0, 1],
                [0, 0, 0],
                [1, 0, 0]], dtype=torch.int32)

    """
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same_label(labels) & ~eye


# --------------------------------------------------------------------------- lazily sized state


def resize_buffers(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, names: Iterable[str]) -> None:
    """Before loading, give each buffer in ``names`` the shape the checkpoint holds (for lazily sized state)."""
    for name in names:
        stored = state_dict.get(prefix + name)
        if stored is not None and getattr(module, name).shape != stored.shape:
            setattr(module, name, torch.empty_like(stored, device=getattr(module, name).device))


# --------------------------------------------------------------------------- parameter checks


def positive_number(value: Any, key: str) -> float:
    """``value`` as a float if it is a finite number > 0; ``ValueError`` naming ``strategy.params.<key>`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"strategy.params.{key}={value!r} is not allowed; use a number > 0")
    return float(value)


def non_negative_number(value: Any, key: str) -> float:
    """``value`` as a float if it is a number >= 0 (NaN is not); ``ValueError`` naming ``strategy.params.<key>``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"strategy.params.{key}={value!r} is not allowed; use a number >= 0")
    return float(value)


def positive_integer(value: Any, key: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool); ``ValueError`` naming ``strategy.params.<key>`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"strategy.params.{key}={value!r} is not allowed; use >= 1")
    return value
