"""The linear-probe analysis: probe split, the L-BFGS probe, first/later accuracies, artifacts and state."""

from __future__ import annotations

import csv

import pytest
import torch

from lifelong.analysis import ANALYSES
from lifelong.analysis.linear_probe import LinearProbe, fit_linear_probe, per_class_subsample
from lifelong.models import build_model


@pytest.fixture
def mlp(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "linear", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [64]})


def make(stream, **kwargs) -> LinearProbe:
    analysis = LinearProbe(**{"train_per_class": 20, "max_iter": 50, **kwargs})
    analysis.setup(stream, torch.device("cpu"))
    return analysis


def test_per_class_subsample_takes_at_most_k_of_every_class():
    y = torch.tensor([0] * 5 + [1] * 2 + [2] * 7)
    index = per_class_subsample(y, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(y[index]).tolist() == [3, 2, 3]
    assert index.tolist() == sorted(set(index.tolist()))
    assert per_class_subsample(y, None, torch.Generator()).tolist() == list(range(14))


def test_probe_split_covers_every_class_of_the_stream(digits_stream):
    analysis = make(digits_stream)
    assert ANALYSES.get("linear_probe") is LinearProbe
    _, y = analysis._train
    assert torch.bincount(y, minlength=10).tolist() == [20] * 10  # future classes included
    _, test_y, group = analysis._test
    assert len(test_y) == sum(len(e.dataset) for e in digits_stream.test)
    for j, experience in enumerate(digits_stream.test):
        assert set(test_y[group == j].tolist()) == set(experience.classes)


def test_probe_fits_separable_data_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.randn(3, 5, generator=g)
    y = torch.arange(3).repeat_interleave(30)
    x = centres[y] + 0.3 * torch.randn(90, 5, generator=g)
    first = fit_linear_probe(x, y, 4, l2=1e-4, max_iter=50)  # one class never seen: must not break it
    second = fit_linear_probe(x, y, 4, l2=1e-4, max_iter=50)
    assert (first(x).argmax(1) == y).all()
    assert torch.equal(first.weight, second.weight)
    assert not first.weight.requires_grad


def test_accuracy_follows_the_features(mlp, digits_stream):
    """Informative features give a good probe; constant features leave it at chance."""
    analysis = make(digits_stream)
    good = analysis.evaluate(-1, mlp, None, digits_stream)
    assert good["acc"] > 0.8
    with torch.no_grad():
        for parameter in mlp.backbone.parameters():
            parameter.zero_()  # every feature is ReLU(0) = 0
    dead = analysis.evaluate(0, mlp, None, digits_stream)
    assert dead["acc"] < 0.2


def test_first_and_later_split_the_test_set(mlp, digits_stream):
    analysis = make(digits_stream)
    metrics = analysis.evaluate(-1, mlp, None, digits_stream)
    _, _, group = analysis._test
    n_first, n_later = int((group == 0).sum()), int((group > 0).sum())
    weighted = (n_first * metrics["acc_first"] + n_later * metrics["acc_later"]) / (n_first + n_later)
    assert metrics["acc"] == pytest.approx(weighted)
    assert analysis.history[0, 3].item() == pytest.approx(metrics["acc_first"])  # exp0 column
    assert analysis.evaluate(-1, mlp, None, digits_stream) == metrics  # deterministic


def test_bad_parameters_name_the_key():
    with pytest.raises(ValueError, match=r"analysis\.linear_probe\.train_per_class=0"):
        LinearProbe(train_per_class=0)
    with pytest.raises(ValueError, match=r"analysis\.linear_probe\.l2"):
        LinearProbe(l2=-1.0)


def test_artifacts_and_state(mlp, digits_stream, tmp_path):
    analysis = make(digits_stream)
    assert analysis.write_artifacts(tmp_path) == []
    analysis.evaluate(-1, mlp, None, digits_stream)
    analysis.evaluate(0, mlp, None, digits_stream)
    paths = analysis.write_artifacts(tmp_path)
    assert [p.name for p in paths] == ["linear_probe.csv", "linear_probe.png"]
    rows = list(csv.reader((tmp_path / "linear_probe.csv").open()))
    assert rows[0] == ["after_exp", "acc", "acc_first", "acc_later", "exp0", "exp1", "exp2", "exp3", "exp4"]
    assert [r[0] for r in rows[1:]] == ["init", "0"]
    restored = make(digits_stream)
    restored.load_state_dict(analysis.state_dict())
    assert int(restored.evaluated) == 2
    assert torch.allclose(restored.history[:2], analysis.history[:2])
