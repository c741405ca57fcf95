"""Audio-video models built by name: ``model.backbone: cavmae_tiny`` (or ``cavmae_base``) + ``backbone_kwargs``.

An audio-video model is the whole network (a CAV-MAE-style masked autoencoder has no classification head),
so ``model.head`` / ``model.multi_head`` do not apply to it. ``backbone_kwargs`` override fields of
:class:`~lifelong.models.cavmae.CAVMAEConfig` (e.g. ``contrastive_weight``, ``visible_ratio``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from lifelong.errors import ConfigError, did_you_mean
from lifelong.models.cavmae_config import CAVMAEConfig
from lifelong.registry import Registry

AV_MODELS: Registry[Callable[..., CAVMAEConfig]] = Registry("model.backbone")
AV_MODELS.register("cavmae_tiny")(CAVMAEConfig.tiny)
AV_MODELS.register("cavmae_base")(CAVMAEConfig.base)

CLASSIFIER = "classifier"
AUDIO_VIDEO = "audio_video"


def model_family(backbone: str) -> str:
    """``"audio_video"`` for a registered audio-video model, else ``"classifier"`` (a backbone + head)."""
    return AUDIO_VIDEO if backbone in AV_MODELS else CLASSIFIER


def av_model_config(name: str, overrides: dict[str, Any] | None = None) -> CAVMAEConfig:
    """The config of audio-video model ``name`` with ``overrides`` (``model.backbone_kwargs``) applied.

    Raises:
        ConfigError: an override names no field of the config, or a value is out of range.

    """
    fields = [f.name for f in dataclasses.fields(CAVMAEConfig)]
    for key in overrides or {}:
        if key not in fields:
            raise ConfigError(
                f"model.backbone_kwargs.{key} is not an option of {name}{did_you_mean(key, fields)}; "
                f"allowed: {', '.join(fields)}"
            )
    try:
        return AV_MODELS.get(name)(**(overrides or {}))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_av_model(name: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised audio-video model ``name`` (see :func:`av_model_config`)."""
    from lifelong.models.cavmae import CAVMAE  # imports timm: only when a model is built

    return CAVMAE(av_model_config(name, overrides))
