"""The sizes of the CAV-MAE-style audio-video model (:mod:`lifelong.models.cavmae`), without importing timm."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CAVMAEConfig:
    """Sizes of the model; :meth:`tiny` trains on a CPU, :meth:`base` is the paper's ViT-B layout."""

    embed_dim: int = 64
    num_heads: int = 4
    modality_depth: int = 2
    shared_depth: int = 1
    decoder_dim: int = 32
    decoder_depth: int = 1
    decoder_heads: int = 4
    mlp_ratio: float = 4.0
    frames: int = 2
    image_size: int = 32
    patch_size: int = 8
    audio_frames: int = 64
    mel_bins: int = 32
    visible_ratio: float = 0.2
    contrastive_weight: float = 0.1
    tau: float = 0.05

    def __post_init__(self) -> None:
        p = self.patch_size
        for key in ("image_size", "audio_frames", "mel_bins"):
            if getattr(self, key) % p:
                raise ValueError(f"model.{key}={getattr(self, key)} must be a multiple of patch_size={p}")
        if self.embed_dim % self.num_heads or self.decoder_dim % self.decoder_heads:
            raise ValueError("model.embed_dim / decoder_dim must be divisible by num_heads / decoder_heads")
        if not 0 < self.visible_ratio < 0.5:
            raise ValueError(f"model.visible_ratio={self.visible_ratio} must be in (0, 0.5)")

    @classmethod
    def tiny(cls, **overrides: object) -> CAVMAEConfig:
        """64-d, 4 heads, 2+1 blocks, 2 frames of 32^2 and a 64x32 fbank with 8x8 patches (32 + 32 tokens)."""
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def base(cls, **overrides: object) -> CAVMAEConfig:
        """The paper's layout: ViT-B, 10+2 blocks, 4 frames of 224^2, 1024x128 fbank, 16x16 patches, 8-block decoder."""
        values: dict[str, object] = {
            "embed_dim": 768,
            "num_heads": 12,
            "modality_depth": 10,
            "shared_depth": 2,
            "decoder_dim": 512,
            "decoder_depth": 8,
            "decoder_heads": 16,
            "frames": 4,
            "image_size": 224,
            "patch_size": 16,
            "audio_frames": 1024,
            "mel_bins": 128,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    @property
    def n_time(self) -> int:
        """Audio time patches."""
        return self.audio_frames // self.patch_size

    @property
    def n_freq(self) -> int:
        """Audio frequency patches per time step."""
        return self.mel_bins // self.patch_size

    @property
    def n_video(self) -> int:
        """Video tokens ``F * g * g``."""
        return self.frames * self.grid**2

    @property
    def n_audio(self) -> int:
        """Audio tokens ``n_time * n_freq``."""
        return self.n_time * self.n_freq
