"""Bad inputs and faults a hostile or unlucky user meets: each is one line of error, exit code 2, no traceback.

The table names the input, what the command line is, and what the message must say (the key or the
file, and the way out). Inputs that can be judged before the data is loaded leave no run behind.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from lifelong.cli import main
from lifelong.generations import Generations

QUICK = ["tracking.enabled=false", "stream.n_experiences=2", "train.epochs=1"]


def write_mnist(folder, bad_label=None):
    """A tiny MNIST IDX set (20 train, 10 test images, 10 classes); ``bad_label`` replaces one train label."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.arange(20, dtype=np.uint8) % 10
    if bad_label is not None:
        labels[7] = bad_label
    arrays = [rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), labels]
    arrays += [rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10, dtype=np.uint8)]
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for stem, array in zip(stems, arrays, strict=True):
        data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
        (folder / f"{stem}.gz").write_bytes(gzip.compress(data))


def alias_bomb(tmp):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join([f'*{chr(ord(c) - 1)}'] * 10)}]" for c in "bcdefghi"]
    (tmp / "bomb.yaml").write_text("\n".join(lines) + "\n")
    return [str(tmp / "bomb.yaml")]


def huge_list(tmp):
    (tmp / "list.yaml").write_text("stream: {class_order: [" + ",".join(["0"] * 5_000_000) + "]}\n")
    return [str(tmp / "list.yaml")]


def corrupt_labels(tmp):
    write_mnist(tmp / "data" / "mnist", bad_label=200)
    return ["experiments/quickstart.yaml", "stream.dataset=mnist", f"stream.root={tmp / 'data'}"]


def checkpoint_run(tmp, damage):
    """A run folder whose only checkpoint generation is damaged by ``damage(generation folder)``."""
    run_dir = tmp / "runs" / "quickstart" / "er-digits-s0-20260101-000000"
    store = Generations(run_dir / "checkpoints")
    store.write_rank("gen-000001", 0, {"rank0.pt": {"completed": -1, "w": torch.zeros(3)}})
    store.commit("gen-000001", {"completed": -1, "world_size": 1}, 1)
    damage(run_dir / "checkpoints" / "gen-000001")
    return ["experiments/quickstart.yaml", "--resume", str(run_dir)]


def a_file(tmp):
    (tmp / "file").write_text("not a folder")
    return tmp / "file"


CASES = {  # id: (command line after `run`, what the one-line message says)
    "alias-bomb": (alias_bomb, r"bomb.yaml expands to more than 100000 values"),
    "5M-element-list": (huge_list, r"list.yaml is \d+ bytes; a config file may have at most"),
    "400-byte-name": (lambda t: ["experiments/quickstart.yaml", "name=" + "x" * 400], r"name='x+\.\.\.' is 400 bytes"),
    "name-dotdot": (lambda t: ["experiments/quickstart.yaml", "name=.."], r"name='\.\.' is not allowed"),
    "experiment-traversal": (
        lambda t: ["experiments/quickstart.yaml", "tracking.experiment=../../../x"],
        r"tracking.experiment='\.\./\.\./\.\./x' is not allowed \(it would be a path",
    ),
    "shell-from-config": (
        lambda t: [
            "experiments/avalanche_split_fmnist.yaml",
            "stream.avalanche.benchmark=subprocess:getoutput",
            f"stream.avalanche.kwargs={{cmd: 'touch {t / 'ran'}'}}",
        ],
        r"stream.avalanche.benchmark='subprocess:getoutput' names code in 'subprocess'.*--allow-code subprocess",
    ),
    "corrupt-labels": (corrupt_labels, r"train-labels-idx1-ubyte.gz: label 200 of sample 7 is outside 0..9"),
    "zero-length-checkpoint": (
        lambda t: checkpoint_run(t, lambda g: (g / "rank0.pt").write_bytes(b"")),
        r"no usable checkpoint: .*rank0.pt has 0 bytes, \d+ were written",
    ),
    "died-in-first-checkpoint": (
        lambda t: checkpoint_run(t, lambda g: (g / "state.json").unlink()),
        r"no usable checkpoint: .*state.json is missing \(the run died while writing it\)",
    ),
    "output-dir-is-a-file": (
        lambda t: ["experiments/quickstart.yaml", f"output_dir={a_file(t) / 'runs'}"],
        r"output_dir='.*file/runs' cannot be written \(.*is not a folder\)",
    ),
    "store-under-a-file": (
        lambda t: ["experiments/quickstart.yaml", "tracking.enabled=true", f"tracking.uri=sqlite:///{a_file(t)}/m.db"],
        r"the MLflow store .*file/m.db cannot be written \(.*file is not a file in a folder\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_one_line_and_exit_code_2(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIFELONG_ALLOW_CODE", "")
    make, message = CASES[case]
    config, *rest = make(tmp_path)
    code = main(["run", config, *QUICK, f"output_dir={tmp_path / 'runs'}", *rest])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "ran").exists()  # no command of the config ran
    if "checkpoint" not in case:
        assert not list(tmp_path.glob("runs/*/*")), "a run was started"


def test_the_real_command_refuses_code_from_a_config_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    command = [sys.executable, "-m", "lifelong.cli", "run", "experiments/avalanche_split_fmnist.yaml"]
    command += ["stream.avalanche.benchmark=subprocess:getoutput", f"stream.avalanche.kwargs={{cmd: 'touch {marker}'}}"]
    command += [f"output_dir={tmp_path}", "tracking.enabled=false"]
    env = {k: v for k, v in os.environ.items() if k != "LIFELONG_ALLOW_CODE"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "--allow-code subprocess" in done.stderr
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []
