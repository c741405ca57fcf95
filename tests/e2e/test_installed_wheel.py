"""The built wheel in a fresh virtualenv, run from an empty folder: shipped experiments, --version, python -m.

The virtualenv sees the test venv's packages through a ``.pth`` line (torch is not installed again), but not
its editable install of this clone: ``lifelong`` is imported from the wheel, and no clone is in reach.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``bin`` folder of a fresh virtualenv holding the wheel built from this clone."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp / "dist")],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("lifelong-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    new_site = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    Path(new_site, "test-venv.pth").write_text(site.getsitepackages()[0] + "\n")
    # --ignore-installed: the test venv's editable install is visible, and is never to be uninstalled
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--ignore-installed", wheel]
    subprocess.run(pip, check=True, capture_output=True, env=clean_env())
    return venv / "bin"


def clean_env() -> dict[str, str]:
    """The environment without a path to this clone or a tracking server."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}


def run_in_empty_dir(command: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def test_wheel_runs_the_shipped_quickstart_from_an_empty_folder(installed, tmp_path):
    where = run_in_empty_dir([installed / "python", "-c", "import lifelong; print(lifelong.__file__)"], tmp_path)
    assert where.stdout.startswith(str(installed.parent)), where.stdout + where.stderr
    done = run_in_empty_dir(
        [installed / "lifelong", "run", "quickstart", "stream.n_experiences=2", "train.epochs=1"], tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "avg_acc" in done.stdout
    assert "MLflow UI: lifelong ui quickstart\n" in done.stdout  # no `just ui`: there is no Justfile here
    assert list((tmp_path / "runs" / "quickstart").glob("er-digits-s0-*/summary.json"))


def test_wheel_has_version_and_python_m(installed, tmp_path):
    version = run_in_empty_dir([installed / "lifelong", "--version"], tmp_path)
    assert version.returncode == 0
    assert version.stdout.strip().startswith("lifelong 0.")
    helped = run_in_empty_dir([installed / "python", "-m", "lifelong", "--help"], tmp_path)
    assert helped.returncode == 0
    assert "usage: lifelong" in helped.stdout
    listed = run_in_empty_dir([installed / "python", "-m", "lifelong", "list"], tmp_path)
    assert "  quickstart " in listed.stdout
    assert "  _fmnist_online" not in listed.stdout
