"""BCT: the influence loss by hand, synthesised old-classifier rows, the combined loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lifelong.models import build_model
from lifelong.strategies import build_strategy
from lifelong.strategies.bct import class_means, influence_loss


def test_influence_loss_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    bias = torch.tensor([0.0, 1.0, 0.0])
    valid = torch.tensor([True, True, False])  # the third row does not exist: masked out
    labels = torch.tensor([0, 1])
    # sample 0: logits (2, 1) -> -log(e^2 / (e^2 + e^1)); sample 1: logits (0, 2) -> -log(e^2 / (1 + e^2))
    expected = (-math.log(math.e**2 / (math.e**2 + math.e)) - math.log(math.e**2 / (1 + math.e**2))) / 2
    assert float(influence_loss(features, labels, weight, bias, valid)) == pytest.approx(expected, abs=1e-6)


def train_first(strategy, model, experience):
    strategy.before_experience(model, experience)
    b = experience.dataset.__getitems__(list(range(16)))
    strategy.after_training_step(model, b, strategy.training_loss(model, b))
    strategy.after_experience(model, experience)


@pytest.mark.parametrize("rescale", [False, True])
def test_old_classifier_is_the_previous_head_plus_old_model_class_means(digits_stream, tiny_model, rescale):
    strategy = build_strategy("bct", memory_size=16, rescale_prototypes=rescale)
    strategy.setup(tiny_model, digits_stream.info)
    first, second = digits_stream.train[:2]
    train_first(strategy, tiny_model, first)
    head_weight, head_bias = tiny_model.head.weight.detach().clone(), tiny_model.head.bias.detach().clone()
    strategy.before_experience(tiny_model, second)
    with torch.no_grad():  # the means must come from the model as the experience starts
        data = second.dataset
        means = torch.stack([tiny_model.features(data.x[data.y == c]).mean(0) for c in sorted(second.classes)])
    strategy.training_loss(tiny_model, second.dataset.__getitems__(list(range(8))))
    old, new = sorted(first.classes), sorted(second.classes)
    assert torch.equal(strategy.old_weight[old], head_weight[old])
    assert torch.equal(strategy.old_bias[old], head_bias[old])
    if rescale:
        scale = head_weight[old].norm(dim=1).mean()
        means = means * scale / means.norm(dim=1, keepdim=True)
    assert torch.allclose(strategy.old_weight[new], means, atol=1e-5)
    assert torch.equal(strategy.old_bias[new], torch.zeros(2))
    assert sorted(strategy.old_valid.nonzero().flatten().tolist()) == sorted(old + new)


def test_loss_is_ce_plus_weighted_influence(digits_stream, tiny_model):
    strategy = build_strategy("bct", memory_size=16, replay_batch_size=4, influence_weight=2.0, seed=2)
    strategy.setup(tiny_model, digits_stream.info)
    first, second = digits_stream.train[:2]
    train_first(strategy, tiny_model, first)
    strategy.before_experience(tiny_model, second)
    b = second.dataset.__getitems__(list(range(6)))
    strategy.training_loss(tiny_model, b)  # synthesises the new rows
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(tiny_model, b)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(4)
    x, y = torch.cat([b[0], replay["x"]]), torch.cat([b[1], replay["y"]])
    features = tiny_model.features(x)
    ce = F.cross_entropy(tiny_model.head(features), y)
    influence = influence_loss(features, y, strategy.old_weight, strategy.old_bias, strategy.old_valid)
    assert torch.allclose(output.loss, ce + 2.0 * influence, atol=1e-6)


def test_class_means_by_hand(digits_stream, tiny_model):
    data = digits_stream.train[0].dataset
    classes = sorted(digits_stream.train[0].classes)
    means = class_means(tiny_model, data, classes, torch.device("cpu"))
    with torch.no_grad():
        expected = torch.stack([tiny_model.features(data.x[data.y == c]).mean(0) for c in classes])
    assert torch.allclose(means, expected, atol=1e-5)


def test_state_round_trip_and_head_check(digits_stream, tiny_model):
    strategy = build_strategy("bct", memory_size=16)
    strategy.setup(tiny_model, digits_stream.info)
    train_first(strategy, tiny_model, digits_stream.train[0])
    strategy.before_experience(tiny_model, digits_stream.train[1])
    fresh = build_strategy("bct", memory_size=16)
    fresh.load_state_dict(strategy.state_dict())
    for name in ("old_weight", "old_bias", "old_valid"):
        assert torch.equal(getattr(fresh, name), getattr(strategy, name))
    info = digits_stream.info
    simplex = build_model("mlp", "dsimplex", info.num_classes, info.input_shape)
    with pytest.raises(ValueError, match="model.head=linear"):
        build_strategy("bct").setup(simplex, info)
