"""SCR: supervised contrastive replay with a nearest-class-mean classifier."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.types import Experience, StreamInfo
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import mask_value
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import non_negative_number, positive_integer, positive_number
from lifelong.strategies.contrastive import AugmentedReplay, supervised_contrastive_loss

Projection = Literal["mlp", "linear", "none"]
PROJECTIONS: tuple[str, ...] = ("mlp", "linear", "none")


def build_projection(kind: Projection, in_dim: int, out_dim: int) -> nn.Module:
    """SCR's projection head on top of the backbone features: ``Linear-ReLU-Linear``, ``Linear`` or identity."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Identity()


def nearest_mean_scores(features: torch.Tensor, means: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``-||f / |f| - mu_c||^2`` for every class ``c`` (``means`` already normalised); invalid classes get a mask value.

    Args:
        features: ``(B, D)`` features of the samples to classify.
        means: ``(C, D)`` normalised class means.
        valid: ``(C,)`` bool, classes that have a mean.

    """
    f = F.normalize(features.float(), dim=1)
    distances = torch.cdist(f, means.float()).square()  # (B, C)
    return (-distances).masked_fill(~valid, mask_value(distances.dtype))


@register_strategy("scr")
class SCR(AugmentedReplay):
    """Supervised Contrastive Replay (SCR) with a nearest-class-mean (NCM) classifier.

    Mai, Li, Kim, Sanner, "Supervised Contrastive Replay: Revisiting the Nearest Class Mean Classifier in
    Online Class-Incremental Continual Learning", CVPR-W 2021 (arXiv 2103.13885); official code
    github.com/RaptorMai/online-continual-learning (``agents/scr.py``).

    Each step appends a replay batch from a reservoir memory to the incoming batch, adds an augmented view
    of the joint batch and minimises the supervised contrastive loss on the normalised output of a
    projection head (``Linear-ReLU-Linear`` to 128-d, owned by the strategy and trained with the model).
    Prediction: the nearest class mean, over the normalised backbone features of the samples in memory
    (recomputed whenever the model or memory changed), of the classes that have samples in memory.

    Deviations from the official code: the first step (empty memory) trains on the incoming batch's views
    (official: skipped); the augmentation is this library's batched one (same operations as the official
    kornia pipeline); classes without a sample in memory cannot be predicted (official: a random mean); the
    model's head gets ``ce_weight * CE`` on the joint batch's original view, 0 by default, which keeps the head
    in the graph (zero gradients) so DDP sees every parameter used; under DDP each rank's class means come
    from its own memory shard. Batch of the paper: 10 incoming + 100 replayed; the PCR paper reruns SCR with
    10 + 10 (``replay_batch_size``).

    Args:
        memory_size: total memory slots.
        replay_batch_size: replayed samples per step; ``None`` uses the incoming batch's size.
        temperature: SupCon temperature (paper: 0.07).
        projection: ``"mlp"`` (paper), ``"linear"`` or ``"none"``.
        projection_dim: output width of the projection (paper: 128).
        ce_weight: weight of a cross-entropy on the model's head (0: SCR).
        pixel_stats: dataset whose normalisation the inputs carry, for exact colour jitter.
        augment: ``False`` makes the second view an identical copy (non-image inputs).
        seed: seed of the memory's random generator.

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        temperature: float = 0.07,
        projection: Projection = "mlp",
        projection_dim: int = 128,
        ce_weight: float = 0.0,
        pixel_stats: str | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, pixel_stats, augment, seed)
        self.temperature = positive_number(temperature, "temperature")
        if projection not in PROJECTIONS:
            raise ValueError(f"strategy.params.projection={projection!r} is not allowed; choose one of: {PROJECTIONS}")
        self.projection_kind: Projection = projection
        self.projection_dim = positive_integer(projection_dim, "projection_dim")
        self.ce_weight = non_negative_number(ce_weight, "ce_weight")
        self.projection: nn.Module | None = None
        self._means: tuple[torch.Tensor, torch.Tensor] | None = None  # NCM cache, dropped whenever training moves on
        self.ncm_batch_size = 512

    def _build_projection(self, in_dim: int, device: torch.device | None = None) -> nn.Module:
        self.projection = build_projection(self.projection_kind, in_dim, self.projection_dim).to(device)
        return self.projection

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        """Build the projection head for the model's feature width (before the optimizer is built)."""
        super().setup(model, stream_info)
        if self.projection is None:
            self._build_projection(model.feature_dim, next(model.parameters()).device)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        super().before_experience(model, experience)
        self._means = None

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """SupCon on the projected views of the incoming and replayed samples (+ ``ce_weight`` x head CE)."""
        projection = self.projection
        if projection is None:  # a driver that did not call setup
            projection = self._build_projection(model.feature_dim, batch[0].device)
        joint, _ = self.replay(batch)
        n = len(joint[1])
        x, y, t = self.two_views(joint)
        features = model.features(x)  # (2n, D)
        supcon = supervised_contrastive_loss(projection(features), y, self.temperature)
        logits = model.logits_from_features(features[:n], t[:n])
        ce = F.cross_entropy(logits, y[:n])
        loss = supcon + self.ce_weight * ce
        return StepOutput(
            loss=loss, parts={"supcon": supcon.detach(), "ce": ce.detach()}, logits=logits[: len(batch[1])]
        )

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        super().after_training_step(model, batch, output)
        self._means = None

    @torch.no_grad()
    def class_means(self, model: ContinualClassifier) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Normalised mean of the normalised features of each class's memory samples, and which classes have one."""
        if self._means is not None:
            return self._means
        if len(self.memory) == 0:
            return None
        x, y = self.memory.get("x"), self.memory.get("y")
        features = torch.cat(
            [model.features(x[i : i + self.ncm_batch_size]) for i in range(0, len(y), self.ncm_batch_size)]
        )
        features = F.normalize(features.float(), dim=1)
        num_classes = model.num_classes
        sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, y, features)
        counts = torch.bincount(y, minlength=num_classes)
        self._means = (F.normalize(sums, dim=1), counts > 0)
        return self._means

    def eval_logits(self, model: ContinualClassifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Nearest class mean (negative squared distance); the head's logits while the memory is empty."""
        means = self.class_means(model)
        if means is None:
            return model(x, t)
        return nearest_mean_scores(model.features(x), *means)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Build the projection from the checkpoint's shapes when loading into a strategy not set up yet."""
        self._means = None
        if self.projection is None:
            weights = [k for k in state_dict if k.startswith(prefix + "projection.") and k.endswith("weight")]
            if weights:
                first = state_dict[sorted(weights)[0]]
                self._build_projection(first.shape[1], first.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
