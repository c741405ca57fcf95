"""HPCR: holistic proxy-based contrastive replay (contrastive, temperature and distillation components on PCR)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from lifelong.data.types import Experience
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import non_negative_number, positive_integer, positive_number
from lifelong.strategies.contrastive import (
    holistic_contrastive_loss,
    logit_distillation,
    proxy_contrastive_loss,
    relation_distillation,
)
from lifelong.strategies.pcr import PCR, proxy_scores

Contrast = Literal["proxy", "holistic", "auto"]
CONTRASTS: tuple[str, ...] = ("proxy", "holistic", "auto")


def gradient_temperature_scale(
    step: int, period: int = 500, softmax_temperature: float = 0.09, high: float = 0.16, low: float = 0.05
) -> float:
    """HPCR's loss multiplier ``tau_p / tau_g(step)`` at ``step`` (counted from 0 within the current task).

    Scaling a softmax cross-entropy by ``tau_p / tau_g`` turns its gradient factor ``1 / tau_p`` into
    ``1 / tau_g`` while the softmax keeps ``tau_p``. As the official code, the *ratio* follows a cosine
    cycle from ``tau_p / high`` (step 0) up to ``tau_p / low`` (half a period) and back::

        s(t) = s_min + (s_max - s_min) * (1 - cos(2 pi t / period)) / 2,  s_min = tau_p / high, s_max = tau_p / low

    Example:
        >>> [round(gradient_temperature_scale(t), 4) for t in (0, 250, 500)]
        [0.5625, 1.8, 0.5625]

    """
    low_scale, high_scale = softmax_temperature / high, softmax_temperature / low
    return low_scale + (high_scale - low_scale) * 0.5 * (1.0 - math.cos(2.0 * math.pi * step / period))


@register_strategy("hpcr")
class HPCR(PCR):
    """Holistic Proxy-based Contrastive Replay (HPCR).

    Lin, Feng, Zhang, Li, Ye, "HPCR: Holistic Proxy-based Contrastive Replay for Online Continual
    Learning", IEEE TNNLS 2025 (arXiv 2309.15038); official code ``agents/hpcr.py`` of
    github.com/FelixHuiweiLin/PCR. PCR (same memory, views, proxies and prediction) plus:

    1. **Contrastive component** (``contrast``): ``"proxy"`` is PCR's anchor-to-proxy loss; ``"holistic"``
       adds anchor-to-sample pairs to the same softmax
       (:func:`~lifelong.strategies.contrastive.holistic_contrastive_loss`); ``"auto"`` is a step function
       on the training batch: holistic when the step has at least ``holistic_min_batch`` samples (incoming
       plus replayed, before the second view), proxy otherwise. The paper describes this gate, but neither
       its threshold nor its exact pair set could be read (only the abstract was available) and the released
       code does not implement it (it always uses ``proxy``), so the formulation and the default threshold
       (64: the paper's 10 + 10 stays pure proxy, as the released code) are this library's.
    2. **Temperature component**: the softmax temperature stays ``temperature`` (0.09) while the gradient
       temperature cycles between ``gradient_temperatures`` (0.16 and 0.05) with ``temperature_period`` (500)
       steps, restarting at each task; implemented as the official code, by multiplying the contrastive loss
       by :func:`gradient_temperature_scale`.
    3. **Distillation component**, from the second task on, on the memory views only: PCD (``alpha``, MSE on the
       logit columns of the batch's labels) and SCD (``beta``, sample-relation soft cross-entropy), against
       the logits (``cos / temperature`` over all classes) and raw features that each sample got in the
       forward pass of the step that inserted it into the memory (DER-style, stored alongside it, before the
       optimizer update). Both targets are duplicated for the augmented view, as in the official code.

    Deviations from the official code, besides PCR's: distillation losses use ``log_softmax`` in fp32 (the
    official ``exp`` then ``log`` underflows in fp16); no hard-coded CUDA; the stored features stay aligned
    with the stored samples when the memory fills in the middle of a batch (the official reservoir drops the
    feature slice there); the task index comes from the stream's experiences. Under mixed precision the stored
    targets carry the precision of that forward pass (cast to fp32 when stored).

    Args:
        memory_size: total memory slots.
        replay_batch_size: replayed samples per step (paper: 10); ``None`` uses the incoming batch's size.
        temperature: softmax temperature ``tau_p`` of all similarities (paper: 0.09).
        gradient_temperatures: ``(high, low)`` of the gradient temperature cycle (paper: 0.16, 0.05).
        temperature_period: steps of one cycle (paper: 500).
        contrast: ``"proxy"``, ``"holistic"`` or ``"auto"`` (see above).
        holistic_min_batch: samples per step from which ``"auto"`` turns holistic.
        alpha: weight of PCD (paper: 0.1 for CIFAR-100/Mini-ImageNet, 0.01 for CIFAR-10).
        beta: weight of SCD (paper: 0.5).
        pixel_stats: dataset whose normalisation the inputs carry, for exact colour jitter.
        augment: ``False`` makes the second view an identical copy (non-image inputs).
        seed: seed of the memory's random generator.

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        temperature: float = 0.09,
        gradient_temperatures: tuple[float, float] | list[float] = (0.16, 0.05),
        temperature_period: int = 500,
        contrast: Contrast = "auto",
        holistic_min_batch: int = 64,
        alpha: float = 0.1,
        beta: float = 0.5,
        pixel_stats: str | None = None,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, temperature, pixel_stats, augment, seed)
        if not isinstance(gradient_temperatures, list | tuple) or len(gradient_temperatures) != 2:
            raise ValueError(
                f"strategy.params.gradient_temperatures={gradient_temperatures!r} is not allowed; use [high, low]"
            )
        high, low = (positive_number(v, "gradient_temperatures") for v in gradient_temperatures)
        self.gradient_temperatures: tuple[float, float] = (high, low)
        self.temperature_period = positive_integer(temperature_period, "temperature_period")
        if contrast not in CONTRASTS:
            raise ValueError(f"strategy.params.contrast={contrast!r} is not allowed; choose one of: {CONTRASTS}")
        self.contrast: Contrast = contrast
        self.holistic_min_batch = positive_integer(holistic_min_batch, "holistic_min_batch")
        self.alpha, self.beta = non_negative_number(alpha, "alpha"), non_negative_number(beta, "beta")
        self.task_step = 0

    @property
    def distills(self) -> bool:
        """Whether the memory stores logits and features (some distillation weight is non-zero)."""
        return self.alpha > 0 or self.beta > 0

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Restart the temperature cycle at every task."""
        super().before_experience(model, experience)
        self.task_step = 0

    def uses_holistic(self, n_samples: int) -> bool:
        """The contrastive component's choice for a step with ``n_samples`` incoming + replayed samples."""
        return self.contrast == "holistic" or (self.contrast == "auto" and n_samples >= self.holistic_min_batch)

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """``scale(t) * L_contrast + [task > 0] * (alpha * L_PCD + beta * L_SCD)``."""
        n_in = len(batch[1])
        joint, replayed = self.replay(batch)
        x, y, t = self.two_views(joint)
        n = len(joint[1])
        features = model.features(x)  # (2n, D)
        scores = proxy_scores(model, features, t, self.temperature)  # (2n, C)
        if self.uses_holistic(n):
            contrast = holistic_contrastive_loss(scores, features, y, self.temperature)
        else:
            contrast = proxy_contrastive_loss(scores, y)
        high, low = self.gradient_temperatures
        scale = gradient_temperature_scale(self.task_step, self.temperature_period, self.temperature, high, low)
        loss = scale * contrast
        parts = {"contrast": contrast.detach(), "temperature_scale": torch.tensor(scale)}
        if self.distills and replayed and self.experience_index > 0:
            memory_rows = torch.cat([torch.arange(n_in, n), torch.arange(n + n_in, 2 * n)]).to(x.device)
            stored_logits = replayed["logits"].repeat(2, 1)  # (2m, C): the target of both views
            stored_features = replayed["features"].repeat(2, 1)
            pcd = logit_distillation(scores[memory_rows], stored_logits, y)
            scd = relation_distillation(features[memory_rows], stored_features, self.temperature)
            loss = loss + self.alpha * pcd + self.beta * scd
            parts.update(pcd=pcd.detach(), scd=scd.detach())
        extras = {}
        if self.distills:
            extras = {"logits": scores[:n_in].detach().float(), "features": features[:n_in].detach().float()}
        return StepOutput(loss=loss, parts=parts, logits=scores[:n_in], extras=extras)

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        """Store the incoming samples with their logits and features of this step's forward pass."""
        x, y, t = batch
        if self.distills:
            stored = output.extras
            if "logits" not in stored or len(stored["logits"]) != len(y):
                raise RuntimeError("HPCR.after_training_step needs the StepOutput of the same batch's training_loss")
            self.memory.add(x=x, y=y, t=t, logits=stored["logits"], features=stored["features"])
        else:
            self.memory.add(x=x, y=y, t=t)
        self.seen_classes.update(y, model.num_classes)
        self.task_step += 1

    def get_extra_state(self) -> dict[str, Any]:
        """The position in the temperature cycle."""
        return {"task_step": self.task_step}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.task_step = int(state["task_step"])
