"""A CAV-MAE-style audio-video masked autoencoder (the backbone of FLAVA), built from timm ViT blocks.

Gong et al., "Contrastive Audio-Visual Masked Autoencoder", ICLR 2023, in the layout FLAVA uses
(Lee et al., "STELLA/FLAVA: continual audio-video pre-training", arXiv 2310.08204, ``models/cav.py``):

- video: ``F`` frames cut into ``p x p`` patches, tokens ordered frame-major then row-major;
  audio: a ``(T, M)`` fbank cut into ``p x p`` patches, tokens time-major (``n_freq`` tokens per time step);
- per-modality patch projection + learnable positional and modality embeddings;
- ``modality_depth`` modality-specific timm ``Block``s, then ``shared_depth`` shared blocks with three
  LayerNorm sets (joint pass, audio-only pass, video-only pass);
- a decoder (shared weights) run **separately** per modality on the visible + target positions only;
- loss: MAE on per-patch-normalised pixels of the target patches + ``contrastive_weight`` x symmetric
  InfoNCE (temperature ``tau``) on mean-pooled unimodal embeddings of the masked input.

Masking happens inside a *selection* of token indices per sample (all tokens by default): the selection
is shuffled, its first ``int(visible_ratio * L)`` tokens are the encoder input and the rest of the
selection are the reconstruction targets; tokens outside the selection are neither (FLAVA §2).

Deliberate differences from the official code: patches are embedded with a ``Linear`` on flattened patches
(equivalent to the stride-``p`` convolution); positional embeddings are trunc-normal initialised instead
of sin-cos; there is one positional embedding per modality instead of an extra "inter" embedding before
the shared blocks; negatives are not gathered across devices.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from lifelong.models.cavmae_config import CAVMAEConfig


class SharedBlock(Block):
    """A timm ``Block`` whose LayerNorms are chosen per pass: joint ("av"), audio-only ("a") or video-only ("v")."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias=True)
        self.norm1_a, self.norm2_a = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm1_v, self.norm2_v = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, modality: str = "av") -> torch.Tensor:  # type: ignore[override]
        """Apply the block with the LayerNorms of ``modality``."""
        n1, n2 = {"av": (self.norm1, self.norm2), "a": (self.norm1_a, self.norm2_a), "v": (self.norm1_v, self.norm2_v)}[
            modality
        ]
        x = x + self.drop_path1(self.ls1(self.attn(n1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(n2(x))))


def patch_normalised(patches: torch.Tensor) -> torch.Tensor:
    """Per-patch normalisation of MAE targets (``norm_pix_loss``)."""
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6).sqrt()


