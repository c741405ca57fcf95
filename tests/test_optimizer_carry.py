"""One optimizer state for the whole stream (optim.fresh_per_experience=false) vs a fresh one per experience."""

from __future__ import annotations

import pytest
import torch

from lifelong import config
from lifelong.build import trainer_factory
from lifelong.data.types import Experience, TensorExperienceDataset
from lifelong.errors import ConfigError
from lifelong.loop import LoaderSettings, train_experience
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.optimizer_carry import CarriedOptimizer
from lifelong.strategies import Strategy

N, BATCH = 20, 5  # 4 optimiser steps per experience


def experience(index: int) -> Experience:
    g = torch.Generator().manual_seed(index)
    return Experience(index, TensorExperienceDataset(torch.randn(N, 3, generator=g), torch.arange(N) % 2), [0, 1])


def module(carry: bool) -> ContinualModule:
    torch.manual_seed(0)
    model = build_model("mlp", "linear", 2, (3,), backbone_kwargs={"hidden": [4]})
    return ContinualModule(model, Strategy(), lambda p: torch.optim.Adam(p, lr=0.01), 2, carry_optimizer_state=carry)


def train_two_experiences(m: ContinualModule) -> list[torch.optim.Optimizer]:
    cfg = config.load(overrides=["train.epochs=1"])
    used = []
    for index in range(2):
        m.strategy.experience_index = index
        train_experience(m, experience(index), trainer_factory(cfg)(1), LoaderSettings(BATCH, 64, shuffle=False))
        used.append(m.trainer.optimizers[0])
    return used


def adam_steps(optimizer_state: dict) -> list[float]:
    return [float(s["step"]) for s in optimizer_state["state"].values()]


def test_carried_adam_counts_every_step_of_the_stream():
    m = module(carry=True)
    first, second = train_two_experiences(m)
    assert first is not second  # Lightning still builds one per fit; the state is what carries
    assert adam_steps(second.state_dict()) == [8.0] * 4  # 4 steps of each experience
    assert adam_steps(m.get_extra_state()["optimizer"]) == [8.0] * 4


def test_fresh_optimizer_per_experience_by_default():
    m = module(carry=False)
    _first, second = train_two_experiences(m)
    assert adam_steps(second.state_dict()) == [4.0] * 4
    assert m.get_extra_state() == {}


def test_carried_state_travels_with_the_module_state_dict():
    m = module(carry=True)
    train_two_experiences(m)
    state = m.state_dict()
    assert adam_steps(state["_extra_state"]["optimizer"]) == [8.0] * 4
    restored = module(carry=True)
    restored.load_state_dict(state)
    assert adam_steps(restored.optimizer_carry.saved) == [8.0] * 4
    fresh = torch.optim.Adam(restored.model.parameters(), lr=0.01)
    restored.optimizer_carry.attach(fresh, 2)
    moments = [s["exp_avg"] for s in fresh.state_dict()["state"].values()]
    expected = [s["exp_avg"] for s in state["_extra_state"]["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, expected, strict=True))


def test_a_state_dict_from_before_the_extra_state_still_loads():
    m = module(carry=False)
    state = {k: v for k, v in m.state_dict().items() if k != "_extra_state"}
    module(carry=True).load_state_dict(state)


def test_other_parameters_in_the_next_experience_name_the_fix():
    carry = CarriedOptimizer(enabled=True)
    two = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    carry.attach(torch.optim.SGD(two, lr=0.1), 0)
    carry.detach()
    three = [*two, torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ConfigError, match="fresh_per_experience=true"):
        carry.attach(torch.optim.SGD(three, lr=0.1), 1)


def test_the_config_key_reaches_the_module(tmp_path):
    from lifelong.build import build_parts

    cfg = config.load(overrides=cfg_overrides(tmp_path))
    assert not build_parts(cfg)[1].optimizer_carry.enabled
    cfg = config.load(overrides=[*cfg_overrides(tmp_path), "optim.fresh_per_experience=false"])
    assert build_parts(cfg)[1].optimizer_carry.enabled


def cfg_overrides(tmp_path) -> list[str]:
    return ["stream.dataset=digits", "stream.n_experiences=2", f"output_dir={tmp_path}", "optim.name=adam"]
