"""Model replacement: swap the weights of a checkpoint into the model at a scheduled experience.

Used through ``replace_at`` by ``er`` and its subclasses (``cores_replay``, ``cl2r``, ``hoc``) and by
``cores``. :func:`parse_replacements` validates the user's schedule,
:func:`load_replacement` swaps the weights in, keeping the model's fixed d-Simplex classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lifelong.models.classifier import ContinualClassifier


def parse_replacements(replace_at: Mapping[Any, Any] | None, key: str = "strategy.params.replace_at") -> dict[int, str]:
    """``{experience index: checkpoint path}`` from the user's mapping; keys may be ints or digit strings.

    Raises:
        ValueError: not a mapping, a key that is not an experience index >= 0, or a file that does not exist.

    """
    if replace_at is None:
        return {}
    if not isinstance(replace_at, Mapping):
        raise ValueError(f"{key}={replace_at!r} must map experience indices to checkpoint files, e.g. {{2: ckpt.pt}}")
    out: dict[int, str] = {}
    for raw, path in replace_at.items():
        try:
            index = int(raw)
        except (TypeError, ValueError):
            index = -1
        if isinstance(raw, bool) or index < 0 or str(raw).strip() != str(index):
            raise ValueError(f"{key} key {raw!r} must be an experience index >= 0")
        if not Path(str(path)).is_file():
            raise ValueError(f"{key}.{index}={str(path)!r} is not a file; give a checkpoint of the model's weights")
        out[index] = str(path)
    return out


def model_state_from_checkpoint(obj: Any) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: a model ``state_dict``, or ``{"state_dict"|"model": ...}``.

    Keys of a whole-module checkpoint (``model.backbone...``, ``strategy...``) are reduced to the model's.
    """
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("a replacement checkpoint must hold a model state_dict (names -> tensors)")
    if any(k.startswith("model.") for k in obj):
        obj = {k[len("model.") :]: v for k, v in obj.items() if k.startswith("model.")}
    return dict(obj)


@torch.no_grad()
def load_replacement(model: ContinualClassifier, path: str | Path) -> None:
    """Swap the weights stored at ``path`` into ``model``, keeping the model's fixed d-Simplex classifier.

    The checkpoint's ``head.prototypes`` (if any) are ignored, as the official HOC code drops the
    foreign ``fc2``. Every other tensor of the model must be in the checkpoint with the same shape.

    Raises:
        ValueError: missing, unexpected or mis-shaped tensors (the message lists them).

    """
    incoming = model_state_from_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    fixed = {"head.prototypes"}
    incoming = {k: v for k, v in incoming.items() if k not in fixed}
    missing = sorted(set(own) - fixed - set(incoming))
    unexpected = sorted(set(incoming) - set(own))
    shapes = sorted(k for k in set(incoming) & set(own) if incoming[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"replacement checkpoint {str(path)!r} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, different shapes {shapes[:5]}"
        )
    model.load_state_dict({**own, **incoming})
