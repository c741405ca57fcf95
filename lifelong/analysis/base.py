"""The Analysis contract: extra measurements the loop takes at every evaluation point.

The outer loop evaluates the test stream before training (``after=-1``) and after every
experience. At each of those points every analysis enabled in the config's ``analysis:`` section
is called with the current model; it returns scalar metrics (logged to MLflow as
``<analysis>/<metric>`` at ``step = max(after, 0)``) and writes its own artifacts (CSV, PNG) into
the run directory. Examples: compatibility matrices of embedding models, layer-wise CKA, linear
probes.

An analysis is an ``nn.Module`` so that what it keeps between experiences (e.g. gallery features
extracted by old models, which must never be recomputed) lands in checkpoints through
``state_dict``. It sees the model but never trains it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from lifelong.data.types import Stream
from lifelong.models.classifier import ContinualClassifier
from lifelong.registry import Registry
from lifelong.strategies.base import Strategy

ANALYSES: Registry[type[Analysis]] = Registry("analysis")
register_analysis = ANALYSES.register


class Analysis(nn.Module):
    """Base class; subclasses override ``evaluate`` and usually ``write_artifacts``.

    Attributes:
        device: where the analysis runs the model (set by ``setup``).

    """

    def __init__(self) -> None:
        super().__init__()
        self.device = torch.device("cpu")

    def setup(self, stream: Stream, device: torch.device) -> None:
        """Called once before the stream starts (before the ``after=-1`` evaluation)."""
        self.device = device

    def evaluate(self, after: int, model: ContinualClassifier, strategy: Strategy, stream: Stream) -> dict[str, float]:
        """Measure the model after experience ``after`` (-1: before training); returns scalar metrics."""
        raise NotImplementedError

    def write_artifacts(self, directory: Path) -> list[Path]:
        """Write what was measured so far into ``directory``; returns the files written."""
        return []


@contextlib.contextmanager
def evaluation_mode(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` in eval mode without gradients; restored (device and mode) afterwards."""
    was_training = model.training
    parameter = next(model.parameters(), None)
    home = parameter.device if parameter is not None else torch.device("cpu")
    model.to(device).eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.to(home).train(was_training)
