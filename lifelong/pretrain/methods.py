"""Continual audio-video pretraining methods (finetune, ER, DER++; FLAVA in flava.py) on a CAV-MAE model.

Audio-video pretraining has no labels and no accuracy matrix, so these methods do not fit the classification
``Strategy`` contract (``training_loss(model, (x, y, t))``); they follow the same spirit in their own
registry ``PRETRAIN_METHODS``: plain ``nn.Module`` objects that turn a batch dict (``video``, ``audio``, ...)
into a loss and keep all state (memory, AVM) in parameters/buffers, driven by :mod:`lifelong.pretrain.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.buffers import ReservoirBuffer
from lifelong.models.cavmae import CAVMAE
from lifelong.registry import Registry

PRETRAIN_METHODS: Registry[type[PretrainMethod]] = Registry("method.name")
register_method = PRETRAIN_METHODS.register
AVBatch = dict[str, torch.Tensor]


@dataclass
class PretrainOutput:
    """One step's loss, its named parts (logged as ``train/<name>``) and what ``after_training_step`` stores."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    store: dict[str, torch.Tensor] = field(default_factory=dict)


class PretrainMethod(nn.Module):
    """Base class, and the ``finetune`` baseline: MAE + InfoNCE on the incoming batch only."""

    def setup(self, model: CAVMAE) -> None:
        """Build sub-modules that depend on the model (called once, before the optimiser is made)."""

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> PretrainOutput:
        """MAE + InfoNCE on the incoming batch."""
        out = model.pretrain_forward(batch["video"], batch["audio"])
        return PretrainOutput(out["loss"], _parts(out))

    @torch.no_grad()
    def after_training_step(self, model: CAVMAE, batch: AVBatch, output: PretrainOutput) -> None:
        """Update memories after the optimiser step (nothing here)."""

    def after_experience(self, model: CAVMAE, task: int) -> None:
        """Called after each task's training."""


def _parts(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: out[k].detach() for k in ("mae_a", "mae_v", "nce")}


register_method("finetune")(PretrainMethod)


@register_method("er")
class PretrainER(PretrainMethod):
    """Experience Replay for pretraining: a reservoir of raw clips replayed with every batch (Chaudhry et al., 2019).

    Args:
        memory_size: reservoir slots.
        replay_batch_size: replayed clips per step (``None``: the incoming batch size).
        alpha: weight of the DER-style MSE on stored embeddings (0 for ER).
        seed: seed of the memory's generator.

    """

    def __init__(
        self, memory_size: int = 200, replay_batch_size: int | None = None, alpha: float = 0.0, seed: int = 0
    ) -> None:
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"method.params.memory_size={memory_size} is not allowed; use >= 1")
        if alpha < 0:
            raise ValueError(f"method.params.alpha={alpha} must be >= 0")
        self.memory = ReservoirBuffer(memory_size, seed=seed)
        self.replay_batch_size, self.alpha = replay_batch_size, alpha

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> PretrainOutput:
        """MAE + InfoNCE on incoming + replayed clips, plus ``alpha`` x embedding MSE on the replayed ones."""
        n = len(batch["video"])
        replay = self.memory.sample(self.replay_batch_size or n, device=batch["video"].device)
        video, audio = batch["video"], batch["audio"]
        if replay:
            video, audio = torch.cat([video, replay["video"]]), torch.cat([audio, replay["audio"]])
        out = model.pretrain_forward(video, audio)
        loss, parts = out["loss"], _parts(out)
        if replay and self.alpha > 0:
            der = _embedding_mse(out, replay, n)
            loss = loss + self.alpha * der
            parts["der"] = der.detach()
        store = {"emb_a": out["emb_a"][:n].detach(), "emb_v": out["emb_v"][:n].detach()}
        return PretrainOutput(loss, parts, store)

    @torch.no_grad()
    def after_training_step(self, model: CAVMAE, batch: AVBatch, output: PretrainOutput) -> None:
        """Offer the incoming clips (and, for DER++, their embeddings) to the reservoir."""
        fields = {"video": batch["video"], "audio": batch["audio"]}
        if self.alpha > 0:
            fields.update({k: output.store[k].float() for k in ("emb_a", "emb_v")})
        self.memory.add(**fields)


def _embedding_mse(out: dict[str, torch.Tensor], replay: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """DER anchor: MSE between current and stored embeddings of the replayed clips (fp32 targets)."""
    return F.mse_loss(out["emb_a"][n:].float(), replay["emb_a"].float()) + F.mse_loss(
        out["emb_v"][n:].float(), replay["emb_v"].float()
    )


@register_method("derpp")
class PretrainDERpp(PretrainER):
    """DER++ for pretraining: ER + MSE to stored embeddings (Buzzega et al., NeurIPS 2020; alpha 0.5 as in FLAVA)."""

    def __init__(
        self, memory_size: int = 200, replay_batch_size: int | None = None, alpha: float = 0.5, seed: int = 0
    ) -> None:
        super().__init__(memory_size, replay_batch_size, alpha, seed)
