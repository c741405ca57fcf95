"""Loss functions and small helpers shared by the contrastive replay strategies (SCR, PCR, HPCR).

Every loss takes similarities or features of ``N`` anchors (the original and augmented views of the
incoming and replayed samples) and works in fp32 with ``logsumexp``/``log_softmax``, so it is safe under
fp16/bf16 autocast (the official code's ``exp`` then ``log`` can underflow there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lifelong.buffers import ReservoirBuffer
from lifelong.data.augment import ContrastiveAugment, pixel_statistics
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, Strategy
from lifelong.strategies.common import SeenClasses, append_replay, positive_mask


def class_counts(labels: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_c, log n_c)`` for every class column of ``scores`` (``(C,)`` each, ``scores``' dtype; ``log 0 = -inf``).

    The count weights of the anchor-to-proxy softmax of PCR and HPCR: class ``c`` appears once per anchor
    labelled ``c``.
    """
    counts = torch.bincount(labels, minlength=scores.shape[1]).to(scores.dtype)  # (C,)
    log_counts = torch.where(counts > 0, counts.clamp_min(1).log(), torch.full_like(counts, -math.inf))
    return counts, log_counts


def proxy_contrastive_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PCR's anchor-to-proxy loss (Lin et al., CVPR 2023), in closed form.

    With ``s_ic = cos(z_i, w_c) / tau`` (``scores``) and ``n_c`` the number of anchors labelled ``c``::

        L = -(1/N) sum_i log( exp(s_{i, y_i}) / sum_{c in batch} n_c exp(s_ic) )

    i.e. a cross-entropy over the classes present in the batch, each weighted by its count. This is
    exactly the official SupCon ``contrast_mode='proxy'`` call, whose columns are the proxies of the
    anchors' labels (so a class appears once per anchor carrying it) and whose diagonal is not masked.

    Args:
        scores: ``(N, C)`` anchor-to-proxy similarities already divided by the temperature.
        labels: ``(N,)`` class of each anchor.

    Example:
        >>> s = torch.tensor([[1.0, 0.0, 5.0], [0.0, 2.0, 5.0], [1.0, 1.0, 5.0]])
        >>> y = torch.tensor([0, 1, 1])  # class 2 is absent, classes 0 and 1 have counts 1 and 2
        >>> expected = sum(math.log(math.exp(s[i, 0]) + 2 * math.exp(s[i, 1])) - s[i, y[i]] for i in range(3)) / 3
        >>> bool(torch.isclose(proxy_contrastive_loss(s, y), torch.tensor(float(expected))))
        True

    """
    scores = scores.float()
    _, log_counts = class_counts(labels, scores)
    log_norm = torch.logsumexp(scores + log_counts, dim=1)  # (N,)
    return (log_norm - scores.gather(1, labels[:, None])[:, 0]).mean()


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020), SupCon's ``contrast_mode='all'``.

    Every row of ``features`` is an anchor (all views stacked along the batch); with ``z`` L2-normalised,
    ``P(i)`` the other anchors with label ``y_i`` and ``A(i)`` all anchors but ``i``::

        L = (1/|I|) sum_{i in I} -(1/|P(i)|) sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )

    ``I`` are the anchors with at least one positive (all of them when every sample comes with a second view).
    No ``temperature / base_temperature`` factor, as in the SCR/PCR code.

    Args:
        features: ``(N, D)`` embeddings (normalised here).
        labels: ``(N,)`` classes.
        temperature: ``t``.

    """
    z = F.normalize(features.float(), dim=1)
    logits = z @ z.T / temperature  # (N, N)
    eye = torch.eye(len(labels), dtype=torch.bool, device=logits.device)
    log_prob = logits.masked_fill(eye, -math.inf).log_softmax(dim=1)
    positive = positive_mask(labels)  # (N, N)
    n_positive = positive.sum(dim=1)
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(dim=1) / n_positive.clamp_min(1)
    has = n_positive > 0
    return (per_anchor * has).sum() / has.sum().clamp_min(1)


