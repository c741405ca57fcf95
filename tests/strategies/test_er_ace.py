"""ER-ACE: the asymmetric cross-entropy by hand; absent classes get no push from the incoming batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import LinearHead
from lifelong.strategies import build_strategy
from lifelong.strategies.er_ace import asymmetric_cross_entropy


class Flat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def identity_model(num_classes: int = 4) -> ContinualClassifier:
    """Logits = inputs: a linear head with the identity as weight and no bias."""
    head = LinearHead(num_classes, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.eye(num_classes))
        head.bias.zero_()
    return ContinualClassifier(Flat(num_classes), head)


def log_softmax_at(row: list[float], index: int, allowed: list[int]) -> float:
    return row[index] - math.log(sum(math.exp(row[c]) for c in allowed))


def test_asymmetric_cross_entropy_by_hand():
    logits = torch.tensor([[1.0, 2.0, 30.0], [0.5, -1.0, 30.0]])
    loss = asymmetric_cross_entropy(logits, torch.tensor([0, 1]), torch.tensor([True, True, False]))
    expected = -(log_softmax_at([1.0, 2.0], 0, [0, 1]) + log_softmax_at([0.5, -1.0], 1, [0, 1])) / 2
    assert loss.item() == pytest.approx(expected)


def test_loss_is_ace_on_incoming_plus_full_ce_on_replay_by_hand():
    model = identity_model()
    strategy = build_strategy("er_ace", memory_size=2, replay_batch_size=2)
    memory_x = torch.tensor([[0.0, 0.0, 1.0, 0.5], [0.3, 0.0, 0.0, 2.0]])
    strategy.memory.add(x=memory_x, y=torch.tensor([2, 3]), t=torch.zeros(2, dtype=torch.long))
    x = torch.tensor([[1.0, 0.0, 5.0, 5.0], [0.0, 2.0, 5.0, 5.0]])  # classes 2 and 3 absent from the incoming batch
    output = strategy.training_loss(model, (x, torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long)))
    incoming = -(log_softmax_at(x[0].tolist(), 0, [0, 1]) + log_softmax_at(x[1].tolist(), 1, [0, 1])) / 2
    rows = {2: memory_x[0].tolist(), 3: memory_x[1].tolist()}
    replayed = -sum(log_softmax_at(rows[c], c, [0, 1, 2, 3]) for c in (2, 3)) / 2  # memory order does not matter
    assert float(output.parts["ace"]) == pytest.approx(incoming, rel=1e-6)
    assert float(output.parts["replay_ce"]) == pytest.approx(replayed, rel=1e-6)
    assert output.loss.item() == pytest.approx(incoming + replayed, rel=1e-6)


def test_incoming_batch_does_not_push_absent_classes_down():
    model = identity_model()
    strategy = build_strategy("er_ace", memory_size=1, replay_batch_size=1)
    strategy.memory.add(x=torch.zeros(1, 4), y=torch.tensor([0]), t=torch.zeros(1, dtype=torch.long))
    x = torch.randn(3, 4, requires_grad=True)
    strategy.training_loss(model, (x, torch.tensor([1, 2, 1]), torch.zeros(3, dtype=torch.long))).loss.backward()
    assert torch.all(x.grad[:, [0, 3]] == 0)  # class 0 is only in memory, class 3 nowhere
    assert torch.all(x.grad[:, [1, 2]].abs().sum(1) > 0)


def test_empty_memory_gives_plain_cross_entropy():
    model = identity_model()
    x = torch.randn(3, 4)
    y = torch.tensor([1, 2, 1])
    output = build_strategy("er_ace").training_loss(model, (x, y, torch.zeros(3, dtype=torch.long)))
    assert output.loss.item() == pytest.approx(nn.functional.cross_entropy(x, y).item(), rel=1e-6)


def test_unmask_unseen_keeps_never_seen_classes_in_the_incoming_softmax():
    model = identity_model()
    strategy = build_strategy("er_ace", memory_size=1, replay_batch_size=1, unmask_unseen=True)
    t = torch.zeros(1, dtype=torch.long)
    strategy.after_training_step(model, (torch.zeros(1, 4), torch.tensor([0]), t), None)  # class 0 seen
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    output = strategy.training_loss(model, (x, torch.tensor([1]), t))
    assert float(output.parts["ace"]) == pytest.approx(-log_softmax_at(x[0].tolist(), 1, [1, 2, 3]), rel=1e-6)
