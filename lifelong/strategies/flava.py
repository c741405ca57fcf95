"""FLAVA: continual audio-video pretraining with localized alignment and forget-robust patch selection.

Lee, Kim, Yoon, Hwang et al., "STELLA: Continual Audio-Video Pre-training with Spatio-Temporal Localized
Alignment", ICML 2024 (arXiv 2310.08204; v1 titled FLAVA). Official code: G-JWLee/FLAVA_code,
``models/cl_methods/flava.py``. Per step:

1. the unmasked clip's modality-specific codes go (no grad) through the backbone's shared blocks to the
   AVM; the AVM is trained with BCE on matched / deranged pairs, the deranged pairs re-encoded jointly by
   the shared blocks as the official code does (the backbone gets no gradient from it);
2. importances ``I_v``, ``I_a`` from the AVM's temperature softmax; candidates = top-``keep_ratio``;
   importance-weighted query summaries ``qbar_a``, ``qbar_v``;
3. with an empty memory: keep the top-``keep_ratio`` tokens of each modality; otherwise compare each sample
   with ONE replayed sample's stored summary, prune by Bernoulli(``p``), and select video by weighted
   sampling without replacement and audio by time chunks (:mod:`lifelong.strategies.flava_selection`);
   replayed clips reuse their stored ``I`` and a fresh Bernoulli draw from their stored ``p``;
4. MAE + InfoNCE on current + replayed clips, masking inside the selection, plus ``alpha`` x MSE between the
   replayed clips' current and stored embeddings (DER++ anchor);
5. the incoming clips enter a reservoir memory with ``qbar``, ``p``, ``I`` and embeddings.

Deliberate differences from the official code: the deranged half is the second half of the batch with videos
rolled by one (the official code draws the mismatched positions and a derangement at random; batches are
shuffled, so the pairs are as random); pruned-last weighted sampling uses an exponential race
instead of ``torch.multinomial`` over zero weights (undefined); under DDP the memory is sharded (each rank
keeps ``memory_size / world_size`` clips of its own share of the data) and InfoNCE negatives are not gathered
across ranks. The AVM warm-up on a separate pool with the backbone frozen is the ``init`` stage
(:mod:`lifelong.init_stage`, strategy ``avm_warmup``); without it the AVM trains from the first step of the
stream and ``avm_warmup_steps`` keeps plain top-k selection until it has seen that many steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lifelong.data.types import StreamInfo
from lifelong.models.avm import AVMatching, importance
from lifelong.strategies import flava_selection as sel
from lifelong.strategies.av_replay import AVBatch, AVReplay, embedding_mse, loss_parts
from lifelong.strategies.base import StepOutput, register_strategy

if TYPE_CHECKING:
    from lifelong.models.cavmae import CAVMAE


def modality_codes(model: CAVMAE, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality-specific codes ``(audio, video)`` of every token of the unmasked clip, without gradient."""
    with torch.no_grad():
        codes = model.full_codes(video, audio)
    return codes["a"], codes["v"]


