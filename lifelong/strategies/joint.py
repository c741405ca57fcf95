"""Joint training on everything seen so far: the cumulative upper bound."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from lifelong.data.types import Experience, TensorExperienceDataset
from lifelong.strategies.base import Strategy, register_strategy


@register_strategy("joint")
class Joint(Strategy):
    """Cumulative upper bound: experience i trains on the union of experiences 0..i.

    This is the "cumulative" reference (Avalanche's ``Cumulative``); with one experience it is
    the classic joint upper bound. The past datasets are kept by reference, not copied.
    """

    def __init__(self) -> None:
        super().__init__()
        self._past: list[TensorExperienceDataset] = []

    def train_dataset(self, experience: Experience) -> Dataset:
        """All data of the experiences seen so far, this one included."""
        data = [*self._past, experience.dataset]
        if len(data) == 1:
            return experience.dataset
        return TensorExperienceDataset(
            torch.cat([d.x for d in data]), torch.cat([d.y for d in data]), torch.cat([d.t for d in data])
        )

    def after_experience(self, model, experience: Experience) -> None:  # noqa: ANN001
        """Remember this experience's data for the next ones."""
        self._past.append(experience.dataset)
