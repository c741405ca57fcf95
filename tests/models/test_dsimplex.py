"""The d-Simplex fixed classifier: geometry, frozen prototypes, errors, retrieval features."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.models import build_model
from lifelong.models.dsimplex import DSimplexHead, check_simplex, dsimplex_prototypes, retrieval_features


@pytest.mark.parametrize("k", [10, 100, 1024])
def test_geometry_unit_rows_equal_angles_centred(k):
    p = dsimplex_prototypes(k).double()
    assert p.shape == (k, k - 1)
    assert torch.allclose(p.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    gram = p @ p.T
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (k - 1)), atol=1e-6)
    assert p.sum(dim=0).abs().max() < 1e-4  # centred at the origin
    check_simplex(p)


def test_wider_dim_pads_with_zeros_and_narrower_is_an_error():
    p = dsimplex_prototypes(4, dim=5)
    assert p.shape == (4, 5)
    assert torch.equal(p[:, 3:], torch.zeros(4, 2))
    check_simplex(p)
    with pytest.raises(ValueError, match=r"d >= K - 1 = 3"):
        dsimplex_prototypes(4, dim=2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        dsimplex_prototypes(1)


def test_violated_geometry_is_detected():
    p = dsimplex_prototypes(5)
    p[0] = p[1]
    with pytest.raises(ValueError, match="violate the geometry"):
        check_simplex(p)


def test_prototypes_are_a_frozen_buffer_never_optimised(digits_stream):
    info = digits_stream.info
    model = build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})
    head = model.head
    assert isinstance(head, DSimplexHead)
    assert [n for n, _ in head.named_parameters()] == ["projection.weight"]  # no bias, no logit scale
    assert head.projection.weight.shape == (9, 16)
    assert "head.prototypes" in model.state_dict()
    before = head.prototypes.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, weight_decay=0.5)
    x, y, _ = digits_stream.train[0].dataset.__getitems__(list(range(8)))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert torch.equal(head.prototypes, before)


def test_logits_are_dot_products_with_the_prototypes():
    head = DSimplexHead(2, 3)
    with torch.no_grad():
        head.projection.weight.copy_(torch.eye(2))
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    expected = features @ dsimplex_prototypes(3).T
    assert torch.allclose(head(features), expected)
    assert torch.allclose(head.embed(features), features)


def test_labels_beyond_the_reserved_classes_are_rejected(digits_stream):
    info = digits_stream.info
    head = DSimplexHead(4, 10)
    head.check_classes([0, 9])
    with pytest.raises(ValueError, match=r"\[10, 12\] exceed the d-Simplex head's K=10"):
        head.check_classes([3, 10, 12])
    with pytest.raises(ConfigError, match="classes=5"):
        build_model("mlp", "dsimplex", info.num_classes, info.input_shape, head_kwargs={"classes": 5})
    wide = build_model("mlp", "dsimplex", info.num_classes, info.input_shape, head_kwargs={"classes": 1024})
    assert wide.num_classes == 1024
    assert wide.head.dim == 1023


def test_loading_other_prototypes_is_an_error():
    head = DSimplexHead(3, 4)
    state = head.state_dict()
    state["prototypes"] = torch.randn(4, 3)
    with pytest.raises(ValueError, match="violate the geometry"):
        head.load_state_dict(state)
    state["prototypes"] = dsimplex_prototypes(5)
    with pytest.raises(ValueError, match="same K and d"):
        head.load_state_dict(state)


def test_retrieval_features_rule(digits_stream):
    info = digits_stream.info
    x = digits_stream.train[0].dataset.x[:3]
    simplex = build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})
    linear = build_model("mlp", "linear", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})
    assert torch.allclose(retrieval_features(simplex, x), simplex.head.embed(simplex.features(x)))
    assert retrieval_features(simplex, x).shape == (3, 9)
    assert torch.allclose(retrieval_features(linear, x), linear.features(x))
