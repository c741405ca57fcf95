"""ER-ACE: experience replay with the asymmetric cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import mask_value
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import SeenClasses
from lifelong.strategies.er import ExperienceReplay


def asymmetric_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the softmax restricted to the ``allowed`` classes (``(C,)`` bool), computed in fp32.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 9.0]])
        >>> allowed = torch.tensor([True, True, False])
        >>> round(float(asymmetric_cross_entropy(logits, torch.tensor([0]), allowed)), 4)  # log(1 + e^-2)
        0.1269

    """
    logits = logits.float()
    return F.cross_entropy(logits.masked_fill(~allowed.to(logits.device), mask_value(logits.dtype)), labels)


@register_strategy("er_ace")
class ERACE(ExperienceReplay):
    """ER with the Asymmetric Cross-Entropy (ER-ACE), online.

    Caccia, Aljundi, Asadi, Tuytelaars, Pineau, Belilovsky, "New Insights on Reducing Abrupt Representation
    Change in Online Continual Learning", ICLR 2022 (arXiv 2104.05025); official code github.com/pclucas14/AML
    (``methods/er_ace.py``). The incoming batch's cross-entropy only lets the classes present in that batch
    compete (so new classes do not push the old ones' logits down), the replay batch gets the full
    cross-entropy; the loss is their sum, as in the official code::

        L = CE_{classes in incoming batch}(incoming) + CE(replayed)

    The memory is a reservoir updated after the step with the incoming samples, as ER. While it is still
    empty (the very first step) there is no old class to protect and the incoming batch gets the plain
    cross-entropy, as in Avalanche's ``ER_ACE`` (the official code masks there too, but keeps every class
    above the largest label seen, i.e. nearly all classes at that point).

    Deviations from the official code: one forward pass over the incoming and replayed samples together
    (official: two, so batch-norm statistics differ slightly); ``unmask_unseen=True`` also keeps the classes
    not seen yet in the incoming softmax, as the official code does with its "classes above the largest seen
    label" (which assumes labels arrive in increasing order); off by default, following the paper's loss.

    Args:
        memory_size: total memory slots.
        replay_batch_size: replayed samples per step; ``None`` uses the incoming batch's size.
        unmask_unseen: also let never-seen classes into the incoming batch's softmax.
        seed: seed of the memory's random generator.

    """

    def __init__(
        self, memory_size: int = 500, replay_batch_size: int | None = None, unmask_unseen: bool = False, seed: int = 0
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed)
        self.unmask_unseen = bool(unmask_unseen)
        self.seen_classes = SeenClasses()

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """Asymmetric CE on the incoming samples plus CE on the replayed ones."""
        n_in = len(batch[1])
        x, y, t = self.replay_batch(batch)
        logits = model(x, t)  # (n_in + m, C)
        allowed = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        allowed[y[:n_in]] = True
        if self.unmask_unseen:
            seen = self.seen_classes.seen.to(logits.device)
            allowed[seen.numel() :] = True
            allowed[: seen.numel()] |= ~seen
        if len(y) == n_in:  # empty memory: no old class to protect yet, plain CE (as Avalanche's ER_ACE)
            allowed = torch.ones_like(allowed)
        incoming = asymmetric_cross_entropy(logits[:n_in], y[:n_in], allowed)
        parts = {"ace": incoming.detach()}
        loss = incoming
        if len(y) > n_in:
            replayed = F.cross_entropy(logits[n_in:].float(), y[n_in:])
            loss = loss + replayed
            parts["replay_ce"] = replayed.detach()
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_in])

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        super().after_training_step(model, batch, output)
        self.seen_classes.update(batch[1], model.num_classes)
