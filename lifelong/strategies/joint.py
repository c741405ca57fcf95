"""Joint training on everything seen so far: the cumulative upper bound."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from lifelong.data.types import Experience, Stream, TensorExperienceDataset
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Strategy, register_strategy


@register_strategy("joint")
class Joint(Strategy):
    """Cumulative upper bound: experience i trains on the union of experiences 0..i.

    This is the "cumulative" reference (Avalanche's ``Cumulative``); with one experience it is
    the classic joint upper bound. The past datasets are kept by reference, not copied; a
    checkpoint holds only their experience indices (extra state), and ``on_resume`` takes the
    datasets back from the stream.
    """

    def __init__(self) -> None:
        super().__init__()
        self._past: list[TensorExperienceDataset] = []
        self._past_indices: list[int] = []

    def train_dataset(self, experience: Experience) -> Dataset:
        """All data of the experiences seen so far, this one included."""
        if len(self._past) != len(self._past_indices):
            raise RuntimeError("joint was restored from a checkpoint without on_resume(model, stream)")
        data = [*self._past, experience.dataset]
        if len(data) == 1:
            return experience.dataset
        return TensorExperienceDataset(
            torch.cat([d.x for d in data]), torch.cat([d.y for d in data]), torch.cat([d.t for d in data])
        )

    def after_experience(self, model, experience: Experience) -> None:  # noqa: ANN001
        """Remember this experience's data for the next ones."""
        self._past.append(experience.dataset)
        self._past_indices.append(experience.index)

    def get_extra_state(self) -> dict[str, Any]:
        """The indices of the past experiences (their data stays in the stream)."""
        return {"past": list(self._past_indices)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._past_indices = [int(i) for i in state["past"]]
        self._past = []

    def on_resume(self, model: ContinualClassifier, stream: Stream) -> None:
        """Take the past experiences' datasets back from the stream."""
        self._past = [stream.train[i].dataset for i in self._past_indices]
