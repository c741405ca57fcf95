"""Every registered strategy, for a couple of batches on CPU, in both its hooks and a Lightning fit."""

from __future__ import annotations

import pytest
import torch

from lifelong import config
from lifelong.build import trainer_factory
from lifelong.loop import LoaderSettings, train_experience
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names

NAMES = strategy_names("classifier")


def model_for(name, stream, tiny_model):
    """The tiny model, or one with the head a strategy requires (e.g. the d-Simplex methods)."""
    head = STRATEGIES.get(name).requires_head or "linear"
    if head == "linear":
        return tiny_model
    info = stream.info
    return build_model("mlp", head, info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})


def batches(experience, size=8, n=2):
    data = experience.dataset
    return [data.__getitems__(list(range(i * size, (i + 1) * size))) for i in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_hooks_give_a_finite_differentiable_loss(name, digits_stream, tiny_model):
    tiny_model = model_for(name, digits_stream, tiny_model)
    strategy = build_strategy(name)
    strategy.setup(tiny_model, digits_stream.info)
    steps_with_gradient = 0
    for experience in digits_stream.train[:2]:
        strategy.before_experience(tiny_model, experience)
        for batch in batches(experience):
            tiny_model.zero_grad()
            output = strategy.training_loss(tiny_model, batch)
            assert output.loss.ndim == 0
            assert torch.isfinite(output.loss)
            output.loss.backward()
            grads = [p.grad for p in tiny_model.parameters()]
            assert all(g is not None for g in grads)
            steps_with_gradient += any(g.abs().sum() > 0 for g in grads)
            strategy.after_training_step(tiny_model, batch, output)
        strategy.after_experience(tiny_model, experience)
        assert len(strategy.train_dataset(experience)) >= len(experience.dataset)
    # PCR-style losses over the classes present in a batch have no gradient on a one-class batch
    # (these unshuffled batches can be one class until replay mixes in past classes)
    assert steps_with_gradient >= 2


@pytest.mark.parametrize("name", NAMES)
def test_lightning_fit_trains_each_strategy(name, digits_stream, tiny_model):
    tiny_model = model_for(name, digits_stream, tiny_model)
    cfg = config.load(overrides=["train.epochs=1"])
    strategy = build_strategy(name)
    module = ContinualModule(tiny_model, strategy, lambda p: torch.optim.SGD(p, lr=0.1), len(digits_stream))
    reports = []
    module.step_reporter = lambda step, metrics: reports.append((step, metrics))
    strategy.setup(tiny_model, digits_stream.info)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    settings = LoaderSettings(batch_size=32, eval_batch_size=256)
    for experience in digits_stream.train[:2]:
        train_experience(module, experience, trainer_factory(cfg)(1), settings)
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters(), strict=False))
    steps = [s for s, _ in reports]
    assert steps == sorted(steps), "global step must never restart"
    assert len(set(steps)) == len(steps)
    assert int(module.train_steps) > 0
    assert all("train/loss" in m for _, m in reports)


def test_er_replays_past_classes_and_memory_holds_them(digits_stream, tiny_model):
    strategy = build_strategy("er", memory_size=50, replay_batch_size=8)
    strategy.setup(tiny_model, digits_stream.info)
    first, second = digits_stream.train[:2]
    strategy.before_experience(tiny_model, first)
    for batch in batches(first, n=10):
        strategy.after_training_step(tiny_model, batch, strategy.training_loss(tiny_model, batch))
    assert len(strategy.memory) == 50
    assert set(strategy.memory.get("y").tolist()) <= set(first.classes)
    strategy.before_experience(tiny_model, second)
    x, y, _ = strategy.replay_batch(batches(second, n=1)[0])
    assert len(y) == 16
    assert set(y[:8].tolist()) <= set(second.classes)
    assert set(y[8:].tolist()) <= set(first.classes)


def test_er_loss_is_cross_entropy_on_the_joint_batch(digits_stream, tiny_model):
    strategy = build_strategy("er", memory_size=20, replay_batch_size=4, seed=1)
    experience = digits_stream.train[0]
    strategy.before_experience(tiny_model, experience)
    warm = batches(experience, size=20, n=1)[0]
    strategy.memory.add(x=warm[0], y=warm[1], t=warm[2])
    batch = batches(experience, size=6, n=2)[1]
    generator_state = strategy.memory.generator.get_state()
    output = strategy.training_loss(tiny_model, batch)
    strategy.memory.generator.set_state(generator_state)
    replay = strategy.memory.sample(4)
    x = torch.cat([batch[0], replay["x"]])
    y = torch.cat([batch[1], replay["y"]])
    expected = torch.nn.functional.cross_entropy(tiny_model(x), y)
    assert torch.allclose(output.loss, expected)


def test_joint_trains_on_everything_seen(digits_stream):
    strategy = build_strategy("joint")
    sizes = []
    for experience in digits_stream.train:
        sizes.append(len(strategy.train_dataset(experience)))
        strategy.after_experience(None, experience)
    expected = torch.cumsum(torch.tensor([len(e.dataset) for e in digits_stream.train]), 0).tolist()
    assert sizes == expected


@pytest.mark.parametrize(
    ("params", "match"), [({"memory_size": 0}, "memory_size"), ({"replay_batch_size": 0}, "replay_batch_size")]
)
def test_er_rejects_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        build_strategy("er", **params)
