"""The stream types every layer above ``data`` sees: no Avalanche type leaks out of ``lifelong.data``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset


class TensorExperienceDataset(Dataset):
    """In-memory ``(x, y, t)`` triples; batches are gathered with one tensor index (``__getitems__``).

    Args:
        x: inputs, ``(N, C, H, W)`` float.
        y: class labels, ``(N,)`` long, global class ids.
        t: task labels, ``(N,)`` long (all zero outside task-incremental streams).

    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> None:
        if t is None:
            t = torch.zeros_like(y)
        if not len(x) == len(y) == len(t):
            raise ValueError(f"x, y, t lengths differ: {len(x)}, {len(y)}, {len(t)}")
        self.x, self.y, self.t = x, y.long(), t.long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i], self.t[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole batch in one gather; pair with ``collate_fn=identity_collate``."""
        index = torch.as_tensor(idx)
        return self.x[index], self.y[index], self.t[index]

    @property
    def targets(self) -> torch.Tensor:
        return self.y


def identity_collate(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Collate for datasets whose ``__getitems__`` already returns a stacked batch."""
    return batch


@dataclass
class Experience:
    """One step of a stream: its data, the classes it holds and its task label.

    ``dataset`` yields ``(x, y, t)`` triples for labelled streams (a :class:`TensorExperienceDataset`) and
    dicts of tensors for audio-video streams (an ``AVPairs`` or a lazy dataset of the same items, see
    :mod:`lifelong.data.av_streams`); it is typed for the labelled case, which most code reads directly.
    """

    index: int
    dataset: TensorExperienceDataset
    classes: list[int]
    task_label: int = 0


@dataclass
class StreamInfo:
    """What a strategy may know about a stream before training (no data)."""

    scenario: str
    num_classes: int
    n_experiences: int
    input_shape: tuple[int, ...]
    classes_per_experience: list[list[int]] = field(default_factory=list)


@dataclass
class Stream:
    """Train and test experiences of one benchmark, index-aligned."""

    name: str
    info: StreamInfo
    train: list[Experience]
    test: list[Experience]

    def __post_init__(self) -> None:
        if len(self.train) != len(self.test):
            raise ValueError(f"{self.name}: {len(self.train)} train vs {len(self.test)} test experiences")

    def __len__(self) -> int:
        return len(self.train)