def holistic_contrastive_loss(
    scores: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Anchor-to-proxy plus anchor-to-sample pairs in one softmax (HPCR's contrastive component, our reading).

    Each anchor ``i`` is contrasted with the proxies of all anchors' labels (as in PCR, so class ``c``
    counts ``n_c`` times) and with every other anchor ``j != i``; positives are the entries of its own class
    in both parts. With ``s_ic`` the anchor-to-proxy scores and ``u_ij = z_i.z_j / tau``::

        L_i = -(1/(n_{y_i} + n_{y_i} - 1)) [ n_{y_i} (s_{i,y_i} - D_i) + sum_{j != i, y_j = y_i} (u_ij - D_i) ]
        D_i = log( sum_c n_c exp(s_ic) + sum_{j != i} exp(u_ij) )

    Without the sample part this is exactly :func:`proxy_contrastive_loss`.

    Args:
        scores: ``(N, C)`` anchor-to-proxy similarities divided by the temperature.
        features: ``(N, D)`` anchor features (normalised here).
        labels: ``(N,)`` classes.
        temperature: divides the anchor-to-sample cosines.

    """
    scores = scores.float()
    z = F.normalize(features.float(), dim=1)
    pairs = z @ z.T / temperature  # (N, N)
    eye = torch.eye(len(labels), dtype=torch.bool, device=pairs.device)
    pairs = pairs.masked_fill(eye, -math.inf)
    counts, log_counts = class_counts(labels, scores)
    log_norm = torch.logsumexp(torch.cat([scores + log_counts, pairs], dim=1), dim=1)  # (N,)
    same = positive_mask(labels)
    n_class = counts[labels]  # (N,)
    proxy_part = n_class * (scores.gather(1, labels[:, None])[:, 0] - log_norm)
    sample_part = (pairs - log_norm[:, None]).masked_fill(~same, 0.0).sum(dim=1)
    return -((proxy_part + sample_part) / (2 * n_class - 1)).mean()


def relation_distillation(current: torch.Tensor, stored: torch.Tensor, temperature: float) -> torch.Tensor:
    """HPCR's sample-relation distillation (SCD): soft cross-entropy between sample-to-sample softmaxes.

    With ``z`` the current and ``z^`` the stored features of the same ``M`` samples (both normalised),
    ``P_kl = softmax_{l != k}(z_k.z_l / tau)`` and ``Q_kl`` the same for ``z^``::

        L = (1/M) sum_k sum_{l != k} -Q_kl log P_kl

    Args:
        current: ``(M, D)`` features of the current model.
        stored: ``(M, D)`` features stored with the samples (the targets; no gradient flows into them).
        temperature: ``tau``.

    """
    eye = torch.eye(len(current), dtype=torch.bool, device=current.device)

    def log_relations(features: torch.Tensor) -> torch.Tensor:
        z = F.normalize(features.float(), dim=1)
        return (z @ z.T / temperature).masked_fill(eye, -math.inf).log_softmax(dim=1)

    target = log_relations(stored.detach()).exp()  # (M, M), zero on the diagonal
    return -(target * log_relations(current).masked_fill(eye, 0.0)).sum(dim=1).mean()


def logit_distillation(current: torch.Tensor, stored: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HPCR's proxy-relation distillation (PCD): MSE on the logit columns of the batch's labels.

    ``mean_{k, j} (l_k[y_j] - l^_k[y_j])^2`` over the memory views ``k`` and all anchors' labels ``y_j``,
    duplicates included (so each class counts as often as it occurs in the batch), as the official code.

    Args:
        current: ``(M, C)`` logits of the current model on the memory views.
        stored: ``(M, C)`` logits stored with those samples.
        labels: ``(N,)`` labels of all anchors of the step.

    """
    return F.mse_loss(current.float()[:, labels], stored.detach().float()[:, labels])


class AugmentedReplay(Strategy):
    """Shared machinery of the online contrastive replay strategies (SCR, PCR, HPCR); registers nothing.

    A reservoir memory of unaugmented samples, updated after the optimizer step; every step draws a replay
    batch, appends it to the incoming batch and adds a second, augmented view of the joint batch
    (:class:`~lifelong.data.augment.ContrastiveAugment`, per-sample parameters, on the device). While the
    memory is still empty (the very first step) the views of the incoming batch alone are used; the official
    codes skip that step, which changes one step of thousands.

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: replayed samples per step; ``None`` uses the incoming batch's size.
        pixel_stats: the dataset whose mean/std normalised the inputs (``fashion_mnist``, ``cifar10`` ...), so
            colour jitter works on exact ``[0, 1]`` pixels; ``None`` maps them with the batch's range instead.
        augment: ``False`` makes the second view an identical copy (for inputs that are not images).
        seed: seed of the memory's random generator.

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        pixel_stats: str | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
            raise ValueError(f"strategy.params.memory_size={memory_size!r} is not allowed; use an integer >= 1")
        if replay_batch_size is not None and (not isinstance(replay_batch_size, int) or replay_batch_size < 1):
            raise ValueError(f"strategy.params.replay_batch_size={replay_batch_size!r} is not allowed; use >= 1")
        try:
            mean, std = pixel_statistics(pixel_stats)
        except ValueError as err:
            raise ValueError(f"strategy.params.{err}") from None
        self.memory = ReservoirBuffer(memory_size, seed=seed)
        self.replay_batch_size = replay_batch_size
        self.use_augment = bool(augment)
        self.augment = ContrastiveAugment(mean, std)
        self.seen_classes = SeenClasses()

    def replay(self, batch: Batch) -> tuple[Batch, dict[str, torch.Tensor]]:
        """The incoming batch with a replay batch appended, and the replayed fields (empty while memory is)."""
        return append_replay(self.memory, batch, self.replay_batch_size)

    def two_views(self, batch: Batch) -> Batch:
        """``(x, y, t)`` of the batch followed by its augmented view: ``2 * len(y)`` anchors."""
        x, y, t = batch
        if self.use_augment:
            if x.ndim != 4:
                raise ValueError(
                    f"the augmented view needs (B, C, H, W) images, got inputs of shape {tuple(x.shape)}; "
                    "set strategy.params.augment=false for other inputs"
                )
            second = self.augment(x)
        else:
            second = x
        return torch.cat([x, second]), torch.cat([y, y]), torch.cat([t, t])

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        """Offer the incoming (unaugmented) samples to the reservoir and note their classes."""
        x, y, t = batch
        self.memory.add(x=x, y=y, t=t)
        self.seen_classes.update(y, model.num_classes)
