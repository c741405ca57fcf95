"""Layer-wise CKA between a reference model and the model after each experience (representation drift).

Kim & Han, "On the Stability-Plasticity Dilemma of Class-Incremental Learning" (CVPR 2023): compare
every layer of the backbone after each step with the same layer before the stream (or after the
first step) by minibatch linear CKA (Nguyen et al. 2021) on a fixed probe set. CKA near 1 means the
layer kept its representation (stable); a falling CKA shows where the network drifted.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.analysis.base import Analysis, evaluation_mode, register_analysis
from lifelong.data.types import Stream
from lifelong.errors import ConfigError
from lifelong.metrics.cka import MinibatchCKA, gram_linear, hsic_unbiased
from lifelong.models.backbones import MLP
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.resnet import ReducedResNet18
from lifelong.strategies.base import Strategy

REFERENCES = ("init", "first")
KEY = "analysis.cka"
_MAX_LISTED = 200  # module names listed in an error message


def default_layers(model: ContinualClassifier) -> list[str]:
    """Each stage of the backbone, as module names of ``model`` (``backbone.<...>``).

    ``reduced_resnet18``: the stem and the four stages; ``mlp``: every hidden layer's ReLU; a timm
    model: the modules of its ``feature_info`` (the stages timm's ``features_only`` would return);
    anything else: the backbone's direct children.
    """
    backbone = model.backbone
    if isinstance(backbone, ReducedResNet18):
        names = ["stem"] + [f"stages.{i}" for i in range(len(backbone.stages))]
    elif isinstance(backbone, MLP):
        names = [name for name, module in backbone.named_modules() if isinstance(module, nn.ReLU)]
    elif feature_info := getattr(backbone, "feature_info", None):  # timm: a list of dicts with "module"
        available = dict(backbone.named_modules())
        names = [info["module"] for info in feature_info if info.get("module") in available]
    else:
        names = [name for name, _ in backbone.named_children()]
    if not names:
        raise ConfigError(f"{KEY}.layers: found no stages in the backbone; list module names explicitly")
    return [f"backbone.{name}" for name in names]


def check_layers(model: nn.Module, layers: Sequence[str], key: str) -> None:
    """Raise ``ConfigError`` naming ``key`` unless every name in ``layers`` is a module of ``model``."""
    available = [name for name, _ in model.named_modules() if name]
    missing = [name for name in layers if name not in set(available)]
    if missing:
        shown = ", ".join(available[:_MAX_LISTED])
        more = f" ... ({len(available) - _MAX_LISTED} more)" if len(available) > _MAX_LISTED else ""
        raise ConfigError(f"{key}: {missing} not modules of the model; available module names: {shown}{more}")


@contextmanager
def capture_grams(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep the linear kernel of each named module's latest output.

    The kernel is taken inside the hook, before a later in-place operation could change the output;
    of a tuple output, the first element is used; a module called several times per forward pass
    keeps its last call.
    """
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):  # noqa: ANN202
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs[name] = gram_linear(output[0] if isinstance(output, tuple | list) else output)

        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@register_analysis("cka")
