"""A broken data file stops `lifelong run` with one message naming the file, before a run directory exists."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from lifelong.cli import main

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_mnist(folder, gz):
    """A tiny but well-formed MNIST IDX set (20 train, 10 test images of 28x28, 10 classes)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        np.arange(20, dtype=np.uint8) % 10,
        rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        np.arange(10, dtype=np.uint8),
    ]
    paths = []
    for stem, array in zip(STEMS, arrays, strict=True):
        data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
        path = folder / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths


def run_cli(tmp_path, capsys):
    code = main(
        [
            "run",
            "experiments/quickstart.yaml",
            "stream.dataset=mnist",
            f"stream.root={tmp_path / 'data'}",
            f"output_dir={tmp_path / 'runs'}",
            "tracking.enabled=false",
        ]
    )
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("gz", "cut", "message"),
    [
        (False, 100, "truncated or corrupt: header says"),  # payload shorter than the header says
        (False, -1, "truncated: the IDX header needs"),  # cut inside the header
        (True, 100, "cannot read .*corrupt or truncated"),  # the gzip stream ends early
    ],
    ids=["idx-payload", "idx-header", "gzip"],
)
def test_a_truncated_idx_file_is_named(gz, cut, message, tmp_path, capsys):
    paths = write_mnist(tmp_path / "data" / "mnist", gz)
    bad = paths[0]
    data = bad.read_bytes()
    bad.write_bytes(data[:6] if cut < 0 else data[:-cut])
    code, err = run_cli(tmp_path, capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert str(bad) in err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_a_missing_file_is_named(tmp_path, capsys):
    paths = write_mnist(tmp_path / "data" / "mnist", gz=True)
    paths[3].unlink()
    code, err = run_cli(tmp_path, capsys)
    assert code == 2
    assert "missing t10k-labels-idx1-ubyte" in err
    assert str(tmp_path / "data" / "mnist") in err
