"""Avalanche benchmarks as lifelong streams, from YAML through `lifelong run`."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lifelong import config
from lifelong.cli import main
from lifelong.data import build_stream, resolve_root
from lifelong.data.datasets import FASHION_MNIST_SYSTEM_DIR
from lifelong.errors import ConfigError
from lifelong.run import build_parts


def test_a_benchmark_factory_by_import_path_gives_the_native_stream(monkeypatch):
    monkeypatch.setenv("LIFELONG_ALLOW_CODE", "lifelong.data")  # what `--allow-code lifelong.data` does
    cfg = config.load(
        overrides=[
            "stream.avalanche.benchmark=lifelong.data:avalanche_benchmark",
            "stream.avalanche.kwargs={dataset: digits, scenario: class_incremental, n_experiences: 5, seed: 3,"
            f" root: '{resolve_root(None)}'}}",
        ]
    )
    assert cfg.run_name == "finetune-avalanche_benchmark-s0"
    stream, _ = build_parts(cfg)
    native = build_stream("digits", "class_incremental", 5, root=resolve_root(None), seed=3)
    assert stream.info.classes_per_experience == native.info.classes_per_experience
    for ours, theirs in zip(stream.train + stream.test, native.train + native.test, strict=True):
        assert ours.dataset.x.equal(theirs.dataset.x)
        assert ours.dataset.y.equal(theirs.dataset.y)


def test_unknown_benchmark_or_argument_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'SplitFMNIST'"):
        build_parts(config.load(overrides=["stream.avalanche.benchmark=SplitFMNSIT"]))
    with pytest.raises(ConfigError, match="stream.avalanche.kwargs"):
        build_parts(
            config.load(overrides=["stream.avalanche.benchmark=SplitFMNIST", "stream.avalanche.kwargs.n_exp=5"])
        )


@pytest.fixture(scope="module")
def torchvision_fashion_mnist(tmp_path_factory):
    """The Debian package's IDX files in the unzipped layout torchvision (and so Avalanche) reads."""
    source = Path(FASHION_MNIST_SYSTEM_DIR)
    if not source.is_dir():
        pytest.fail(f"{source} is missing: install the Debian package dataset-fashion-mnist (.ci/run does)")
    root = tmp_path_factory.mktemp("avalanche-data")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in source.glob("*-ubyte.gz"):
        with gzip.open(archive) as packed, open(raw / archive.name.removesuffix(".gz"), "wb") as out:
            shutil.copyfileobj(packed, out)
    return root


def test_avalanche_split_fmnist_runs_through_lifelong_run(torchvision_fashion_mnist, tmp_path, capsys):
    code = main(
        [
            "run",
            "experiments/avalanche_split_fmnist.yaml",
            f"stream.avalanche.kwargs.dataset_root={torchvision_fashion_mnist}",
            f"output_dir={tmp_path}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ]
    )
    assert code == 0
    (summary_path,) = tmp_path.glob("avalanche_split_fmnist/er-SplitFMNIST-s0-*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "FINISHED"
    assert summary["experiences_evaluated"] == 5
    # 10 classes: chance is 0.1; one epoch of ER on the real data lands far above it
    assert summary["metrics"]["avg_acc"] > 0.5


def test_importing_lifelong_and_its_cli_does_not_import_avalanche():
    code = (
        "import lifelong, lifelong.run, lifelong.cli, lifelong.strategies, lifelong.analysis, sys; "
        "assert 'avalanche' not in sys.modules, 'avalanche imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
