"""Backward-Compatible Training (BCT): an influence loss through the frozen old classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.data.types import Experience, StreamInfo, TensorExperienceDataset
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import LinearHead, mask_value
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import classes_before, resize_buffers
from lifelong.strategies.er import ExperienceReplay


def influence_loss(
    features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """BCT's influence loss: cross-entropy of the new features through the frozen old classifier.

    ``L = CE(W_old h_new + b_old, y)`` where the softmax runs over the old classifier's valid rows only
    (classes the old model had, plus the new classes' synthesised rows); other rows are masked out.

    Args:
        features: ``(B, D)`` new-model features.
        labels: ``(B,)`` classes, each a valid row.
        weight: ``(K, D)`` old classifier rows.
        bias: ``(K,)`` old classifier biases.
        valid: ``(K,)`` bool, rows that exist.

    Example:
        >>> h = torch.tensor([[1.0, 0.0]])
        >>> W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
        >>> valid = torch.tensor([True, True, False])
        >>> round(float(influence_loss(h, torch.tensor([0]), W, torch.zeros(3), valid)), 4)  # -log(e^2/(e^2+e^0))
        0.1269

    """
    logits = F.linear(features.float(), weight.float(), bias.float())  # (B, K)
    logits = logits.masked_fill(~valid.to(logits.device), mask_value(logits.dtype))
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def class_means(
    model: ContinualClassifier, data: TensorExperienceDataset, classes: list[int], device: torch.device
) -> torch.Tensor:
    """``(len(classes), D)`` mean backbone feature of each class of ``classes`` in ``data``.

    Computed in eval mode, fp32, in batches of 512 on ``device``; ``classes`` must be sorted.
    """
    wanted = torch.as_tensor(classes, dtype=torch.long)
    members = torch.isin(data.y, wanted).nonzero(as_tuple=True)[0]
    sums = torch.zeros(len(classes), model.feature_dim, device=device)
    counts = torch.zeros(len(classes), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device.type, enabled=False):
            for start in range(0, len(members), 512):
                index = members[start : start + 512]
                rows = torch.searchsorted(wanted, data.y[index]).to(device)  # position of each label in classes
                sums.index_add_(0, rows, model.features(data.x[index].to(device)).float())
                counts.index_add_(0, rows, torch.ones(len(index), device=device))
    finally:
        model.train(was_training)
    return sums / counts.clamp(min=1)[:, None]


@register_strategy("bct")
class BCT(ExperienceReplay):
    """BCT with a reservoir replay memory: ``CE(new head) + lambda * CE(frozen old classifier on new features)``.

    Shen, Xiong, Xia, Soatto, "Towards Backward-Compatible Representation Learning", CVPR 2020
    (arXiv 2003.11942). At experience ``t > 0`` the old classifier is the model's linear head as the
    experience starts (the previous experience's final head), frozen. Classes it has no row for (the
    experience's new classes) get a synthesised row: the mean backbone feature of the old model over
    the experience's training samples of that class, bias 0 (openBCT's ``--generate-cls``). The
    influence term then pulls the new features towards where the old model's classifier expects
    them, so new queries remain comparable with the old gallery. Each step also replays a memory batch
    as ``er`` does; both terms use the joint batch. Retrieval uses the backbone features. Needs
    ``model.head=linear``.

    Deviations from the paper and official code: lambda = 1 by default as in openBCT (ml-fct uses 10 and
    label smoothing); the synthesised rows are computed at the first step of the experience (before any
    update, on the training device, fp32) and, by default, rescaled to the mean norm of the trained rows:
    openBCT keeps raw means, whose logits grow as ``||h||^2`` on unnormalised features (on an MLP without
    normalisation layers that diverged at lr 0.05); old and new models share the architecture, so no
    slicing or padding of feature dimensions is needed.

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size).
        influence_weight: ``lambda``, weight of the influence loss.
        rescale_prototypes: scale each synthesised row to the mean norm of the old classifier's trained
            rows (default); ``False`` keeps the raw class means as openBCT does.
        seed: seed of the memory.
        replace_at: ``{experience index: checkpoint}`` model replacements (``er``); the old classifier is then
            the swapped-in model's head, the model the experience starts from.

    """

    requires_head = "linear"
    old_weight: torch.Tensor
    old_bias: torch.Tensor
    old_valid: torch.Tensor

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        influence_weight: float = 1.0,
        rescale_prototypes: bool = True,
        seed: int = 0,
        replace_at: Mapping[Any, Any] | None = None,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)
        if isinstance(influence_weight, bool) or not isinstance(influence_weight, int | float) or influence_weight < 0:
            raise ValueError(f"strategy.params.influence_weight={influence_weight!r} is not allowed; use a number >= 0")
        self.influence_weight = float(influence_weight)
        self.rescale_prototypes = bool(rescale_prototypes)
        self.register_buffer("old_weight", torch.zeros(0, 0))
        self.register_buffer("old_bias", torch.zeros(0))
        self.register_buffer("old_valid", torch.zeros(0, dtype=torch.bool))
        self._pending: tuple[TensorExperienceDataset, list[int]] | None = None

    @staticmethod
    def head(model: ContinualClassifier) -> LinearHead:
        """The model's learnable linear head (``ValueError`` naming ``model.head=linear`` otherwise)."""
        if not isinstance(model.head, LinearHead):
            raise ValueError(
                f"strategy 'bct' needs a single learnable linear classifier, but the model's head is "
                f"{type(model.head).__name__}; set model.head=linear and model.multi_head=false"
            )
        return model.head

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        self.head(model)
        super().setup(model, stream_info)

    @property
    def has_old_classifier(self) -> bool:
        """Whether an old classifier is held (from experience 1 on)."""
        return self.old_valid.numel() > 0 and bool(self.old_valid.any())

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Freeze the current head as the old classifier; new classes get rows at the first step."""
        super().before_experience(model, experience)
        head = self.head(model)
        if experience.index == 0:
            self.old_weight, self.old_bias = torch.zeros(0, 0), torch.zeros(0)
            self.old_valid = torch.zeros(0, dtype=torch.bool)
            self._pending = None
            return
        seen = classes_before(self.stream_info, experience.index)
        self.old_weight = head.weight.detach().clone()
        self.old_bias = head.bias.detach().clone() if head.bias is not None else torch.zeros(head.num_classes)
        valid = torch.zeros(head.num_classes, dtype=torch.bool)
        valid[sorted(seen)] = True
        self.old_valid = valid.to(head.weight.device)
        new = sorted({int(c) for c in experience.classes} - seen)
        self._pending = (experience.dataset, new) if new else None

    def _synthesise(self, model: ContinualClassifier, device: torch.device) -> None:
        """Old-model class means as the old classifier's rows of the experience's new classes."""
        assert self._pending is not None
        data, new = self._pending
        self._pending = None
        means = class_means(model, data, new, device).to(self.old_weight)
        if self.rescale_prototypes and bool(self.old_valid.any()):
            scale = self.old_weight[self.old_valid].norm(dim=1).mean()
            means = means * (scale / means.norm(dim=1, keepdim=True).clamp(min=1e-12))
        rows = torch.as_tensor(new, device=self.old_weight.device)
        self.old_weight[rows] = means
        self.old_bias[rows] = 0
        self.old_valid[rows] = True

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """CE through the learnable head + ``influence_weight`` x CE through the frozen old classifier."""
        n_incoming = len(batch[1])
        x, y, t = self.replay_batch(batch)
        if self._pending is not None:
            self._synthesise(model, x.device)
        features = model.features(x)
        logits = model.logits_from_features(features, t)
        ce = F.cross_entropy(logits, y)
        parts = {"ce": ce.detach()}
        loss = ce
        if self.has_old_classifier and self.influence_weight > 0:
            influence = influence_loss(features, y, self.old_weight, self.old_bias, self.old_valid)
            loss = ce + self.influence_weight * influence
            parts["influence"] = influence.detach()
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_incoming])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        resize_buffers(self, state_dict, prefix, ("old_weight", "old_bias", "old_valid"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
