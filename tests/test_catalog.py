"""The static catalog of registry names and parameters: in step with the registries, and fast."""

import subprocess
import sys
import time

import pytest

from lifelong import catalog, config, shipped
from lifelong.cli import main
from lifelong.errors import ConfigError


def test_catalog_file_matches_the_registries():
    assert catalog.load_catalog() == catalog.snapshot(), "the registries changed: run `python -m lifelong.catalog`"


def test_every_annotation_reads_back_as_written():
    texts = {
        text
        for kind in ("strategies", "analyses")
        for entry in catalog.load_catalog()[kind].values()
        for text in entry["params"].values()
    }
    assert "int" in texts
    for text in texts:
        assert catalog.write_annotation(catalog.read_annotation(text)) == text


@pytest.mark.parametrize("name", shipped.shipped_names())
def test_shipped_experiments_pass(name):
    catalog.check_config(config.load(name))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy.name=err", r"strategy.name='err' is not allowed \(did you mean 'er'\?\)"),
        ("strategy.params.memory_size=many", r"strategy.params.memory_size='many' is not allowed; expected int"),
        ("strategy.params.memory_sise=3", r"memory_sise is not a parameter of strategy 'er' \(did you mean"),
        ("model.backbone=efficientnet_b0", r"known backbone \(a timm model is written timm:efficientnet_b0\)"),
        ("model.head=cosin", r"model.head='cosin' is not allowed \(did you mean 'cosine'\?\)"),
        ("stream.scenario=class", r"stream.scenario='class' is not allowed"),
        ("strategy.name=cores", r"needs model.head='dsimplex'; got 'linear'"),
    ],
)
def test_bad_names_and_params_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        catalog.check_config(config.load("quickstart", [override]))


def test_the_check_does_not_import_torch():
    code = (
        "import sys; from lifelong import catalog, config; catalog.check_config(config.load('quickstart')); "
        "print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("command", ["show", "run"])
@pytest.mark.parametrize("override", ["strategy.name=err", "strategy.params.memory_size=many"])
def test_show_and_run_fail_fast_with_exit_2(command, override):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lifelong", command, "quickstart", override], capture_output=True, text=True
    )
    assert time.monotonic() - started < 2
    assert done.returncode == 2
    assert done.stderr.startswith("error: strategy.")


def test_show_refuses_a_bad_strategy_in_process(capsys):
    assert main(["show", "quickstart", "strategy.name=er_acee"]) == 2
    assert "did you mean 'er_ace'" in capsys.readouterr().err
