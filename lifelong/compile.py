"""``trainer.compile``: ``torch.compile`` of the classifier's backbone, in place.

The backbone is where a classifier spends its time, and every strategy reaches it through ``model(x, t)`` or
``model.features(x)``; compiling it in place (``nn.Module.compile``) keeps the module, its parameters and its
``state_dict`` keys as they are, so checkpoints, teachers (deep copies), model replacement, DDP and Lightning's
precision see the same model. The step's shapes are static (a fixed incoming and replay batch), so after the
first steps (empty memory, a partial last batch) no new graph is compiled. An audio-video model is not compiled:
a warning says so and the run goes on eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import nn


def compile_backbone(model: nn.Module, backend: str | Callable[..., Any] = "inductor") -> bool:
    """Compile ``model.backbone`` in place with ``backend``; ``False`` (and a warning) when the model has none."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        warnings.warn(
            f"trainer.compile: {type(model).__name__} has no classifier backbone to compile; it runs uncompiled "
            "(set trainer.compile=false to silence this)",
            stacklevel=2,
        )
        return False
    backbone.compile(backend=backend)
    return True