def joint_pass(model: CAVMAE, a_codes: torch.Tensor, v_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio and video codes encoded together by the shared blocks (joint pass), without gradient."""
    with torch.no_grad():
        joint = model.shared_pass(torch.cat([a_codes, v_codes], 1), "av")
    n_a = a_codes.shape[1]
    return joint[:, :n_a].detach(), joint[:, n_a:].detach()


def joint_tokens(model: CAVMAE, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone tokens of the matched clips fed to the AVM for importances: full codes through the shared blocks."""
    return joint_pass(model, *modality_codes(model, video, audio))


def avm_loss(
    avm: AVMatching,
    model: CAVMAE,
    a_codes: torch.Tensor,
    v_codes: torch.Tensor,
    matched: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """BCE of the AVM on matched pairs (first half) and mismatched pairs (second half, videos rolled by one).

    As in the official code (``learn_multimodal_relationship``), the mismatched pairs are encoded jointly as
    pairs: the modality codes of an audio and another clip's video go through the shared blocks together, so
    the negatives' tokens never saw their own partner (rolling already jointly-encoded tokens would leave each
    token with a trace of its true partner, a shortcut for the matching head). ``matched``: the joint tokens of
    the matched clips when the caller already has them (their first half is used, not encoded again).
    """
    half = len(a_codes) // 2
    if len(a_codes) - half < 2:
        return a_codes.new_zeros(())
    a_pos, v_pos = matched if matched is not None else joint_pass(model, a_codes[:half], v_codes[:half])
    a_neg, v_neg = joint_pass(model, a_codes[half:], v_codes[half:].roll(1, 0))
    a, v = torch.cat([a_pos[:half], a_neg]), torch.cat([v_pos[:half], v_neg])
    target = torch.cat([a.new_ones(half), a.new_zeros(len(a) - half)])
    return F.binary_cross_entropy_with_logits(avm(a, v), target)


@register_strategy("flava")
class FLAVA(AVReplay):
    """FLAVA (see the module docstring).

    Args:
        memory_size: reservoir slots (2000 on VGGSound in the paper).
        replay_batch_size: replayed clips per step (``None``: the incoming batch size).
        alpha: weight of the embedding MSE anchor (0.5).
        temperature: softmax temperature of the importances (0.4 VGGSound, 0.1 AudioSet).
        keep_ratio: share of tokens kept per modality (0.5).
        audio_chunk: time steps per audio chunk (4 in the paper = 0.64 s).
        avm_weight: weight of the AVM's BCE loss (1.0).
        avm_heads: AVM attention heads (``None``: the backbone's).
        avm_warmup_steps: steps of plain top-k selection before pruning/sampling may start.
        seed: seed of the memory's generator.

    """

    def __init__(
        self,
        memory_size: int = 200,
        replay_batch_size: int | None = None,
        alpha: float = 0.5,
        temperature: float = 0.4,
        keep_ratio: float = 0.5,
        audio_chunk: int = 2,
        avm_weight: float = 1.0,
        avm_heads: int | None = None,
        avm_warmup_steps: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, alpha, seed)
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"strategy.params.keep_ratio={keep_ratio} must be in (0, 1]")
        if temperature <= 0 or audio_chunk < 1:
            raise ValueError("strategy.params.temperature must be > 0 and audio_chunk >= 1")
        self.temperature, self.keep_ratio, self.audio_chunk = temperature, keep_ratio, audio_chunk
        self.avm_weight, self.avm_heads, self.avm_warmup_steps = avm_weight, avm_heads, avm_warmup_steps
        self.avm: AVMatching | None = None
        self.steps: torch.Tensor
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def setup(self, model: CAVMAE, stream_info: StreamInfo) -> None:  # type: ignore[override]
        """Build the AVM at the backbone's width."""
        super().setup(model, stream_info)
        c = model.config
        if c.n_time % self.audio_chunk:
            raise ValueError(
                f"strategy.params.audio_chunk={self.audio_chunk} must divide the audio time patches {c.n_time}"
            )
        if self.avm is None:
            self.avm = AVMatching(c.embed_dim, self.avm_heads or c.num_heads)

    @torch.no_grad()
    def scores(self, a: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Importances, candidates, query summaries, logits and keys of the current clips."""
        assert self.avm is not None
        heads = self.avm.project(a, v)
        av, va = self.avm.logits(heads)
        i_v, i_a = importance(av, self.temperature), importance(va, self.temperature)
        c_v = sel.topk_mask(i_v, self.keep(v.shape[1]))
        c_a = sel.topk_mask(i_a, self.keep(a.shape[1]))
        return {
            "I_v": i_v,
            "I_a": i_a,
            "C_v": c_v,
            "C_a": c_a,
            "qbar_a": sel.query_summary(i_a, heads["q_a"], c_a),
            "qbar_v": sel.query_summary(i_v, heads["q_v"], c_v),
            "av": av,
            "va": va,
            "k_v": heads["k_v"],
            "k_a": heads["k_a"],
        }

    def keep(self, length: int) -> int:
        """Tokens kept out of ``length``."""
        return max(2, round(self.keep_ratio * length))

    def select(self, model: CAVMAE, i_v: torch.Tensor, i_a: torch.Tensor, p_v: torch.Tensor, p_a: torch.Tensor):
        """Sampled selections ``{"v", "a"}`` after Bernoulli pruning with probabilities ``p_v``, ``p_a``."""
        c = model.config
        prune_v, prune_a = torch.bernoulli(p_v).bool(), torch.bernoulli(p_a).bool()
        return {
            "v": sel.select_video(i_v, prune_v, self.keep(c.n_video)),
            "a": sel.select_audio(i_a, prune_a, c.n_time, c.n_freq, self.audio_chunk, self.keep(c.n_audio)),
        }

    def training_loss(self, model: CAVMAE, batch: AVBatch) -> StepOutput:  # type: ignore[override]
        """AVM BCE + MAE/InfoNCE on selected tokens of current and replayed clips + DER anchor."""
        video, audio = batch["video"], batch["audio"]
        n = len(video)
        a_codes, v_codes = modality_codes(model, video, audio)
        a_tok, v_tok = joint_pass(model, a_codes, v_codes)
        assert self.avm is not None  # built in setup
        bce = avm_loss(self.avm, model, a_codes, v_codes, matched=(a_tok, v_tok))
        s = self.scores(a_tok, v_tok)
        replay = self.memory.sample(self.replay_batch_size or n, device=video.device)
        if not replay or int(self.steps) < self.avm_warmup_steps:
            p_v, p_a = torch.zeros_like(s["I_v"]), torch.zeros_like(s["I_a"])
            selection = {"v": s["I_v"].topk(self.keep(v_tok.shape[1]), 1).indices}
            selection["a"] = s["I_a"].topk(self.keep(a_tok.shape[1]), 1).indices
            replay = {}
        else:
            past = self.memory.sample(n, device=video.device)
            pick = torch.randint(len(past["qbar_a"]), (n,), generator=self.memory.generator).to(video.device)
            p_v = sel.prune_probability(s["av"], s["I_a"], s["C_a"], s["C_v"], s["k_v"], past["qbar_a"][pick])
            p_a = sel.prune_probability(s["va"], s["I_v"], s["C_v"], s["C_a"], s["k_a"], past["qbar_v"][pick])
            selection = self.select(model, s["I_v"], s["I_a"], p_v, p_a)
            old = self.select(model, replay["I_v"], replay["I_a"], replay["p_v"], replay["p_a"])
            selection = {m: torch.cat([selection[m], old[m]]) for m in ("v", "a")}
            video, audio = torch.cat([video, replay["video"]]), torch.cat([audio, replay["audio"]])
        out = model.pretrain_forward(video, audio, selection)
        loss, parts = out["loss"] + self.avm_weight * bce, loss_parts(out)
        parts["avm"] = bce.detach()
        if replay and self.alpha > 0:
            der = embedding_mse(out, replay, n)
            loss = loss + self.alpha * der
            parts["der"] = der.detach()
        store = {k: s[k] for k in ("qbar_a", "qbar_v", "I_v", "I_a")}
        store.update({"p_v": p_v, "p_a": p_a, "emb_a": out["emb_a"][:n].detach(), "emb_v": out["emb_v"][:n].detach()})
        store.update({"sel_v": selection["v"][:n], "sel_a": selection["a"][:n]})
        return StepOutput(loss, parts, extras=store)

    @torch.no_grad()
    def after_training_step(self, model: CAVMAE, batch: AVBatch, output: StepOutput) -> None:  # type: ignore[override]
        """Offer the incoming clips with their summaries, probabilities, importances and embeddings."""
        self.steps += 1
        keys = ("qbar_a", "qbar_v", "p_v", "p_a", "I_v", "I_a", "emb_a", "emb_v")
        self.memory.add(video=batch["video"], audio=batch["audio"], **{k: output.extras[k].float() for k in keys})
