"""Continual audio-video pretraining baselines on a CAV-MAE model: fine-tuning, ER and DER++.

An audio-video batch is a dict (``video`` ``(B, F, 3, H, W)``, ``audio`` ``(B, T, M)``, ``label``, ``group``);
the loss is the model's own objective (MAE + InfoNCE, :meth:`~lifelong.models.cavmae.CAVMAE.pretrain_forward`)
on the incoming clips, plus replayed clips for ER and an embedding anchor for DER++. These are ordinary
strategies (DESIGN §3) that declare ``model_family = "audio_video"``: they train through the same module,
loop, checkpoints and tracking as the classification strategies and are evaluated by retrieval.
FLAVA builds on them (:mod:`lifelong.strategies.flava`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from lifelong.buffers import ReservoirBuffer
from lifelong.data.types import StreamInfo
from lifelong.strategies.base import StepOutput, Strategy, register_strategy
from lifelong.strategies.common import stored_target_mse

if TYPE_CHECKING:
    from lifelong.models.cavmae import CAVMAE

AVBatch = dict[str, torch.Tensor]


@register_strategy("av_finetune")
class AVStrategy(Strategy):
    """Audio-video fine-tuning: MAE + InfoNCE on the incoming clips only (the lower bound of the pretraining table)."""

    model_family: ClassVar[str] = "audio_video"

    def setup(self, model: CAVMAE, stream_info: StreamInfo) -> None:  # type: ignore[override]
        """Called once, before the first experience (and before the optimizer is made)."""
        self.stream_info = stream_info

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> StepOutput:  # type: ignore[override]
        """MAE + InfoNCE on the incoming batch."""
        out = model.pretrain_forward(batch["video"], batch["audio"])
        return StepOutput(out["loss"], loss_parts(out))


def loss_parts(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The detached MAE and InfoNCE terms of a ``pretrain_forward`` output (logged as ``train/<name>``)."""
    return {k: out[k].detach() for k in ("mae_a", "mae_v", "nce")}


def embedding_mse(out: dict[str, torch.Tensor], replay: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """DER anchor: MSE between the current and the stored embeddings of the replayed clips (fp32 targets)."""
    return stored_target_mse(out["emb_a"][n:], replay["emb_a"]) + stored_target_mse(out["emb_v"][n:], replay["emb_v"])


@register_strategy("av_er")
class AVReplay(AVStrategy):
    """Experience Replay for audio-video pretraining: a reservoir of raw clips replayed with every batch.

    Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019. With ``alpha > 0`` the
    replayed clips' embeddings are also anchored to the stored ones (DER++, see ``av_derpp``).

    Args:
        memory_size: reservoir slots (split over the ranks under DDP).
        replay_batch_size: replayed clips per step (``None``: the incoming batch size).
        alpha: weight of the DER-style MSE on stored embeddings (0 for ER).
        seed: seed of the memory's generator.

    """

    def __init__(
        self, memory_size: int = 200, replay_batch_size: int | None = None, alpha: float = 0.0, seed: int = 0
    ) -> None:
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"strategy.params.memory_size={memory_size} is not allowed; use >= 1")
        if alpha < 0:
            raise ValueError(f"strategy.params.alpha={alpha} must be >= 0")
        self.memory = ReservoirBuffer(memory_size, seed=seed)
        self.replay_batch_size, self.alpha = replay_batch_size, alpha

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> StepOutput:  # type: ignore[override]
        """MAE + InfoNCE on incoming + replayed clips, plus ``alpha`` x embedding MSE on the replayed ones."""
        n = len(batch["video"])
        replay = self.memory.sample(self.replay_batch_size or n, device=batch["video"].device)
        video, audio = batch["video"], batch["audio"]
        if replay:
            video, audio = torch.cat([video, replay["video"]]), torch.cat([audio, replay["audio"]])
        out = model.pretrain_forward(video, audio)
        loss, parts = out["loss"], loss_parts(out)
        if replay and self.alpha > 0:
            der = embedding_mse(out, replay, n)
            loss = loss + self.alpha * der
            parts["der"] = der.detach()
        extras = {"emb_a": out["emb_a"][:n].detach(), "emb_v": out["emb_v"][:n].detach()}
        return StepOutput(loss, parts, extras=extras)

    @torch.no_grad()
    def after_training_step(self, model: CAVMAE, batch: AVBatch, output: StepOutput) -> None:  # type: ignore[override]
        """Offer the incoming clips (and, for DER++, their embeddings) to the reservoir."""
        fields = {"video": batch["video"], "audio": batch["audio"]}
        if self.alpha > 0:
            fields.update({k: output.extras[k].float() for k in ("emb_a", "emb_v")})
        self.memory.add(**fields)


@register_strategy("av_derpp")
class AVDERpp(AVReplay):
    """DER++ for audio-video pretraining: ER + MSE to the stored embeddings of replayed clips.

    Buzzega et al., "Dark Experience for General Continual Learning", NeurIPS 2020, in the form FLAVA
    compares against (embeddings instead of logits, alpha 0.5).
    """

    def __init__(
        self, memory_size: int = 200, replay_batch_size: int | None = None, alpha: float = 0.5, seed: int = 0
    ) -> None:
        super().__init__(memory_size, replay_batch_size, alpha, seed)
