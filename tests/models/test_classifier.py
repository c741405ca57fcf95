"""build_model and ContinualClassifier: gradients reach every parameter, multi-head routing, clear config errors."""

from __future__ import annotations

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.models import BACKBONES, ContinualClassifier, build_model, mask_value

BACKBONE_CASES = [*BACKBONES.names(), "timm:test_vit"]  # timm's tiny test model: fast on CPU


@pytest.mark.parametrize(("backbone", "head"), [*((name, "linear") for name in BACKBONE_CASES), ("mlp", "cosine")])
def test_every_parameter_gets_a_gradient(backbone, head):
    torch.manual_seed(0)
    model = build_model(backbone, head, num_classes=5, input_shape=(3, 32, 32))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 4])
    logits = model(x)
    assert logits.shape == (4, 5)
    assert model.num_classes == 5
    torch.nn.functional.cross_entropy(logits, y).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_features_and_logits_compose_to_forward():
    model = build_model("mlp", "linear", num_classes=3, input_shape=(1, 8, 8), backbone_kwargs={"hidden": [16]})
    model.eval()
    x = torch.randn(2, 1, 8, 8)
    features = model.features(x)
    assert features.shape == (2, 16)
    assert model.feature_dim == 16
    assert torch.equal(model.logits_from_features(features), model(x))
    assert not model.multi_head
    with pytest.raises(ValueError, match="multi-head"):
        model.set_task_classes(0, [0])


def unset_multi_head_model() -> ContinualClassifier:
    return build_model(
        "mlp",
        "linear",
        num_classes=4,
        input_shape=(1, 8, 8),
        multi_head=True,
        n_tasks=2,
        backbone_kwargs={"hidden": [16]},
    )


def multi_head_model() -> ContinualClassifier:
    model = unset_multi_head_model()
    model.set_task_classes(0, [0, 1])
    model.set_task_classes(1, [2, 3])
    return model


def test_multi_head_model_masks_per_task_and_trains_all_heads_in_a_mixed_batch():
    model = multi_head_model()
    assert model.multi_head
    assert model.num_classes == 4
    x, tasks = torch.randn(4, 1, 8, 8), torch.tensor([1, 0, 0, 1])
    logits = model(x, tasks)
    fill = mask_value(logits.dtype)
    assert (logits[tasks == 0][:, 2:] == fill).all()
    assert (logits[tasks == 1][:, :2] == fill).all()
    assert (logits[tasks == 0][:, :2] > fill).all()
    assert (logits[tasks == 1][:, 2:] > fill).all()
    assert logits.argmax(1).tolist()[0] in (2, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([2, 0, 1, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="task label"):
        model(x)


def test_task_classes_default_to_all_and_are_checkpointed():
    model = unset_multi_head_model()
    assert model.task_classes.all()  # a task never set may predict every class
    trained = multi_head_model()
    model.load_state_dict(trained.state_dict())
    assert torch.equal(model.task_classes, trained.task_classes)
    with pytest.raises(ValueError, match="task label 2"):
        model.set_task_classes(2, [0])
    with pytest.raises(ValueError, match="subset"):
        model.set_task_classes(0, [4])


def test_single_head_ignores_task_labels_and_has_no_mask():
    model = build_model("mlp", "cosine", num_classes=3, input_shape=(1, 8, 8), head_kwargs={"scale": 5.0})
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x, torch.tensor([0, 3])), model(x))
    assert "task_classes" not in model.state_dict()
    assert model(x).abs().max() <= 5.0 + 1e-5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone_kwargs": {"widths": [8]}}, r"model\.backbone_kwargs\.widths .*allowed: hidden, dropout"),
        ({"head_kwargs": {"scales": 2.0}}, r"model\.head_kwargs\.scales .*did you mean 'scale'"),
        ({"backbone": "mpl"}, r"model\.backbone='mpl'.*did you mean 'mlp'"),
        ({"head": "cosin"}, r"model\.head='cosin'.*did you mean 'cosine'"),
        ({"num_classes": 0}, r"num_classes=0"),
        ({"multi_head": True, "n_tasks": 0}, r"n_tasks=0"),
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, match):
    args = {"backbone": "mlp", "head": "cosine", "num_classes": 3, "input_shape": (1, 8, 8), **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_model(**args)
