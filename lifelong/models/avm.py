"""FLAVA's audio-video matching (AVM) module: cross-attention that says which patches of a pair align.

Lee et al., FLAVA/STELLA (arXiv 2310.08204), ``models/avm_module.py`` + ``models/heads.py``: per-modality
LayerNorm, six bias-free projections (q, k, v per modality), two cross-attentions (audio queries over video
keys, video queries over audio keys), each output mean-pooled, concatenated, a tanh pooler and a linear
layer to one matched/mismatched logit. Its attention logits give the patch importances (see
:func:`importance`). Deliberate difference: none in structure; sizes follow the backbone's width.
"""

from __future__ import annotations

import torch
from torch import nn


class AVMatching(nn.Module):
    """The AVM module.

    Args:
        dim: token width (the backbone's ``embed_dim``).
        num_heads: attention heads (12 in the paper).

    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AVM dim={dim} must be divisible by num_heads={num_heads}")
        self.heads, self.head_dim = num_heads, dim // num_heads
        self.norm = nn.ModuleDict({"a": nn.LayerNorm(dim), "v": nn.LayerNorm(dim)})
        self.proj = nn.ModuleDict({f"{k}_{m}": nn.Linear(dim, dim, bias=False) for k in "qkv" for m in "av"})
        self.pooler = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.Tanh())
        self.classifier = nn.Linear(2 * dim, 1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, dh)

    def project(self, a: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-head q/k/v of both modalities, ``(B, H, N, dh)``, keyed ``q_a``, ``k_v`` ...."""
        normed = {"a": self.norm["a"](a), "v": self.norm["v"](v)}
        return {name: self._split(layer(normed[name[-1]])) for name, layer in self.proj.items()}

    def logits(self, heads: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled attention logits: audio->video ``(B, H, Na, Nv)`` and video->audio ``(B, H, Nv, Na)``."""
        scale = self.head_dim**-0.5
        return heads["q_a"] @ heads["k_v"].transpose(-1, -2) * scale, heads["q_v"] @ heads["k_a"].transpose(
            -1, -2
        ) * scale

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Matched-pair logit ``(B,)`` for audio tokens ``(B, Na, D)`` and video tokens ``(B, Nv, D)``."""
        heads = self.project(a, v)
        av, va = self.logits(heads)
        out_a = (av.softmax(-1) @ heads["v_v"]).transpose(1, 2).flatten(2).mean(1)  # audio queries read video
        out_v = (va.softmax(-1) @ heads["v_a"]).transpose(1, 2).flatten(2).mean(1)
        return self.classifier(self.pooler(torch.cat([out_a, out_v], -1))).squeeze(-1)


def importance(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Key importance ``(B, Nk)``: softmax over keys of ``logits / T`` ``(B, H, Nq, Nk)``, mean over heads and queries.

    Each row sums to 1. ``I_v`` comes from the audio->video logits, ``I_a`` from video->audio.
    """
    return (logits / temperature).softmax(-1).mean(dim=(1, 2))
