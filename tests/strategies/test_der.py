"""DER and DER++ against hand-computed losses on a model whose logits are its inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelong.models.classifier import ContinualClassifier
from lifelong.models.heads import LinearHead
from lifelong.strategies import build_strategy


class Identity(nn.Module):
    out_dim = 2

    def forward(self, x):
        return x


def identity_model(classes: int = 2) -> ContinualClassifier:
    """Logits = inputs: an identity backbone and a linear head with weight I and bias 0."""
    head = LinearHead(2, classes)
    with torch.no_grad():
        head.weight.copy_(torch.eye(classes, 2))
        head.bias.zero_()
    return ContinualClassifier(Identity(), head)


def fill(strategy, x, y, logits):
    strategy.memory.add(x=x, y=y, t=torch.zeros_like(y), logits=logits)


MEMORY_X = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
MEMORY_Y = torch.tensor([1, 0])
MEMORY_Z = torch.tensor([[0.0, 2.0], [1.0, 1.0]])  # stored logits: differences [1, 0] and [2, -2]
INCOMING = (torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([0]))
CE_INCOMING = math.log(1 + math.exp(-1))  # CE([1, 0], label 0)


def test_der_is_ce_plus_alpha_times_the_logit_mse():
    model = identity_model()
    strategy = build_strategy("der", memory_size=4, replay_batch_size=2, alpha=0.5)
    fill(strategy, MEMORY_X, MEMORY_Y, MEMORY_Z)
    out = strategy.training_loss(model, INCOMING)
    mse = (1 + 0 + 4 + 4) / 4  # mean over the 2 x 2 entries, whichever order the two samples come in
    assert float(out.parts["der"]) == pytest.approx(mse)
    assert float(out.parts["ce"]) == pytest.approx(CE_INCOMING)
    assert float(out.loss.detach()) == pytest.approx(CE_INCOMING + 0.5 * mse)
    assert "replay_ce" not in out.parts


def test_der_draws_one_replay_batch_and_derpp_a_second_independent_one():
    draws = {}
    for name in ("der", "derpp"):
        strategy = build_strategy(name, memory_size=20, replay_batch_size=3, seed=3)
        xs = torch.arange(40.0).reshape(20, 2)
        fill(strategy, xs, torch.arange(20) % 2, torch.zeros(20, 2))
        sample = strategy.memory.sample
        calls = []

        def recording(n, device=None, sample=sample, calls=calls):
            out = sample(n, device)
            calls.append(out["x"][:, 0].div(2).long().tolist())
            return out

        strategy.memory.sample = recording
        strategy.training_loss(identity_model(), INCOMING)
        draws[name] = calls
    assert len(draws["der"]) == 1
    assert len(draws["derpp"]) == 2
    assert draws["derpp"][0] == draws["der"][0]  # the same memory generator, drawn the same way first
    assert draws["derpp"][1] != draws["derpp"][0]  # a fresh draw, not the first batch reused
    assert all(len(set(d)) == 3 for d in draws["derpp"])  # each without replacement


def test_derpp_adds_beta_times_the_ce_on_the_second_batch():
    model = identity_model()
    strategy = build_strategy("derpp", memory_size=4, replay_batch_size=2, alpha=0.5, beta=0.25)
    fill(strategy, MEMORY_X, MEMORY_Y, MEMORY_Z)
    out = strategy.training_loss(model, INCOMING)
    mse = 9 / 4
    # both samples are in both draws: CE([1, 2], 1) and CE([3, -1], 0), averaged
    replay_ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-4))) / 2
    assert float(out.parts["der"]) == pytest.approx(mse)
    assert float(out.parts["replay_ce"]) == pytest.approx(replay_ce)
    assert float(out.loss.detach()) == pytest.approx(CE_INCOMING + 0.5 * mse + 0.25 * replay_ce)


def test_second_batch_ce_uses_the_second_draw_only():
    model = identity_model()
    strategy = build_strategy("derpp", memory_size=8, replay_batch_size=1, alpha=1.0, beta=1.0, seed=5)
    xs = torch.tensor([[0.0, 5.0], [5.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    fill(strategy, xs, torch.tensor([0, 0, 1, 1]), torch.zeros(4, 2))
    replica = torch.Generator()
    replica.set_state(strategy.memory.generator.get_state())  # after the insertions' draws
    first = int(torch.randperm(4, generator=replica)[0])
    second = int(torch.randperm(4, generator=replica)[0])
    out = strategy.training_loss(model, INCOMING)
    ce = nn.functional.cross_entropy(xs[second : second + 1], torch.tensor([[0, 0, 1, 1][second]]))
    assert float(out.parts["replay_ce"]) == pytest.approx(float(ce))
    assert first != second  # with this seed, so the two terms tell the draws apart
    assert float(out.parts["der"]) == pytest.approx(float(xs[first].square().mean()))


def test_first_step_with_an_empty_memory_is_plain_ce():
    out = build_strategy("derpp").training_loss(identity_model(), INCOMING)
    assert set(out.parts) == {"ce"}
    assert float(out.loss.detach()) == pytest.approx(CE_INCOMING)


@pytest.mark.parametrize("name", ["der", "derpp"])
def test_stored_logits_are_the_pre_update_outputs_in_fp32(name):
    torch.manual_seed(0)
    model = ContinualClassifier(nn.Sequential(nn.Linear(2, 2)), LinearHead(2, 3))
    model.backbone.out_dim = 2
    strategy = build_strategy(name, memory_size=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    batch = (x, torch.tensor([0, 2]), torch.tensor([0, 0]))
    with torch.no_grad():
        before = model(x).clone()
    out = strategy.training_loss(model, batch)
    out.loss.backward()
    optimizer.step()
    strategy.after_training_step(model, batch, out)
    stored = strategy.memory.get("logits")
    assert stored.dtype == torch.float32
    assert stored.shape == (2, 3)  # the head's full width
    torch.testing.assert_close(stored, before)
    with torch.no_grad():
        assert not torch.allclose(stored, model(x))  # the update changed the outputs; the memory kept the old ones
    torch.testing.assert_close(strategy.memory.get("x"), x)


def test_a_grown_head_widens_the_stored_logits_and_the_mse_skips_the_new_columns():
    model = identity_model(2)
    strategy = build_strategy("der", memory_size=4, replay_batch_size=2, alpha=1.0)
    fill(strategy, MEMORY_X, MEMORY_Y, MEMORY_Z)
    model.head.expand(3)
    with torch.no_grad():
        model.head.weight[2].zero_()
        model.head.bias[2] = 7.0
    out = strategy.training_loss(model, INCOMING)
    assert float(out.parts["der"]) == pytest.approx(9 / 4)  # the third logit (7) is no target of old samples
    strategy.after_training_step(model, INCOMING, out)
    stored = strategy.memory.get("logits")
    assert stored.shape == (3, 3)
    assert torch.isnan(stored[:2, 2]).all()
    assert stored[2, 2] == 7.0


@pytest.mark.parametrize(("key", "value"), [("alpha", -0.1), ("beta", float("nan")), ("memory_size", 0)])
def test_bad_parameters_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        build_strategy("derpp", **{key: value})
