"""SCR: the SupCon loss by hand and against the official two-view formulation, NCM prediction, projection head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import LinearHead
from lifelong.strategies import build_strategy
from lifelong.strategies.contrastive import supervised_contrastive_loss
from lifelong.strategies.scr import nearest_mean_scores


class Flat(nn.Module):
    """Identity backbone on vectors, so features are the inputs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * self.scale


def supcon_two_views(features: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    """The official SupConLoss(contrast_mode='all') on (B, 2, D) features, written with loops."""
    views = torch.cat([features[:, 0], features[:, 1]])  # anchors: all views
    y = torch.cat([labels, labels])
    n = len(y)
    total = 0.0
    for i in range(n):
        sims = {a: float(views[i] @ views[a]) / tau for a in range(n) if a != i}
        log_norm = math.log(sum(math.exp(v) for v in sims.values()))
        positives = [a for a in sims if y[a] == y[i]]
        total += -sum(sims[p] - log_norm for p in positives) / len(positives)
    return total / n


def test_supcon_by_hand():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    # anchors 0 and 1: one positive (sim 1) among {1, 0}; anchor 2 has no positive and is left out
    expected = math.log(math.e + 1) - 1
    assert supervised_contrastive_loss(z, y, 1.0).item() == pytest.approx(expected)


def test_supcon_equals_the_official_two_view_loss():
    torch.manual_seed(0)
    features = F.normalize(torch.randn(5, 2, 8), dim=2)
    labels = torch.tensor([0, 1, 1, 2, 0])
    flat = torch.cat([features[:, 0], features[:, 1]])
    ours = supervised_contrastive_loss(flat, torch.cat([labels, labels]), 0.07).item()
    assert ours == pytest.approx(supcon_two_views(features, labels, 0.07), rel=1e-5)


def test_nearest_mean_scores_by_hand():
    means = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    valid = torch.tensor([True, True, False])
    scores = nearest_mean_scores(torch.tensor([[3.0, 0.0], [1.0, 1.2]]), means, valid)
    assert scores[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert scores[0, 1].item() == pytest.approx(-2.0)  # |(1, 0) - (0, 1)|^2
    assert scores.argmax(1).tolist() == [0, 1]  # class 2 has no mean, however close
    assert scores[1, 2] < -1e30


def test_class_means_come_from_the_memory_and_drive_prediction():
    model = ContinualClassifier(Flat(2), LinearHead(2, 3))
    strategy = build_strategy("scr", memory_size=10, augment=False)
    x = torch.tensor([[2.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.1, 3.0]])
    y = torch.tensor([0, 0, 2, 2])
    t = torch.zeros(4, dtype=torch.long)
    assert torch.equal(strategy.eval_logits(model, x, t), model(x))  # empty memory: the head
    strategy.memory.add(x=x, y=y, t=t)
    means, valid = strategy.class_means(model)
    normalised = F.normalize(x, dim=1)
    assert torch.allclose(means[0], F.normalize(normalised[:2].mean(0), dim=0))
    assert torch.allclose(means[2], F.normalize(normalised[2:].mean(0), dim=0))
    assert valid.tolist() == [True, False, True]
    predictions = strategy.eval_logits(model, torch.tensor([[5.0, 1.0], [0.5, 4.0], [1.0, 1.1]]), t[:3]).argmax(1)
    assert predictions.tolist() == [0, 2, 2]


def test_training_loss_is_supcon_on_the_projected_views_and_keeps_the_head_in_the_graph(digits_stream, tiny_model):
    strategy = build_strategy("scr", memory_size=20, replay_batch_size=4, augment=False, seed=0)
    strategy.setup(tiny_model, digits_stream.info)
    experience = digits_stream.train[0]
    data = experience.dataset
    warm = data.__getitems__(list(range(0, len(data), max(1, len(data) // 20)))[:20])
    strategy.memory.add(x=warm[0], y=warm[1], t=warm[2])
    batch = data.__getitems__([0, 1, len(data) - 2, len(data) - 1])
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(tiny_model, batch)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(4)
    x = torch.cat([batch[0], replay["x"]] * 2)
    y = torch.cat([batch[1], replay["y"]] * 2)
    expected = supervised_contrastive_loss(strategy.projection(tiny_model.features(x)), y, 0.07)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    output.loss.backward()
    assert tiny_model.head.weight.grad is not None
    assert tiny_model.head.weight.grad.abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in strategy.projection.parameters())


def test_projection_is_restored_into_a_strategy_not_set_up(digits_stream, tiny_model):
    strategy = build_strategy("scr", projection_dim=16)
    strategy.setup(tiny_model, digits_stream.info)
    fresh = build_strategy("scr", projection_dim=16)
    fresh.load_state_dict(strategy.state_dict())
    for a, b in zip(strategy.projection.parameters(), fresh.projection.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"projection": "deep"}, "projection"), ({"projection_dim": 0}, "projection_dim"), ({"ce_weight": -1}, "ce")],
)
def test_bad_parameters_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        build_strategy("scr", **params)
