"""Linear probes of the frozen backbone: does it keep old knowledge (stability) and learn new (plasticity).

Kim & Han, "On the Stability-Plasticity Dilemma of Class-Incremental Learning" (CVPR 2023): after
each step, freeze the feature extractor, train a fresh linear classifier on features of training
data of *all* classes (future ones included) and measure its test accuracy overall, on the first
step's classes and on the later classes. A flat first-classes curve means stable features; a rising
later-classes curve means the backbone still learns. It uses future data, so it is an offline
evaluation tool, never part of a method.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.analysis.base import Analysis, evaluation_mode, register_analysis
from lifelong.data.types import Stream
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Strategy

KEY = "analysis.linear_probe"
SUMMARY = ("acc", "acc_first", "acc_later")


def per_class_subsample(y: torch.Tensor, per_class: int | None, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of at most ``per_class`` samples of each class of ``y`` (all of them for ``None``).

    Example:
        >>> per_class_subsample(torch.tensor([0, 1, 0, 1, 0]), 2, torch.Generator().manual_seed(0)).tolist()
        [0, 1, 3, 4]

    """
    if per_class is None:
        return torch.arange(len(y))
    chosen = []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.long)


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float, max_iter: int
) -> nn.Linear:
    """Multinomial logistic regression on fixed features by full-batch L-BFGS from zero weights.

    The objective (mean cross-entropy + ``l2 / 2 · ||W||²``) is convex and the start is fixed, so
    the result is deterministic for given features (no seed involved).

    Args:
        features: ``(n, d)`` probe-training features (standardise them first).
        labels: ``(n,)`` class ids in ``0..num_classes-1``.
        num_classes: outputs of the classifier.
        l2: weight decay on ``W`` (not on the bias).
        max_iter: L-BFGS iterations.

    Returns:
        The fitted ``nn.Linear(d, num_classes)`` on the features' device.

    """
    probe = nn.Linear(features.shape[1], num_classes).to(features.device, features.dtype)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(
        probe.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(probe(features), labels) + 0.5 * l2 * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return probe.requires_grad_(False)


@register_analysis("linear_probe")
class LinearProbe(Analysis):
    """Linear-probe accuracy of the frozen backbone at every evaluation point (Kim & Han, CVPR 2023).

    Probe-training split: ``train_per_class`` samples of each class of each training experience
    (seeded; the same at every point), i.e. all classes of the stream. Test set: the whole test
    stream (or ``test_per_class`` per class of each test experience). Features are extracted once
    per evaluation point and cached for the fit and the test; they are standardised with the
    probe-training mean and std, then a linear classifier is fitted by full-batch L-BFGS.

    Metrics: ``acc`` (all test samples), ``acc_first`` (the first experience's test samples: its
    classes in a class-incremental stream), ``acc_later`` (the other experiences'; absent for a
    one-experience stream). Artifacts: ``linear_probe.csv`` (those plus the accuracy per test
    experience) and ``linear_probe.png`` (the curves).

    Deviations from the paper: the probe is trained on a per-class subsample of the training data
    (the paper uses the full training set; ``train_per_class: null`` does too) by L-BFGS on fixed
    features instead of SGD with augmentation.

    Args:
        train_per_class: probe-training samples per class of each experience; ``null`` = all.
        test_per_class: test samples per class of each test experience; ``null`` = all.
        l2: weight decay of the probe.
        max_iter: L-BFGS iterations.
        batch_size: samples per forward pass when extracting features.
        seed: seed of the subsamples.

    """

    history: torch.Tensor
    evaluated: torch.Tensor

    def __init__(
        self,
        train_per_class: int | None = 100,
        test_per_class: int | None = None,
        l2: float = 1e-4,
        max_iter: int = 100,
        batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{KEY}.{key}={value!r} is not allowed; use null (all samples) or an integer >= 1")
        for key, value in (("max_iter", max_iter), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{KEY}.{key}={value!r} is not allowed; use an integer >= 1")
        if isinstance(l2, bool) or not isinstance(l2, int | float) or l2 < 0:
            raise ValueError(f"{KEY}.l2={l2!r} is not allowed; use a number >= 0")
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class
        self.l2 = float(l2)
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.seed = seed
        self.register_buffer("history", torch.zeros(0, dtype=torch.float64))  # (1 + T, 3 + T)
        self.register_buffer("evaluated", torch.zeros((), dtype=torch.long))  # points measured so far
        self._train: tuple[torch.Tensor, torch.Tensor] | None = None
        self._test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, y, experience index
        self._num_classes = 0

    def setup(self, stream: Stream, device: torch.device) -> None:
        """Draw the probe-training split and the test set (seeded); size the history for the stream."""
        super().setup(stream, device)
        generator = torch.Generator().manual_seed(self.seed)
        xs, ys = [], []
        for experience in stream.train:
            data = experience.dataset
            index = per_class_subsample(data.y, self.train_per_class, generator)
            xs.append(data.x[index])
            ys.append(data.y[index])
        self._train = (torch.cat(xs), torch.cat(ys))
        xs, ys, groups = [], [], []
        for j, experience in enumerate(stream.test):
            data = experience.dataset
            index = per_class_subsample(data.y, self.test_per_class, generator)
            xs.append(data.x[index])
            ys.append(data.y[index])
            groups.append(torch.full((len(index),), j, dtype=torch.long))
        self._test = (torch.cat(xs), torch.cat(ys), torch.cat(groups))
        self._num_classes = stream.info.num_classes
        n = len(stream)
        if self.history.shape != (n + 1, 3 + n):
            self.history = torch.full((n + 1, 3 + n), math.nan, dtype=torch.float64)

    def features(self, model: ContinualClassifier, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of ``x`` (eval mode, no gradients), in batches, on ``self.device``."""
        with evaluation_mode(model, self.device):
            return torch.cat([model.features(xb.to(self.device)).float() for xb in x.split(self.batch_size)])

    def evaluate(self, after: int, model: ContinualClassifier, strategy: Strategy, stream: Stream) -> dict[str, float]:
        """Fit a probe on the frozen features and score it on the test set."""
        assert self._train is not None, "setup() first"
        assert self._test is not None, "setup() first"
        train_x, train_y = self._train
        test_x, test_y, group = self._test
        train_f = self.features(model, train_x)  # cached for every L-BFGS iteration
        test_f = self.features(model, test_x)
        mean, std = train_f.mean(dim=0), train_f.std(dim=0).clamp_min(1e-6)
        labels = train_y.to(self.device)
        probe = fit_linear_probe((train_f - mean) / std, labels, self._num_classes, self.l2, self.max_iter)
        with torch.no_grad():
            correct = (probe((test_f - mean) / std).argmax(dim=1).cpu() == test_y).double()
        n_exp = self.history.shape[1] - 3
        per_exp = [_mean(correct[group == j]) for j in range(n_exp)]
        row = [_mean(correct), _mean(correct[group == 0]), _mean(correct[group > 0]), *per_exp]
        self.history[after + 1] = torch.tensor(row, dtype=torch.float64)
        self.evaluated.fill_(after + 2)
        return {k: v for k, v in zip(SUMMARY, row, strict=False) if not math.isnan(v)}

    def write_artifacts(self, directory: Path) -> list[Path]:
        """``linear_probe.csv`` (``after_exp,acc,acc_first,acc_later,exp0,...``) and ``linear_probe.png``."""
        from lifelong.plots import curves_plot

        points = int(self.evaluated)
        if points == 0:
            return []
        labels = ["init"] + [str(i) for i in range(points - 1)]
        n_exp = self.history.shape[1] - 3
        csv_path = Path(directory) / "linear_probe.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["after_exp", *SUMMARY, *(f"exp{j}" for j in range(n_exp))])
            for label, values in zip(labels, self.history[:points].tolist(), strict=True):
                writer.writerow([label] + ["" if math.isnan(v) else repr(v) for v in values])
        names = {"acc": "all classes", "acc_first": "first experience", "acc_later": "later experiences"}
        series = {names[k]: self.history[:points, i].tolist() for i, k in enumerate(SUMMARY)}
        png = curves_plot(
            series,
            Path(directory) / "linear_probe.png",
            x_labels=[label if label == "init" else f"after {label}" for label in labels],
            title="Linear probe of the frozen backbone",
            ylabel="probe test accuracy",
        )
        return [csv_path, png]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "history" in state_dict:  # sized by the stream
            self.history = torch.empty_like(state_dict[prefix + "history"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else math.nan
