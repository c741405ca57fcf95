"""PCR: proxy-based contrastive replay for online class-incremental learning."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from lifelong.data.types import StreamInfo
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import CosineHead
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import positive_number
from lifelong.strategies.contrastive import AugmentedReplay, proxy_contrastive_loss


def proxy_scores(
    model: ContinualClassifier, features: torch.Tensor, task_labels: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """Anchor-to-proxy similarities ``cos(f_i, w_c) / temperature``, ``(B, C)``.

    The proxies are the rows of the model's bias-free cosine head (``model.head: cosine``); its own
    ``scale`` does not matter here (the temperature is the strategy's). With any other head the head's
    logits stand in for the similarities (see :func:`check_proxy_head`).
    """
    head = model.head
    if isinstance(head, CosineHead):
        return F.linear(F.normalize(features, dim=1), F.normalize(head.weight, dim=1)) / temperature
    return model.logits_from_features(features, task_labels)


def check_proxy_head(model: ContinualClassifier, strategy: str) -> None:
    """Warn once per run when the model has no cosine head: the method then is not the paper's."""
    if not isinstance(model.head, CosineHead):
        warnings.warn(
            f"strategy {strategy!r} uses the rows of a cosine head as class proxies; model.head is "
            f"{type(model.head).__name__}, so its logits are used as the anchor-to-proxy similarities instead. "
            "Set model.head=cosine for the paper's method.",
            stacklevel=2,
        )


@register_strategy("pcr")
class PCR(AugmentedReplay):
    """Proxy-based Contrastive Replay (PCR).

    Lin, Zhang, Feng, Li, Ye, "PCR: Proxy-based Contrastive Replay for Online Class-Incremental Continual
    Learning", CVPR 2023 (arXiv 2304.04408); official code github.com/FelixHuiweiLin/PCR.

    Each step draws a replay batch from a reservoir memory of unaugmented samples, adds one augmented view
    of the joint batch and minimises the anchor-to-proxy contrastive loss on all ``2 (b + m)`` anchors:
    a cross-entropy over the classes present in the batch, each class weighted by its count
    (:func:`~lifelong.strategies.contrastive.proxy_contrastive_loss`), with ``cos(feature, proxy) / 0.09``
    as similarities. The proxies are the rows of the model's cosine head (``model.head: cosine``).
    Prediction is the nearest proxy by cosine among the classes trained on so far. The memory is updated
    after the optimizer step with the incoming samples as they came.

    Deviations from the official code:

    - the first step (empty memory) trains on the incoming batch's two views; the official code skips it;
    - the augmentation runs batched on the device (:class:`~lifelong.data.augment.ContrastiveAugment`),
      same operations and parameter ranges as the official per-image torchvision pipeline;
    - features and proxies are normalised with ``F.normalize`` (the official code adds 1e-6 to the norm);
    - the loss is computed in closed form in fp32 with ``logsumexp`` (identical value, fp16-safe);
    - with a head other than ``cosine`` the head's logits are the similarities (a warning says so).

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: replayed samples per step (paper: 10); ``None`` uses the incoming batch's size.
        temperature: ``tau`` of the anchor-to-proxy similarities (paper: 0.09).
        pixel_stats: dataset whose normalisation the inputs carry, for exact colour jitter (see
            :class:`~lifelong.strategies.contrastive.AugmentedReplay`).
        augment: ``False`` makes the second view an identical copy (non-image inputs).
        seed: seed of the memory's random generator.

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        temperature: float = 0.09,
        pixel_stats: str | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, pixel_stats, augment, seed)
        self.temperature = positive_number(temperature, "temperature")

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        super().setup(model, stream_info)
        check_proxy_head(model, type(self).__name__.lower())

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """PCR loss on the original and augmented views of the incoming and replayed samples."""
        joint, _ = self.replay(batch)
        x, y, t = self.two_views(joint)
        scores = proxy_scores(model, model.features(x), t, self.temperature)  # (2n, C)
        loss = proxy_contrastive_loss(scores, y)
        return StepOutput(loss=loss, parts={"pcr": loss.detach()}, logits=scores[: len(batch[1])])

    def eval_logits(self, model: ContinualClassifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Cosine similarity to every proxy, the classes not trained on yet masked out."""
        return self.seen_classes.mask(proxy_scores(model, model.features(x), t, self.temperature))
