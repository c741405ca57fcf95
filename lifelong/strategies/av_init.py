"""The objectives of the audio-video init stage (FLAVA's initialisation chain, :mod:`lifelong.init_stage`).

- ``av_contrast``: MAE on the masked clip + InfoNCE on the *unmasked* clip's embeddings;
- ``avm_warmup``: trains only an AVM (BCE on matched / deranged pairs) on a frozen backbone.

They are strategies so the init stage trains through the same module and Trainer as every run; they are
meant for that stage, not for a stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lifelong.data.types import StreamInfo
from lifelong.models.avm import AVMatching
from lifelong.strategies.av_replay import AVBatch, AVStrategy
from lifelong.strategies.base import StepOutput, register_strategy
from lifelong.strategies.flava import avm_loss, modality_codes

if TYPE_CHECKING:
    from lifelong.models.cavmae import CAVMAE


@register_strategy("av_contrast")
class UnmaskedContrast(AVStrategy):
    """Init objective: MAE on the masked clip + InfoNCE on the unmasked clip's embeddings (same weight and tau).

    A deliberate departure for tiny from-scratch models: on the av_digits init pool, InfoNCE on 20 % visible
    tokens stays at ln(batch) for 2250 steps, while on the unmasked clip it starts aligning after ~1000.
    FLAVA's own init starts from ImageNet MAE weights, which this stage stands in for.
    """

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> StepOutput:  # type: ignore[override]
        """MAE (masked clip) + ``contrastive_weight`` x InfoNCE (unmasked clip)."""
        from lifelong.models.cavmae import info_nce  # imports timm: only when the objective runs

        out = model.pretrain_forward(batch["video"], batch["audio"])
        codes = model.full_codes(batch["video"], batch["audio"])
        emb = {m: model.unimodal_embedding(codes[m], m) for m in ("a", "v")}
        nce = info_nce(emb["a"], emb["v"], model.config.tau)
        loss = out["mae_a"] + out["mae_v"] + model.config.contrastive_weight * nce
        parts = {"mae_a": out["mae_a"].detach(), "mae_v": out["mae_v"].detach(), "nce": nce.detach()}
        return StepOutput(loss, parts)


@register_strategy("avm_warmup")
class AVMWarmup(AVStrategy):
    """FLAVA's AVM warm-up: BCE of an AVM on matched / deranged pairs of backbone tokens; the backbone gets no gradient.

    The driver freezes the backbone (its parameters leave the optimizer); the AVM's weights are what this
    stage produces (``self.avm``), loaded into FLAVA's AVM before the stream.

    Args:
        avm_heads: AVM attention heads (``None``: the backbone's).

    """

    def __init__(self, avm_heads: int | None = None) -> None:
        super().__init__()
        self.avm_heads = avm_heads
        self.avm: AVMatching | None = None

    def setup(self, model: CAVMAE, stream_info: StreamInfo) -> None:  # type: ignore[override]
        """Build the AVM at the backbone's width."""
        super().setup(model, stream_info)
        if self.avm is None:
            self.avm = AVMatching(model.config.embed_dim, self.avm_heads or model.config.num_heads)

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> StepOutput:  # type: ignore[override]
        """The AVM's BCE on matched and jointly re-encoded mismatched pairs (backbone without gradient)."""
        assert self.avm is not None  # built in setup
        loss = avm_loss(self.avm, model, *modality_codes(model, batch["video"], batch["audio"]))
        return StepOutput(loss, {"avm": loss.detach()})

    @torch.no_grad()
    def avm_state(self) -> dict[str, torch.Tensor]:
        """The warmed-up AVM's weights."""
        assert self.avm is not None
        return self.avm.state_dict()
