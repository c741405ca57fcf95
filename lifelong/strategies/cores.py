"""CoReS as published: a fresh network per step, trained on all data so far, best-validation checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lifelong.data.types import Experience, StreamInfo, TensorExperienceDataset
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import register_strategy
from lifelong.strategies.joint import Joint
from lifelong.strategies.replacement import load_replacement, parse_replacements
from lifelong.strategies.stationary import check_dsimplex_stream

REPLAY_PARAMS_MOVED = (
    "strategy 'cores' is now CoReS's own protocol (a fresh network per step on all data so far, no replay "
    "memory); the fine-tuning variant with a reservoir memory that took {name} is 'cores_replay'"
)


def split_validation(
    data: TensorExperienceDataset, fraction: float, seed: int
) -> tuple[TensorExperienceDataset, TensorExperienceDataset]:
    """``(train, validation)``: a seeded ``fraction`` of each class of ``data`` held out, the rest for training.

    A class with two or more samples gives at least one to validation; both parts keep the original order.
    """
    generator = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(data), dtype=torch.bool)
    for cls in data.y.unique():
        members = (data.y == cls).nonzero(as_tuple=True)[0]
        n_val = min(max(round(fraction * len(members)), 1), len(members) - 1) if fraction > 0 else 0
        held[members[torch.randperm(len(members), generator=generator)[:n_val]]] = True
    return _subset(data, ~held), _subset(data, held)


def _subset(data: TensorExperienceDataset, keep: torch.Tensor) -> TensorExperienceDataset:
    return TensorExperienceDataset(data.x[keep], data.y[keep], data.t[keep])


@torch.no_grad()
def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh weights: ``reset_parameters()`` of every submodule, drawn from a generator seeded with ``seed``.

    Buffers that are not parameters, like the fixed d-Simplex prototypes, are left alone; the global random
    state is not touched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


@register_strategy("cores")
class CoReS(Joint):
    """CoReS: at every step a freshly initialised network learns all classes seen so far on the fixed d-Simplex.

    Biondi, Pernici, Bruni, Del Bimbo, "CoReS: Compatible Representations via Stationarity", IEEE TPAMI
    2023 (arXiv 2111.07632), as its official code runs it: the loss is cross-entropy against the frozen
    d-Simplex prototypes (no old model, no pairwise term); before each experience the model's weights are
    re-initialised (nothing is carried from the previous step), it trains on the cumulative training data
    of experiences ``0..t`` (as ``joint``), and the weights of the epoch with the best accuracy on a held-out
    validation split of that data are kept. Compatibility comes only from the shared fixed classifier.
    Needs ``model.head=dsimplex``. The variant that fine-tunes with a replay memory is ``cores_replay``.

    Deviations: the validation split is ``val_fraction`` of each class of the training data (the official
    code validates on the test split); ``replace_at`` starts a step from a checkpoint's weights instead of
    a fresh initialisation (the official CoReS has no replacement). The best weights so far live in memory
    only: a run resumed inside an experience (``checkpoint.every_n_steps``) selects among the epochs after it.

    Args:
        val_fraction: share of each class's training samples held out for checkpoint selection (0: keep the
            last epoch's weights).
        replace_at: ``{experience index: checkpoint}``: start that step from these weights.
        seed: seeds the initialisations and the validation split.
        memory_size: not a CoReS parameter (an error naming ``cores_replay``, which took it).
        replay_batch_size: as ``memory_size``.

    """

    requires_head = "dsimplex"

    def __init__(
        self,
        val_fraction: float = 0.1,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
        memory_size: int | None = None,
        replay_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("memory_size", memory_size), ("replay_batch_size", replay_batch_size)):
            if value is not None:
                raise ValueError(REPLAY_PARAMS_MOVED.format(name=f"strategy.params.{name}"))
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not 0 <= val_fraction < 1:
            raise ValueError(f"strategy.params.val_fraction={val_fraction!r} is not allowed; use a number in [0, 1)")
        self.val_fraction = float(val_fraction)
        self.replacements = parse_replacements(replace_at)
        self.seed = seed
        self.validation: TensorExperienceDataset | None = None
        self.best_accuracy = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epoch_accuracies: list[float] = []  # of the current step (for logs and tests)

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        check_dsimplex_stream(model, stream_info, "cores")
        super().setup(model, stream_info)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Start from fresh weights (or the scheduled replacement's)."""
        super().before_experience(model, experience)
        if experience.index in self.replacements:
            load_replacement(model, self.replacements[experience.index])
        else:
            reinitialise(model, self.seed * 1_000_003 + experience.index)
        self.best_accuracy, self.best_state, self.epoch_accuracies = -1.0, None, []

    def train_dataset(self, experience: Experience) -> Dataset:
        """The training part of all experiences so far; their validation parts become ``self.validation``."""
        cumulative = super().train_dataset(experience)
        assert isinstance(cumulative, TensorExperienceDataset)
        if self.val_fraction == 0:
            self.validation = None
            return cumulative
        train, self.validation = split_validation(cumulative, self.val_fraction, self.seed * 1_000_003 + 7)
        return train

    @torch.no_grad()
    def after_epoch(self, model: ContinualClassifier) -> None:
        """Score the validation split; keep a copy of the weights when they beat the best so far."""
        if self.validation is None:
            return
        accuracy = validation_accuracy(model, self.validation)
        self.epoch_accuracies.append(accuracy)
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def after_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Load the best-validation weights of this step, then remember its data."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        self.best_state = None
        super().after_experience(model, experience)


@torch.no_grad()
def validation_accuracy(model: ContinualClassifier, data: TensorExperienceDataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode, the model's device; training mode restored)."""
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    correct = 0
    try:
        for start in range(0, len(data), batch_size):
            x = data.x[start : start + batch_size].to(parameter.device, parameter.dtype)
            t = data.t[start : start + batch_size].to(parameter.device)
            predicted = model(x, t).argmax(dim=1).cpu()
            correct += int((predicted == data.y[start : start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(len(data), 1)
