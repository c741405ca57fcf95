"""What one call of ``ContinualModule.training_step`` receives: several consecutive mini-batches, each one update.

Either a list of mini-batches (:class:`lifelong.loop.BatchChunks`) or one gathered chunk of an in-memory
experience (:class:`GatheredBatches`), which Lightning moves to the device as three tensors instead of three
per mini-batch and which is split into the mini-batches' views only on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch


class GatheredBatches(NamedTuple):
    """Consecutive mini-batches of ``size`` samples gathered into one ``(x, y, t)`` (the last one may be shorter)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    size: int


def mini_batches(chunk: GatheredBatches | Sequence[Any]) -> Iterator[Any]:
    """The mini-batches of one ``training_step`` call, in order."""
    if isinstance(chunk, GatheredBatches):
        x, y, t, size = chunk
        for i in range(0, len(y), size):
            yield x[i : i + size], y[i : i + size], t[i : i + size]
    else:
        yield from chunk
