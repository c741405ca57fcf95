"""Property tests: whatever a user types, a bad config is a ConfigError (one message), never a library traceback.

"Everything before training" is checked: ``config.load`` (YAML + overrides), ``check_names``
(registries, strategy parameters) and building the Trainer.
"""

from __future__ import annotations

import dataclasses
import string

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lifelong import config
from lifelong.build import check_names, trainer_factory
from lifelong.config import ExperimentConfig
from lifelong.errors import ConfigError
from lifelong.strategies import STRATEGIES

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def leaves(node=None, prefix="") -> dict[str, type]:
    """Every scalar key of the schema with its declared type (``name``, ``stream.n_experiences``, ...)."""
    node = node or ExperimentConfig()
    out = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            out.update(leaves(value, f"{prefix}{f.name}."))
        elif not isinstance(value, dict):
            out[f"{prefix}{f.name}"] = type(value)
    return out


LEAVES = leaves()
SECTIONS = sorted({key.rpartition(".")[0] for key in LEAVES if "." in key})


def everything_before_training(overrides: list[str] | None = None, path=None) -> None:
    cfg = config.load(path, overrides)
    check_names(cfg)
    trainer_factory(cfg)(1)


def ok_or_config_error(overrides: list[str] | None = None, path=None) -> bool:
    """True when the config is valid; False on a ConfigError; any other exception fails the test."""
    try:
        everything_before_training(overrides, path)
    except ConfigError as err:
        message = str(err)
    else:
        return True
    assert message.strip()
    assert "Traceback" not in message
    return False


identifiers = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)


@SETTINGS
@given(section=st.sampled_from(["", *SECTIONS]), name=identifiers, value=st.integers() | identifiers)
def test_unknown_keys_are_named(section, name, value):
    key = f"{section}.{name}" if section else name
    allowed = {k.rpartition(".")[2] for k in LEAVES if k.rpartition(".")[0] == section}
    allowed |= {s.split(".")[0] for s in SECTIONS} | {"analysis"} if not section else set()
    assume(name not in allowed)
    with pytest.raises(ConfigError, match="unknown config key"):
        config.load(overrides=[f"{key}={value}"])


def wrong_values(kind: type) -> st.SearchStrategy[str]:
    """Override values that cannot be a ``kind`` (as OmegaConf would parse them from the command line)."""
    words = st.text(string.ascii_letters, min_size=1, max_size=8).filter(
        lambda w: w.lower() not in {"true", "false", "yes", "no", "on", "off", "null", "nan", "inf", "y", "n"}
    )
    mappings = st.just("{a: 1}")
    if kind is int:
        return (
            words | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(str) | mappings
        )
    if kind is float:
        return words | mappings | st.just("[1, 2]")
    if kind is bool:
        return words | mappings  # (OmegaConf reads any integer as a bool, 0 as false)
    return st.just("[1, 2]") | mappings  # strings: only containers are not text


TYPED = {key: kind for key, kind in LEAVES.items() if kind in (int, float, bool, str)}


@SETTINGS
@given(data=st.data())
def test_values_of_the_wrong_type_are_config_errors(data):
    key = data.draw(st.sampled_from(sorted(TYPED)))
    value = data.draw(wrong_values(TYPED[key]))
    with pytest.raises(ConfigError):
        everything_before_training([f"{key}={value}"])


BAD_VALUES = {
    "stream.n_experiences": st.integers(max_value=0),
    "train.epochs": st.integers(max_value=0),
    "train.batch_size": st.integers(max_value=0),
    "train.eval_batch_size": st.integers(max_value=0),
    "train.num_workers": st.integers(max_value=-1),
    "train.log_every_n_steps": st.integers(max_value=0),
    "trainer.num_nodes": st.integers(max_value=0),
    "optim.lr": st.floats(max_value=0) | st.just(float("inf")),
    "optim.momentum": st.floats(max_value=-1e-6) | st.just(float("nan")),
    "seed": st.integers(max_value=-1) | st.integers(min_value=2**32),
    "trainer.devices": st.integers(max_value=-2) | st.just(0),
    "stream.online.batch_size": st.integers(max_value=0),
    "trainer.precision": identifiers,
    "optim.name": identifiers,
    "strategy.name": identifiers,
    "stream.dataset": identifiers,
    "stream.scenario": identifiers,
    "model.backbone": identifiers.filter(lambda n: not n.startswith("timm")),
    "model.head": identifiers,
    "trainer.accelerator": identifiers.filter(lambda n: n not in {"cpu", "auto"}),
    "trainer.strategy": identifiers.filter(lambda n: n != "auto"),
}


@SETTINGS
@given(data=st.data())
def test_values_out_of_range_or_unknown_names_are_config_errors(data):
    key = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(BAD_VALUES[key])
    with pytest.raises(ConfigError):
        everything_before_training(["stream.n_experiences=5", f"{key}={value}"])


@SETTINGS
@given(
    name=st.sampled_from(STRATEGIES.names()),
    param=identifiers,
    value=st.integers() | st.floats(allow_nan=False) | identifiers | st.booleans(),
)
def test_strategy_parameters_are_checked_before_anything_runs(name, param, value):
    ok_or_config_error([f"strategy.name={name}", f"strategy.params.{param}={value!r}"])


@SETTINGS
@given(st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=3))
def test_random_override_strings_give_a_config_or_a_config_error(overrides):
    ok_or_config_error(overrides)


@SETTINGS
@given(st.lists(st.sampled_from(sorted(LEAVES)), min_size=1, max_size=3), st.data())
def test_random_values_for_real_keys_give_a_config_or_a_config_error(keys, data):
    values = st.text(string.printable, max_size=12) | st.integers().map(str) | st.sampled_from(["[", "{", "${x}", "]"])
    ok_or_config_error([f"{key}={data.draw(values)}" for key in keys])


yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
yaml_docs = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(identifiers, children, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from([*sorted({k.split(".")[0] for k in LEAVES}), "extends"]), yaml_docs))
def test_random_yaml_files_give_a_config_or_a_config_error(doc, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(doc))
    ok_or_config_error(path=path)