def info_nce(a: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised embeddings ``(B, D)``; pair i is the positive of row i."""
    logits = F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).T / tau
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for ``x`` ``(B, L, ...)`` and ``index`` ``(B, K)``."""
    return torch.gather(x, 1, index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


class CAVMAE(nn.Module):
    """The two-stream encoder + per-modality decoder (see the module docstring)."""

    def __init__(self, config: CAVMAEConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or CAVMAEConfig()
        d, p = c.embed_dim, c.patch_size
        self.proj = nn.ModuleDict({"v": nn.Linear(3 * p * p, d), "a": nn.Linear(p * p, d)})
        self.pos = nn.ParameterDict(
            {"v": nn.Parameter(torch.zeros(1, c.n_video, d)), "a": nn.Parameter(torch.zeros(1, c.n_audio, d))}
        )
        self.modality = nn.ParameterDict(
            {"v": nn.Parameter(torch.zeros(1, 1, d)), "a": nn.Parameter(torch.zeros(1, 1, d))}
        )
        self.blocks = nn.ModuleDict(
            {
                m: nn.ModuleList(Block(d, c.num_heads, c.mlp_ratio, qkv_bias=True) for _ in range(c.modality_depth))
                for m in ("a", "v")
            }
        )
        self.shared = nn.ModuleList(SharedBlock(d, c.num_heads, c.mlp_ratio) for _ in range(c.shared_depth))
        self.norm = nn.ModuleDict({"av": nn.LayerNorm(d), "a": nn.LayerNorm(d), "v": nn.LayerNorm(d)})
        dd = c.decoder_dim
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos = nn.ParameterDict(
            {"v": nn.Parameter(torch.zeros(1, c.n_video, dd)), "a": nn.Parameter(torch.zeros(1, c.n_audio, dd))}
        )
        self.decoder_modality = nn.ParameterDict(
            {"v": nn.Parameter(torch.zeros(1, 1, dd)), "a": nn.Parameter(torch.zeros(1, 1, dd))}
        )
        self.decoder = nn.ModuleList(
            Block(dd, c.decoder_heads, c.mlp_ratio, qkv_bias=True) for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd)
        self.head = nn.ModuleDict({"v": nn.Linear(dd, 3 * p * p), "a": nn.Linear(dd, p * p)})
        for param in [*self.pos.values(), *self.modality.values(), *self.decoder_pos.values(), self.mask_token]:
            nn.init.trunc_normal_(param, std=0.02)
        for param in self.decoder_modality.values():
            nn.init.trunc_normal_(param, std=0.02)

    def hparams(self) -> dict:
        """The config as a plain dict (for logging)."""
        return asdict(self.config)

    # ------------------------------------------------------------------ patches and tokens

    def patchify_video(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, F, 3, H, W)`` -> ``(B, F*g*g, 3*p*p)``, frame-major then row-major."""
        b, f, ch, _, _ = video.shape
        p, g = self.config.patch_size, self.config.grid
        x = video.reshape(b, f, ch, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, f * g * g, ch * p * p)

    def patchify_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, T, M)`` -> ``(B, n_time*n_freq, p*p)``, time-major (token ``t * n_freq + f``)."""
        b = audio.shape[0]
        p, nt, nf = self.config.patch_size, self.config.n_time, self.config.n_freq
        x = audio.reshape(b, nt, p, nf, p).permute(0, 1, 3, 2, 4)
        return x.reshape(b, nt * nf, p * p)

    def patchify(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both modalities' patch tensors, keyed "v" and "a"."""
        return {"v": self.patchify_video(video), "a": self.patchify_audio(audio)}

    def embed(self, patches: torch.Tensor, index: torch.Tensor, m: str) -> torch.Tensor:
        """Tokens of the patches at original grid positions ``index`` ``(B, K)`` of modality ``m``."""
        pos = gather_tokens(self.pos[m].expand(len(index), -1, -1), index)
        return self.proj[m](gather_tokens(patches, index)) + pos + self.modality[m]

    def encode_modality(self, tokens: torch.Tensor, m: str) -> torch.Tensor:
        """The modality-specific blocks."""
        for block in self.blocks[m]:  # type: ignore[attr-defined]
            tokens = block(tokens)
        return tokens

    def shared_pass(self, tokens: torch.Tensor, m: str) -> torch.Tensor:
        """The shared blocks with the LayerNorms of pass ``m`` ("av", "a" or "v"), before the final norm."""
        for block in self.shared:
            tokens = block(tokens, m)
        return tokens

    def unimodal_embedding(self, codes: torch.Tensor, m: str) -> torch.Tensor:
        """Mean-pooled, normed output of the shared blocks run on one modality alone ``(B, D)``."""
        return self.norm[m](self.shared_pass(codes, m)).mean(1)

    def full_codes(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Modality-specific codes of every token of the unmasked clip, keyed "v"/"a" (``(B, L, D)``)."""
        patches = self.patchify(video, audio)
        out = {}
        for m, x in patches.items():
            index = torch.arange(x.shape[1], device=x.device).expand(len(x), -1)
            out[m] = self.encode_modality(self.embed(x, index, m), m)
        return out

    @torch.no_grad()
    def embed_clip(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieval embeddings ``(emb_a, emb_v)`` of the unmasked clip (FLAVA ``retrieval.py``)."""
        codes = self.full_codes(video, audio)
        return self.unimodal_embedding(codes["a"], "a"), self.unimodal_embedding(codes["v"], "v")

    # ------------------------------------------------------------------ masked pretraining

    def split_selection(self, selection: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffle each row of ``selection`` ``(B, K)``; the first ``int(visible_ratio*length)`` are visible."""
        n_vis = min(int(self.config.visible_ratio * length), selection.shape[1] - 1)
        order = torch.rand(selection.shape, device=selection.device).argsort(1)
        shuffled = torch.gather(selection, 1, order)
        return shuffled[:, :n_vis], shuffled[:, n_vis:]

    def decode(self, encoded: torch.Tensor, visible: torch.Tensor, target: torch.Tensor, m: str) -> torch.Tensor:
        """Predict the patches at ``target`` from the encoded visible tokens (visible + target positions only)."""
        x = self.decoder_embed(encoded)
        masks = self.mask_token.expand(len(target), target.shape[1], -1)
        pos = self.decoder_pos[m].expand(len(target), -1, -1)
        x = (
            torch.cat([x + gather_tokens(pos, visible), masks + gather_tokens(pos, target)], 1)
            + self.decoder_modality[m]
        )
        for block in self.decoder:
            x = block(x)
        return self.head[m](self.decoder_norm(x[:, visible.shape[1] :]))

    def pretrain_forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        selection: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """MAE + InfoNCE on a batch, masking inside ``selection`` (``{"v": (B, Kv), "a": (B, Ka)}``; all if None).

        Returns:
            ``loss``, ``mae_a``, ``mae_v``, ``nce``, the unimodal embeddings ``emb_a``/``emb_v`` of the
            masked input, and the ``visible_*``/``target_*`` index tensors used.

        """
        patches = self.patchify(video, audio)
        sizes = {"v": self.config.n_video, "a": self.config.n_audio}
        out: dict[str, torch.Tensor] = {}
        codes = {}
        for m, x in patches.items():
            sel = None if selection is None else selection.get(m)
            if sel is None:
                sel = torch.arange(sizes[m], device=x.device).expand(len(x), -1)
            visible, target = self.split_selection(sel, sizes[m])
            out[f"visible_{m}"], out[f"target_{m}"] = visible, target
            codes[m] = self.encode_modality(self.embed(x, visible, m), m)
        n_a = codes["a"].shape[1]
        joint = self.norm["av"](self.shared_pass(torch.cat([codes["a"], codes["v"]], 1), "av"))
        for m, enc in (("a", joint[:, :n_a]), ("v", joint[:, n_a:])):
            pred = self.decode(enc, out[f"visible_{m}"], out[f"target_{m}"], m)
            goal = patch_normalised(gather_tokens(patches[m], out[f"target_{m}"]))
            out[f"mae_{m}"] = ((pred - goal) ** 2).mean()
            out[f"emb_{m}"] = self.unimodal_embedding(codes[m], m)
        out["nce"] = info_nce(out["emb_a"], out["emb_v"], self.config.tau)
        out["loss"] = out["mae_a"] + out["mae_v"] + self.config.contrastive_weight * out["nce"]
        return out
