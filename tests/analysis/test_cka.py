"""The layer-wise CKA analysis: default layers, invariances through real forward hooks, reference points, state."""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch

from lifelong.analysis import ANALYSES
from lifelong.analysis.cka import LayerCKA, default_layers
from lifelong.errors import ConfigError
from lifelong.metrics.cka import MinibatchCKA
from lifelong.models import build_model


@pytest.fixture
def mlp(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "linear", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32, 32]})


def make(stream, **kwargs) -> LayerCKA:
    analysis = LayerCKA(**{"probe_size": 120, "batch_size": 40, **kwargs})
    analysis.setup(stream, torch.device("cpu"))
    return analysis


def test_registered_and_default_layers_are_the_backbone_stages(mlp):
    assert ANALYSES.get("cka") is LayerCKA
    assert default_layers(mlp) == ["backbone.net.2", "backbone.net.4"]  # the two hidden ReLUs
    resnet = build_model("reduced_resnet18", "linear", 10, (1, 8, 8), backbone_kwargs={"nf": 4})
    assert default_layers(resnet) == ["backbone.stem"] + [f"backbone.stages.{i}" for i in range(4)]


def test_unknown_layer_is_a_config_error_listing_the_modules(mlp, digits_stream):
    analysis = make(digits_stream, layers=["backbone.net.9"])
    with pytest.raises(ConfigError, match=r"analysis\.cka\.layers.*backbone\.net\.9.*available.*backbone\.net\.3"):
        analysis.evaluate(-1, mlp, None, digits_stream)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference": "last"}, r"analysis\.cka\.reference='last'.*init, first"),
        ({"batch_size": 3}, r"analysis\.cka\.batch_size=3"),
        ({"layers": "backbone.net.2"}, r"must be a list"),
        ({"layers": []}, r"is empty"),
    ],
)
def test_bad_parameters_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerCKA(**kwargs)


def test_probe_set_is_fixed_seeded_and_whole_batches(digits_stream):
    a, b = make(digits_stream, probe_size=130), make(digits_stream, probe_size=130)
    assert torch.equal(a._probe[0], b._probe[0])
    assert len(a._probe[0]) == 120  # 130 cut to 3 batches of 40
    assert not torch.equal(a._probe[0], make(digits_stream, probe_size=130, seed=1)._probe[0])


def test_unchanged_layers_stay_at_one_and_changed_layers_drop(mlp, digits_stream):
    analysis = make(digits_stream)
    assert analysis.evaluate(-1, mlp, None, digits_stream) == pytest.approx(
        {"backbone.net.2": 1.0, "backbone.net.4": 1.0}
    )
    with torch.no_grad():
        mlp.backbone.net[1].weight.mul_(3.0)  # isotropic scaling of the first ReLU's input and output
        mlp.backbone.net[1].bias.mul_(3.0)
        torch.nn.init.normal_(mlp.backbone.net[3].weight)  # a new second layer
    after = analysis.evaluate(0, mlp, None, digits_stream)
    assert after["backbone.net.2"] == pytest.approx(1.0, abs=1e-9)  # CKA is invariant to isotropic scaling
    assert after["backbone.net.4"] < 0.95


def test_matches_minibatch_cka_on_the_activations(mlp, digits_stream):
    """Keeping the reference kernels gives the same CKA as the estimator fed the raw activations."""
    analysis = make(digits_stream, layers=["backbone.net.2"])
    reference = copy.deepcopy(mlp)
    analysis.evaluate(-1, mlp, None, digits_stream)
    with torch.no_grad():
        mlp.backbone.net[1].weight.add_(0.3 * torch.randn_like(mlp.backbone.net[1].weight))
    got = analysis.evaluate(0, mlp, None, digits_stream)["backbone.net.2"]
    expected = MinibatchCKA()
    with torch.no_grad():
        for xb in analysis._probe[0].split(40):
            expected.update(reference.backbone.net[:3](xb), mlp.backbone.net[:3](xb))
    assert expected.batches == 3
    assert got == pytest.approx(expected.compute(), rel=1e-10)
    assert got < 1.0


def test_reference_first_starts_after_the_first_experience(mlp, digits_stream):
    analysis = make(digits_stream, reference="first")
    assert analysis.evaluate(-1, mlp, None, digits_stream) == {}
    with torch.no_grad():
        mlp.backbone.net[3].weight.mul_(-1.0)  # training on the first experience changed the model
    assert analysis.evaluate(0, mlp, None, digits_stream)["backbone.net.4"] == pytest.approx(1.0)
    assert math.isnan(analysis.history[0, 0])


def test_state_dict_restores_the_reference(mlp, digits_stream):
    analysis = make(digits_stream)
    analysis.evaluate(-1, mlp, None, digits_stream)
    with torch.no_grad():
        torch.nn.init.normal_(mlp.backbone.net[3].weight)
    first = analysis.evaluate(0, mlp, None, digits_stream)
    restored = make(digits_stream)
    restored.load_state_dict(analysis.state_dict())
    assert restored.layers == analysis.layers
    assert torch.equal(restored.reference_grams, analysis.reference_grams)
    assert restored.evaluate(0, mlp, None, digits_stream) == first


def test_artifacts(mlp, digits_stream, tmp_path):
    analysis = make(digits_stream, reference="first")
    assert analysis.write_artifacts(tmp_path) == []  # nothing measured yet
    analysis.evaluate(-1, mlp, None, digits_stream)
    analysis.evaluate(0, mlp, None, digits_stream)
    paths = analysis.write_artifacts(tmp_path)
    assert [p.name for p in paths] == ["cka.csv", "cka.png"]
    rows = list(csv.reader((tmp_path / "cka.csv").open()))
    assert rows[0] == ["after_exp", "backbone.net.2", "backbone.net.4"]
    assert [r[0] for r in rows[1:]] == ["init", "0"]
    assert rows[1][1:] == ["", ""]  # before the reference point: not measured
    assert float(rows[2][1]) == pytest.approx(1.0)
    assert (tmp_path / "cka.png").read_bytes()[:4] == b"\x89PNG"


def test_timm_backbone_stages_through_hooks(digits_stream):
    """timm models: the stages of ``feature_info`` (in-place ReLUs included) are hooked and measured."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = build_model("timm:resnet18", "linear", 10, digits_stream.info.input_shape)
    analysis = make(digits_stream)
    first = analysis.evaluate(-1, model, None, digits_stream)
    assert list(first) == ["backbone.act1", *(f"backbone.layer{i}" for i in range(1, 5))]
    assert first == pytest.approx(dict.fromkeys(first, 1.0))
    with torch.no_grad():
        for parameter in model.backbone.layer4.parameters():
            parameter.add_(torch.randn_like(parameter))
    after = analysis.evaluate(0, model, None, digits_stream)
    assert after["backbone.layer3"] == pytest.approx(1.0)
    assert after["backbone.layer4"] < 0.99
