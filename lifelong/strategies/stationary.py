"""Stationary representations on a fixed d-Simplex classifier: ``cores_replay``, CL2R and their base (``hoc``'s).

The real CoReS (a fresh network per step on all data so far) is ``cores`` (``lifelong.strategies.cores``).

Both need ``model.head=dsimplex`` (``lifelong.models.dsimplex``): the class prototypes never move, so
features learned at different times stay in the same space and remain comparable (compatible)
without mapping old and new features. The teacher is a :class:`~lifelong.strategies.teacher.FrozenSnapshot`
and ``replace_at`` uses :mod:`lifelong.strategies.replacement`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.data.types import Experience, StreamInfo
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.dsimplex import DSimplexHead, require_dsimplex
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import classes_before
from lifelong.strategies.er import ExperienceReplay
from lifelong.strategies.teacher import FrozenSnapshot

# --------------------------------------------------------------------------- losses


def cosine_distillation(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """CL2R's feature distillation: ``mean_i (1 - cos(new_i, old_i))`` (``cosine_embedding_loss`` with target 1).

    Example:
        >>> cosine_distillation(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        tensor(0.5000)

    """
    return (1 - F.cosine_similarity(new.float(), old.float(), dim=1)).mean()


def cl2r_lambda(lambda_0: float, n_new: int, n_old: int) -> float:
    """CL2R's distillation weight ``lambda_t = lambda_0 * sqrt(n_new / n_old)`` (0 while nothing is old).

    ``n_new``: classes the current experience brings; ``n_old``: classes seen in earlier experiences.

    Example:
        >>> cl2r_lambda(5.0, 10, 40)
        2.5

    """
    return 0.0 if n_old <= 0 else float(lambda_0) * math.sqrt(n_new / n_old)


def check_dsimplex_stream(model: ContinualClassifier, stream_info: StreamInfo, strategy_name: str) -> DSimplexHead:
    """The model's d-Simplex head, after checking that it reserves every class of the stream."""
    head = require_dsimplex(model, strategy_name)
    head.check_classes(range(stream_info.num_classes), "the stream's classes")
    return head


# --------------------------------------------------------------------------- strategies


class StationaryReplay(ExperienceReplay):
    """Experience replay on a fixed d-Simplex classifier; base of ``cores_replay``, ``cl2r`` and ``hoc``.

    Checks that the model has a ``DSimplexHead`` (``model.head=dsimplex``) and that every class of the
    stream is one the simplex reserved. Subclasses that use a teacher get model replacement
    (``replace_at``) and a ``FrozenSnapshot`` teacher.
    """

    requires_head = "dsimplex"
    strategy_name = "stationary"

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        seed: int = 0,
        replace_at: Mapping[Any, Any] | None = None,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)
        self.teacher = FrozenSnapshot()

    def head(self, model: ContinualClassifier) -> DSimplexHead:
        """The model's d-Simplex head (``ValueError`` naming ``model.head=dsimplex`` otherwise)."""
        return require_dsimplex(model, self.strategy_name)

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        check_dsimplex_stream(model, stream_info, self.strategy_name)
        super().setup(model, stream_info)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Swap in a replacement model if one is scheduled (``er``); check the classes."""
        super().before_experience(model, experience)
        self.head(model).check_classes(experience.classes, f"experience {experience.index} classes")

    def hold_teacher(self, model: ContinualClassifier, experience: Experience) -> None:
        """Freeze the model ``experience`` starts from as the teacher (none at experience 0 unless replaced)."""
        if experience.index > 0 or self.replaced_now:
            self.teacher.capture(model)
        else:
            self.teacher.clear()

    def forward_parts(self, model: ContinualClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, d), logits (B, K))`` of the d-Simplex model on ``x``."""
        head = self.head(model)
        features = head.embed(model.features(x))
        return features, F.linear(features, head.prototypes)