class LayerCKA(Analysis):
    """Minibatch linear CKA per layer between a reference model and the model at every evaluation point.

    The probe set is a fixed, seeded subsample of the whole test stream (all experiences), split
    into equal minibatches of ``batch_size``. Instead of the reference model's activations, which
    are large for convolutional layers, the analysis keeps its per-batch kernels ``K_b = X_b X_bᵀ``
    (``batch_size²`` floats per batch and layer, in the ``reference_grams`` buffer): linear CKA needs
    nothing else. Metrics: ``cka/<layer>`` at every point from the reference on (1 at the reference
    itself); artifacts: ``cka.csv`` (rows = evaluation points, columns = layers) and ``cka.png``
    (layer x evaluation point heatmap).

    Deviations from Kim & Han's code (numpee/CKA.pytorch): one pass over the probe set instead of
    10 shuffled passes (the probe set is fixed and the estimator is unbiased per batch); the probe
    set's remainder after the last full batch is dropped so every batch has the same size.

    Args:
        layers: module names of the model (``backbone.stages.0``, ``head``, ...); default: each stage
            of the backbone (see ``default_layers``).
        reference: ``init`` (the model before the stream) or ``first`` (after the first experience).
        probe_size: samples of the test stream in the probe set (all of them if fewer).
        batch_size: samples per minibatch (>= 4, as the unbiased HSIC needs).
        seed: seed of the probe subsample.

    """

    reference_grams: torch.Tensor
    reference_hsic: torch.Tensor
    history: torch.Tensor

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        reference: str = "init",
        probe_size: int = 1000,
        batch_size: int = 250,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if reference not in REFERENCES:
            raise ValueError(f"{KEY}.reference={reference!r} is not allowed; use one of: {', '.join(REFERENCES)}")
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)):
            raise ValueError(f"{KEY}.layers={layers!r} must be a list of module names, e.g. [backbone.stages.0]")
        if layers is not None and not layers:
            raise ValueError(f"{KEY}.layers is empty; leave it out for the default (each stage of the backbone)")
        for key, value in (("probe_size", probe_size), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ValueError(f"{KEY}.{key}={value!r} is not allowed; use an integer >= 4")
        self.reference = reference
        self.probe_size = probe_size
        self.batch_size = batch_size
        self.seed = seed
        self.layers: list[str] = list(layers) if layers is not None else []
        self.evaluated = 0  # evaluation points measured so far (row "init" included)
        self.register_buffer("reference_grams", torch.zeros(0, dtype=torch.float64))  # (layers, batches, m, m)
        self.register_buffer("reference_hsic", torch.zeros(0, dtype=torch.float64))  # (layers, batches)
        self.register_buffer("history", torch.zeros(0, dtype=torch.float64))  # (1 + experiences, layers)
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, stream: Stream, device: torch.device) -> None:
        """Draw the probe set: ``probe_size`` test samples (seeded), cut to a whole number of batches."""
        super().setup(stream, device)
        x = torch.cat([e.dataset.x for e in stream.test])
        t = torch.cat([e.dataset.t for e in stream.test])
        n = min(self.probe_size, len(x))
        if n < 4:
            raise ConfigError(f"{KEY}: the test stream has {len(x)} samples; CKA needs at least 4")
        size = min(self.batch_size, n)
        used = (n // size) * size
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[:used].sort().values
        self._probe = (x[order], t[order])
        self._n_points = len(stream) + 1
        self._batch = size

    def evaluate(self, after: int, model: ContinualClassifier, strategy: Strategy, stream: Stream) -> dict[str, float]:
        """Kernels of every layer on the probe set; CKA against the reference from the reference point on."""
        if not self.layers:
            self.layers = default_layers(model)
        check_layers(model, self.layers, f"{KEY}.layers")
        if self.history.numel() == 0:
            self.history = torch.full((self._n_points, len(self.layers)), math.nan, dtype=torch.float64)
        self.evaluated = after + 2
        reference_point = -1 if self.reference == "init" else 0
        if after < reference_point:
            return {}  # reference "first", before the first experience: nothing to compare yet
        grams = self.kernels(model)  # (layers, batches, m, m), CPU float64
        if after == reference_point:
            self.reference_grams = grams
            self.reference_hsic = torch.stack(
                [torch.stack([hsic_unbiased(k, k) for k in layer]) for layer in grams]
            ).reshape(grams.shape[:2])
        metrics = {}
        for i, name in enumerate(self.layers):
            cka = MinibatchCKA()
            for b in range(grams.shape[1]):
                cka.update_grams(self.reference_grams[i, b], grams[i, b], hsic_kk=self.reference_hsic[i, b])
            metrics[name] = cka.compute()
            self.history[after + 1, i] = metrics[name]
        return metrics

    def kernels(self, model: ContinualClassifier) -> torch.Tensor:
        """``(layers, batches, m, m)`` linear kernels of each layer's output on each probe batch."""
        assert self._probe is not None, "setup() first"
        x, t = self._probe
        per_layer: list[list[torch.Tensor]] = [[] for _ in self.layers]
        with evaluation_mode(model, self.device), capture_grams(model, self.layers) as outputs:
            for xb, tb in zip(x.split(self._batch), t.split(self._batch), strict=True):
                model(xb.to(self.device), tb.to(self.device))
                for i, name in enumerate(self.layers):
                    if name not in outputs:
                        raise ConfigError(f"{KEY}.layers: module {name!r} was not called in the model's forward")
                    per_layer[i].append(outputs.pop(name).cpu())
        return torch.stack([torch.stack(kernels) for kernels in per_layer])

    def rows(self) -> list[tuple[str, list[float]]]:
        """(evaluation point label, CKA per layer) for each point measured so far."""
        labels = ["init"] + [str(i) for i in range(self.history.shape[0] - 1)]
        return [(labels[p], self.history[p].tolist()) for p in range(self.evaluated)]

    def write_artifacts(self, directory: Path) -> list[Path]:
        """``cka.csv`` (header ``after_exp,<layer>,...``; NaN as an empty cell) and the ``cka.png`` heatmap."""
        from lifelong.plots import labelled_heatmap

        rows = self.rows()
        if not rows:
            return []
        csv_path = Path(directory) / "cka.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["after_exp", *self.layers])
            for label, values in rows:
                writer.writerow([label] + ["" if math.isnan(v) else repr(v) for v in values])
        table = [[values[i] for _, values in rows] for i in range(len(self.layers))]  # layer x point
        png = labelled_heatmap(
            table,
            Path(directory) / "cka.png",
            title=f"Linear CKA vs the {'initial' if self.reference == 'init' else 'first-experience'} model",
            row_labels=self.layers,
            col_labels=[label if label == "init" else f"after {label}" for label, _ in rows],
            xlabel="evaluation point",
            ylabel="layer",
        )
        return [csv_path, png]

    def get_extra_state(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "evaluated": self.evaluated}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.layers = list(state["layers"])
        self.evaluated = int(state["evaluated"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The buffers' shapes depend on the model and the stream: take them from the checkpoint.
        for name in ("reference_grams", "reference_hsic", "history"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
