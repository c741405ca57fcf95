"""Feature extractors by name: the built-in ``mlp`` and ``reduced_resnet18``, or any timm model as ``timm:<name>``.

A backbone maps ``(B, *input_shape)`` inputs to ``(B, out_dim)`` features and carries ``out_dim`` as an
int attribute. Built-in backbones are registered in ``BACKBONES``; a factory takes the input shape
positionally and its options as keywords, so ``check_kwargs`` can list the options a config may set.

timm is imported only when a ``timm:`` backbone is built or validated: importing it costs about 3 s.
Weights are never downloaded; a timm backbone starts from random initialization.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from lifelong.errors import ConfigError, did_you_mean
from lifelong.models.resnet import ReducedResNet18
from lifelong.registry import Registry, check_kwargs

BackboneFactory = Callable[..., nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("model.backbone")
TIMM_PREFIX = "timm:"
TIMM_ENTRY = "timm:<any timm model>"
KEY = "model.backbone"
KWARGS_KEY = "model.backbone_kwargs"


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden layer; the features are the last hidden layer.

    Args:
        in_dim: number of input values per sample (the product of the input shape).
        hidden: width of each hidden layer; empty means the flattened input is the feature.
        dropout: dropout probability after each ReLU (0 disables it).

    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` inputs to ``(B, out_dim)`` features."""
        return self.net(x)


@BACKBONES.register("mlp")
def mlp(input_shape: tuple[int, ...], /, hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> MLP:
    """Multi-layer perceptron on the flattened input (ReLU, optional dropout)."""
    if isinstance(hidden, str) or not isinstance(hidden, Iterable):
        raise ConfigError(f"{KWARGS_KEY}.hidden={hidden!r} must be a list of layer widths, e.g. [256, 256]")
    sizes = [_positive_int(h, f"{KWARGS_KEY}.hidden") for h in hidden]
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{KWARGS_KEY}.dropout={dropout!r} must be in [0, 1)")
    return MLP(math.prod(input_shape), sizes, float(dropout))


@BACKBONES.register("reduced_resnet18")
def reduced_resnet18(input_shape: tuple[int, ...], /, nf: int = 20) -> ReducedResNet18:
    """Reduced ResNet-18 of GEM/ER/PCR: BasicBlocks [2,2,2,2], widths nf..8nf (160-d features for nf=20)."""
    _require_image_shape(input_shape, "reduced_resnet18")
    return ReducedResNet18(in_channels=input_shape[0], nf=_positive_int(nf, f"{KWARGS_KEY}.nf"))


def build_backbone(name: str, input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """Build the backbone ``name`` for inputs of ``input_shape`` (without the batch dimension).

    Args:
        name: a registered name (see ``backbone_names()``) or ``timm:<model_name>``.
        input_shape: shape of one sample, e.g. ``(1, 28, 28)``.
        **kwargs: options of the backbone (``model.backbone_kwargs``); for timm, keywords of ``timm.create_model``.

    Returns:
        A module mapping ``(B, *input_shape)`` to ``(B, out_dim)``, with ``out_dim`` set.

    Raises:
        ConfigError: the name is unknown, an option is not accepted, or the model cannot take ``input_shape``.

    """
    validate_backbone(name)
    input_shape = tuple(int(s) for s in input_shape)
    if name.startswith(TIMM_PREFIX):
        return _build_timm(name.removeprefix(TIMM_PREFIX), input_shape, kwargs)
    factory = BACKBONES.get(name)
    check_kwargs(factory, kwargs, KWARGS_KEY)
    return factory(input_shape, **kwargs)


def backbone_names() -> list[str]:
    """List the registered backbones plus the ``timm:<any timm model>`` entry, as ``lifelong list`` shows them."""
    return [*BACKBONES.names(), TIMM_ENTRY]


def validate_backbone(name: str) -> None:
    """Raise ``ConfigError`` (with a did-you-mean) unless ``name`` names a backbone that can be built."""
    if name in BACKBONES:
        return
    if name.startswith(TIMM_PREFIX):
        _check_timm_name(name.removeprefix(TIMM_PREFIX))
        return
    if _import_timm().is_model(name):  # a timm name without its prefix
        hint = f" (did you mean {TIMM_PREFIX + name!r}?)"
    else:
        hint = did_you_mean(name, BACKBONES.names())
    allowed = ", ".join(backbone_names())
    raise ConfigError(f"{KEY}={name!r} is not a known backbone{hint}; choose one of: {allowed}")


def _import_timm() -> Any:
    import timm

    return timm


def _check_timm_name(model_name: str) -> None:
    timm = _import_timm()
    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(TIMM_PREFIX + c) for c in close)}?)" if close else ""
    raise ConfigError(
        f"{KEY}={TIMM_PREFIX + model_name!r} is not a timm model{hint}; "
        "`python -c 'import timm; print(timm.list_models())'` lists them"
    )


def _build_timm(model_name: str, input_shape: tuple[int, ...], kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` without a classifier, its ``out_dim`` measured by one forward pass."""
    _require_image_shape(input_shape, TIMM_PREFIX + model_name)
    kwargs = dict(kwargs)
    if kwargs.pop("pretrained", False):
        raise ConfigError(
            f"{KWARGS_KEY}.pretrained=True for {TIMM_PREFIX + model_name!r}: lifelong never downloads weights "
            "(it runs offline); drop `pretrained` or load a local file with `checkpoint_path`"
        )
    for reserved in ("num_classes", "in_chans"):
        if reserved in kwargs:
            raise ConfigError(
                f"{KWARGS_KEY}.{reserved} is set by lifelong (num_classes=0: the head is separate; "
                "in_chans: from the input shape); drop it"
            )
    try:
        model = _import_timm().create_model(
            model_name, pretrained=False, num_classes=0, in_chans=input_shape[0], **kwargs
        )
    except TypeError as err:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        key = f"{KWARGS_KEY}.{bad.group(1)}" if bad else KWARGS_KEY
        raise ConfigError(f"{key} is not accepted by timm model {model_name!r}: {err}") from None
    model.out_dim = _probe_out_dim(model, input_shape, TIMM_PREFIX + model_name)
    return model


def _probe_out_dim(model: nn.Module, input_shape: tuple[int, ...], name: str) -> int:
    """Run one zero input through ``model`` (eval mode) and return its feature width.

    timm's ``num_features`` is not always the pooled output's width (e.g. MobileNetV3's extra head
    layer), and some models accept only certain input sizes; one forward pass settles both.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError, AssertionError, TypeError) as err:
        raise ConfigError(
            f"{KEY}={name!r} cannot take inputs of shape {input_shape}: {err} (some models need {KWARGS_KEY}.img_size)"
        ) from None
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ConfigError(
            f"{KEY}={name!r} gives features of shape {tuple(out.shape[1:])} per sample, not a vector; "
            f"keep its global pooling (drop {KWARGS_KEY}.global_pool)"
        )
    return int(out.shape[1])


def _require_image_shape(input_shape: tuple[int, ...], name: str) -> None:
    if len(input_shape) != 3:
        raise ConfigError(f"{KEY}={name!r} needs (C, H, W) inputs, got input_shape={input_shape}")


def _positive_int(value: Any, key: str) -> int:
    """``value`` as an int, or ``ConfigError`` naming ``key`` if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ConfigError(f"{key}: {value!r} is not a positive integer")
    return int(value)
