"""Avalanche benchmarks offline: files staged from the Debian package, a DataError naming the fix, the run's seed."""

import dataclasses
import gzip

import numpy as np
import pytest

from lifelong.data import avalanche_files
from lifelong.data.avalanche_files import IDX_FILES, STAGED, stage_benchmark_files
from lifelong.data.avalanche_streams import benchmark_from_name
from lifelong.data.datasets import FASHION_MNIST_SYSTEM_DIR
from lifelong.errors import DataError


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_split_fmnist_files_are_staged_from_the_debian_package(tmp_path):
    stage_benchmark_files("SplitFMNIST", {"dataset_root": str(tmp_path)})
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)
    with gzip.open(FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == f.read()
    before = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    stage_benchmark_files("SplitFMNIST", {"dataset_root": str(tmp_path)})  # staged once
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == before


def test_missing_files_name_the_package_and_the_folder(tmp_path, monkeypatch):
    missing = dataclasses.replace(STAGED["SplitFMNIST"], system_dir=tmp_path / "not-installed")
    monkeypatch.setitem(avalanche_files.STAGED, "SplitFMNIST", missing)
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*FashionMNIST/raw"):
        benchmark_from_name("SplitFMNIST", {"n_experiences": 5, "dataset_root": str(tmp_path / "root")})


def test_the_runs_seed_reaches_a_benchmark_that_takes_one(monkeypatch):
    monkeypatch.setenv("LIFELONG_ALLOW_CODE", "numpy.random")
    seeded = benchmark_from_name("numpy.random:default_rng", {}, seed=7)
    assert seeded.integers(10**9) == np.random.default_rng(7).integers(10**9)
    own = benchmark_from_name("numpy.random:default_rng", {"seed": 3}, seed=7)  # the kwargs' own seed wins
    assert own.integers(10**9) == np.random.default_rng(3).integers(10**9)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_the_avalanche_example_runs_offline_from_an_empty_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "avalanche_benchmark_in_lifelong.py"
    done = subprocess.run(
        [sys.executable, example, "--dataset-root", str(tmp_path / "data")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "er-SplitFMNIST-s0: avg_acc" in done.stdout
