"""The README's quickstart output is what `just demo` prints (timings and the run folder's time stamp aside).

The metrics and losses must agree to within 0.02: the run is seeded and deterministic, but another CPU's BLAS kernels
may round differently, and the test is about the README staying true, not about bit-exactness.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def readme_block() -> str:
    """The code block that follows "`just demo` prints" in the README."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index("`just demo` prints") :]
    return after.split("```\n", 2)[1]


METRIC = re.compile(r"-?\d\.\d{3,4}\b")


def normalized(output: str) -> list[str]:
    output = re.sub(r"in \d+\.\ds \(\d+/s\)", "in T s (R/s)", output)
    output = re.sub(r"-\d{8}-\d{6}\b", "-STAMP", output)
    return METRIC.sub("M", output).rstrip("\n").splitlines()


def metrics(output: str) -> list[float]:
    return [float(value) for value in METRIC.findall(output)]


def test_readme_quickstart_block_is_the_demo_output(tmp_path):
    shutil.copy(ROOT / "Justfile", tmp_path)  # the demo runs in a clone: the UI hint names `just ui`
    demo = (ROOT / "Justfile").read_text().split("\ndemo:\n", 1)[1].splitlines()[0].split()
    assert demo == ["lifelong", "run", "experiments/quickstart.yaml"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "lifelong", *demo[1:]]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert normalized(done.stdout) == normalized(readme_block())
    assert metrics(done.stdout) == pytest.approx(metrics(readme_block()), abs=0.02)
