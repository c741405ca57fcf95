"""d-Simplex-HOC: stationary features plus a contrastive alignment with the model the experience starts from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lifelong.data.types import Experience
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import positive_mask, same_label
from lifelong.strategies.stationary import StationaryReplay

SameClass = Literal["official", "exclude"]
SAME_CLASS_RULES: tuple[str, ...] = ("official", "exclude")


def hoc_loss(
    new: torch.Tensor, old: torch.Tensor, labels: torch.Tensor, mu: float = 10.0, same_class: SameClass = "official"
) -> torch.Tensor:
    """The HOC contrastive loss between new and old (teacher) features of the same samples (Eq. 4).

    With ``s_ij = mu * <old_i, new_j>`` (features L2-normalised here)::

        L = (1 / B) * sum_i [ -s_ii + log sum_j exp(z_ij) ]

    - ``same_class="official"`` (the iamcl2r code): ``z_ij = s_ij * 1[y_i != y_j]``. Same-class entries,
      the positive ``j = i`` included, are multiplied by 0 rather than removed, so each adds
      ``exp(0) = 1`` inside the log-sum-exp and the positive itself is not in the denominator.
    - ``same_class="exclude"`` (the textbook supervised InfoNCE reading): ``z_ii = s_ii``, other
      same-class entries are dropped (``-inf``), different-class entries are ``s_ij``.

    Example:
        >>> new = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> old = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> y = torch.tensor([0, 1])
        >>> round(float(hoc_loss(new, old, y, mu=1.0)), 4)  # rows: -1 + log(e^0 + e^0), 0 + log(e^1 + e^0)
        0.5032

    """
    if same_class not in SAME_CLASS_RULES:
        raise ValueError(f"same_class={same_class!r} is not allowed; choose one of: {', '.join(SAME_CLASS_RULES)}")
    new, old = F.normalize(new.float(), dim=1), F.normalize(old.float(), dim=1)
    sim = mu * old @ new.T  # (B, B): row i = old feature of sample i, column j = new feature of sample j
    positive = sim.diagonal()
    if same_class == "official":
        logits = sim * (~same_label(labels))
    else:
        logits = sim.masked_fill(positive_mask(labels), -torch.inf)
    return (-positive + torch.logsumexp(logits, dim=1)).mean()


@register_strategy("hoc")
class HOC(StationaryReplay):
    """d-Simplex-HOC: ``lambda * CE`` on the fixed d-Simplex ``+ (1 - lambda) * L_HOC`` against a frozen teacher.

    Biondi, Pernici, Ricci, Del Bimbo, "Stationary Representations: Optimally Approximating
    Compatibility and Implications for Improved Model Replacements", CVPR 2024 (arXiv 2405.02581).
    The teacher is the model the experience starts from: the previous experience's final state, or the
    model swapped in by ``replace_at`` (its weights replace the model's, the fixed classifier stays),
    frozen, in eval mode and fp32. Both losses use the joint batch (incoming + replayed samples).
    Needs ``model.head=dsimplex`` (the paper reserves ``model.head_kwargs.classes=1024``).

    Decisions and deviations from the official code (iamcl2r):

    - same-class masking (``same_class``): the default ``"official"`` reproduces the code's
      multiply-by-zero mask (see :func:`hoc_loss`); ``"exclude"`` is the masked InfoNCE it approximates.
    - at experience 0 without a replacement the model starts from a random initialisation, which holds
      no knowledge to stay compatible with, so only CE (weight 1) is used; the official runs always
      replace at experience 0 with a pretrained model, in which case HOC is active as there.
    - ``reverse_labels`` writes class ``y`` to prototype ``K - 1 - y`` (official ``target_transform``) so
      the stream's classes sit at the far end from those of pretrained replacement models; predictions
      are mapped back, so accuracies use the original labels. Off by default.
    - the memory is a reservoir and each step appends a same-sized replay batch (official: 20 images
      per class, half-memory half-new batches); the teacher runs in fp32 (official: under AMP).

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size).
        ce_weight: ``lambda`` of Eq. 3 (official 0.1).
        mu: inverse temperature of Eq. 4 (official 10).
        same_class: ``"official"`` or ``"exclude"``, see above.
        reverse_labels: train class ``y`` on prototype ``K - 1 - y``.
        replace_at: ``{experience index: checkpoint}`` model replacements.
        seed: seed of the memory.

    """

    strategy_name = "hoc"

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        ce_weight: float = 0.1,
        mu: float = 10.0,
        same_class: SameClass = "official",
        reverse_labels: bool = False,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)
        if isinstance(ce_weight, bool) or not isinstance(ce_weight, int | float) or not 0 <= ce_weight <= 1:
            raise ValueError(f"strategy.params.ce_weight={ce_weight!r} is not allowed; use a number in [0, 1]")
        if isinstance(mu, bool) or not isinstance(mu, int | float) or mu <= 0:
            raise ValueError(f"strategy.params.mu={mu!r} is not allowed; use a number > 0")
        if same_class not in SAME_CLASS_RULES:
            allowed = ", ".join(SAME_CLASS_RULES)
            raise ValueError(f"strategy.params.same_class={same_class!r} is not allowed; choose one of: {allowed}")
        self.ce_weight = float(ce_weight)
        self.mu = float(mu)
        self.same_class: SameClass = same_class
        self.reverse_labels = bool(reverse_labels)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Swap in a scheduled replacement, then freeze the starting model as the teacher."""
        super().before_experience(model, experience)
        self.hold_teacher(model, experience)

    def targets(self, model: ContinualClassifier, y: torch.Tensor) -> torch.Tensor:
        """The prototype each label trains on (``K - 1 - y`` with ``reverse_labels``)."""
        return self.head(model).num_classes - 1 - y if self.reverse_labels else y

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """``ce_weight * CE + (1 - ce_weight) * HOC`` on the joint batch (CE alone while there is no teacher)."""
        n_incoming = len(batch[1])
        x, y, _ = self.replay_batch(batch)
        features, logits = self.forward_parts(model, x)
        ce = F.cross_entropy(logits, self.targets(model, y))
        parts = {"ce": ce.detach()}
        loss = ce
        if self.teacher.active:
            old = self.teacher.features(model, x)
            contrastive = hoc_loss(features, old, y, self.mu, self.same_class)
            loss = self.ce_weight * ce + (1 - self.ce_weight) * contrastive
            parts["hoc"] = contrastive.detach()
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_incoming])

    def eval_logits(self, model: ContinualClassifier, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits indexed by the original labels (undoing ``reverse_labels``)."""
        logits = model(x, t)
        return logits.flip(1) if self.reverse_labels else logits