@register_strategy("cores_replay")
class CoReSReplay(StationaryReplay):
    """CoReS's loss with fine-tuning and replay: ER with the fixed d-Simplex classifier (not CoReS's protocol).

    The loss of Biondi, Pernici, Bruni, Del Bimbo, "CoReS: Compatible Representations via Stationarity",
    IEEE TPAMI 2023 (arXiv 2111.07632): cross-entropy against the fixed d-Simplex, no old model, no
    pairwise term. Each step minimises CE on the incoming batch plus a same-sized replay batch (as
    ``er``), so it differs from the ER baseline only by the fixed classifier. Needs ``model.head=dsimplex``.
    This was ``cores`` before ``cores`` became the paper's protocol (``lifelong.strategies.cores``: a
    fresh network per step on the cumulative data, best-validation checkpoint).

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size).
        replace_at: ``{experience index: checkpoint}``: swap these weights into the model (keeping the
            fixed classifier) at the start of that experience (model replacement; no teacher here).
        seed: seed of the memory.

    """

    strategy_name = "cores_replay"

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)


@register_strategy("cl2r")
class CL2R(StationaryReplay):
    """CL2R: d-Simplex cross-entropy + cosine feature distillation on the replayed samples.

    Biondi, Pernici, Bruni, Del Bimbo, "CL2R: Compatible Lifelong Learning Representations", ACM TOMM
    2023 (arXiv 2211.09032). Global stationarity comes from the fixed d-Simplex; local stationarity from
    distilling the previous model's features on the memory samples::

        L_t = CE(W_S h_t(x), y) over the joint batch + lambda_t * mean_{x in replay} [1 - cos(h_t(x), h_{t-1}(x))]
        lambda_t = lambda_0 * sqrt(n_new / n_old)

    with ``n_new`` the classes of experience ``t`` not seen before and ``n_old`` the classes of the
    earlier experiences. The teacher ``h_{t-1}`` is the model as it starts experience ``t`` (the
    previous experience's final state, or the model swapped in by ``replace_at``), frozen, in eval
    mode and fp32. Needs ``model.head=dsimplex``.

    Deviations from the official code: the memory is a reservoir (official: 20 random images per class,
    2000 in all) and each step appends a replay batch to the incoming batch instead of a sampler that
    draws half memory, half new data; the distillation reads the replayed half explicitly, so it does
    not depend on the order inside the batch.

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size, i.e. half memory).
        lambda_0: base distillation weight (official ``config.yml``: 5).
        replace_at: ``{experience index: checkpoint}``: swap these weights into the model (keeping the
            fixed classifier) at the start of that experience; it then serves as the teacher.
        seed: seed of the memory.

    """

    strategy_name = "cl2r"
    lambda_t: torch.Tensor

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        lambda_0: float = 5.0,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)
        if isinstance(lambda_0, bool) or not isinstance(lambda_0, int | float) or lambda_0 < 0:
            raise ValueError(f"strategy.params.lambda_0={lambda_0!r} is not allowed; use a number >= 0")
        self.lambda_0 = float(lambda_0)
        self.register_buffer("lambda_t", torch.zeros(()))

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Set ``lambda_t`` and freeze the model the experience starts from as the teacher."""
        super().before_experience(model, experience)
        old = classes_before(self.stream_info, experience.index)
        n_new = len({int(c) for c in experience.classes} - old)
        self.lambda_t.fill_(cl2r_lambda(self.lambda_0, n_new, len(old)))
        self.hold_teacher(model, experience)

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """CE on the joint batch + ``lambda_t`` x cosine distillation on its replayed part."""
        n_incoming = len(batch[1])
        x, y, _ = self.replay_batch(batch)
        features, logits = self.forward_parts(model, x)
        ce = F.cross_entropy(logits, y)
        parts = {"ce": ce.detach()}
        loss = ce
        if self.teacher.active and len(y) > n_incoming:
            old = self.teacher.features(model, x[n_incoming:])
            distill = cosine_distillation(features[n_incoming:], old)
            loss = ce + self.lambda_t.to(ce.device) * distill
            parts["distill"] = distill.detach()
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_incoming])
