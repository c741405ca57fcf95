"""A config is data: code only from the allow-list, names that stay names, bounded YAML."""

from __future__ import annotations

import time

import pytest

from lifelong import config
from lifelong.errors import ConfigError
from lifelong.safety import ALLOW_ENV, MAX_YAML_NODES, allow_code, check_code, check_path_name, load_yaml


@pytest.mark.parametrize(
    "name", ["subprocess:getoutput", "os:system", "avalanche.benchmarksx:f", "builtins:eval", "lifelong.run:run"]
)
def test_code_outside_the_allow_list_is_refused_with_the_way_to_allow_it(name, monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "")
    module = name.partition(":")[0]
    with pytest.raises(ConfigError, match=f"pass --allow-code {module} .*or set {ALLOW_ENV}={module}"):
        check_code("stream.avalanche.benchmark", name)


def test_the_avalanche_namespace_is_allowed_and_the_user_can_add_modules(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "")
    check_code("k", "avalanche.benchmarks.classic:SplitMNIST")
    check_code("k", "SplitMNIST")  # a classic name imports nothing else
    allow_code(["mypkg.benchmarks"])
    check_code("k", "mypkg.benchmarks.split:make")
    with pytest.raises(ConfigError):
        check_code("k", "mypkg:other")
    allow_code(["*"])
    check_code("k", "anything:goes")


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("name", "..", "not allowed"),
        ("name", ".", "not allowed"),
        ("tracking.experiment", "../../../x", "would be a path"),
        ("name", "a/b", "would be a path"),
        ("name", "a\\b", "would be a path"),
        ("name", "x\0y", "would be a path"),
        ("name", "x" * 400, "400 bytes long"),
        ("name", " ", "not allowed"),
    ],
)
def test_names_that_become_folders_stay_one_name(key, value, why):
    with pytest.raises(ConfigError, match=why) as info:
        check_path_name(key, value)
    assert str(info.value).startswith(f"{key}=")
    assert "\n" not in str(info.value)


def test_config_load_checks_every_name_that_becomes_a_path():
    with pytest.raises(ConfigError, match="tracking.experiment='../x'"):
        config.load(None, ["tracking.experiment=../x"])
    with pytest.raises(ConfigError, match="run name"):
        config.load(None, ["stream.avalanche.benchmark='m:a/b'"])
    assert config.load(None, ["name=my-experiment_1.2"]).name == "my-experiment_1.2"


def test_an_alias_bomb_and_a_huge_list_fail_fast(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (tmp_path / "list.yaml").write_text("x: [" + ",".join(["0"] * (MAX_YAML_NODES + 10)) + "]\n")
    (tmp_path / "big.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100000 values"):
        config.load(tmp_path / "bomb.yaml")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="a config file may have at most 1048576"):
        config.load(tmp_path / "big.yaml")
    assert time.perf_counter() - started < 10


def test_a_recursive_alias_is_bounded_too(tmp_path):
    (tmp_path / "loop.yaml").write_text("a: &a [*a]\n")
    with pytest.raises(ConfigError, match="expands"):
        load_yaml(tmp_path / "loop.yaml")
