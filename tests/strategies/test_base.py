"""The head a strategy declares (``Strategy.requires_head``) and the config check built on it (``check_head``)."""

from __future__ import annotations

import pytest

from lifelong.errors import ConfigError
from lifelong.models import HEADS, build_model
from lifelong.strategies import STRATEGIES, Strategy, build_strategy, check_head

NAMES = STRATEGIES.names()


def test_requires_head_is_declared_on_the_base_class():
    assert "requires_head" in Strategy.__dict__
    assert Strategy.requires_head is None
    assert STRATEGIES.get("cl2r").requires_head == "dsimplex"
    assert STRATEGIES.get("bct").requires_head == "linear"
    assert STRATEGIES.get("er").requires_head is None


@pytest.mark.parametrize("name", NAMES)
def test_every_required_head_is_a_registered_head(name):
    required = STRATEGIES.get(name).requires_head
    assert required is None or required in HEADS


@pytest.mark.parametrize("name", NAMES)
def test_check_head_accepts_the_required_head_and_refuses_every_other(name):
    required = STRATEGIES.get(name).requires_head
    for head in HEADS.names():
        if required is None or head == required:
            check_head(name, head)
        else:
            with pytest.raises(ConfigError) as err:
                check_head(name, head)
            message = str(err.value)
            assert "\n" not in message
            assert f"strategy.name={name!r}" in message
            assert f"got {head!r}" in message
            assert f"(set model.head={required})" in message


def test_check_head_message_for_cl2r_on_a_linear_head():
    with pytest.raises(
        ConfigError,
        match=r"^strategy.name='cl2r' needs model.head='dsimplex'; got 'linear' \(set model.head=dsimplex\)$",
    ):
        check_head("cl2r", "linear")


def test_check_head_names_an_unknown_strategy():
    with pytest.raises(ConfigError, match="strategy.name"):
        check_head("cl2rr", "dsimplex")


@pytest.mark.parametrize("name", [n for n in NAMES if STRATEGIES.get(n).requires_head is not None])
def test_what_check_head_refuses_also_fails_at_setup(name, digits_stream):
    """The config check agrees with the strategy's own check at ``setup`` (which it moves before any building)."""
    info = digits_stream.info
    other = next(h for h in ("linear", "dsimplex") if h != STRATEGIES.get(name).requires_head)
    with pytest.raises(ConfigError):
        check_head(name, other)
    model = build_model("mlp", other, info.num_classes, info.input_shape, backbone_kwargs={"hidden": [8]})
    with pytest.raises(ValueError, match="model.head="):
        build_strategy(name).setup(model, info)
