"""SIGTERM / SIGINT in the middle of an experience: the CLI stops cleanly, marks the run KILLED, and it resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.run import run

# Two experiences, each long enough (many epochs) that the signal lands inside the second one.
OVERRIDES = [
    "stream.n_experiences=2",
    "model.backbone_kwargs={hidden: [32]}",
    "train.epochs=120",
    "train.batch_size=64",
]


def start(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["experiments/quickstart.yaml", f"output_dir={tmp_path}", f"tracking.uri={uri}", *OVERRIDES]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lifelong.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return process, args, uri


def wait_for_checkpoint(tmp_path, process, completed, timeout=300.0):
    """The run directory once its checkpoint has reached experience ``completed``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for state in tmp_path.glob("quickstart/*/checkpoints/gen-*/state.json"):
            try:
                if json.loads(state.read_text())["completed"] >= completed:
                    return state.parent.parent.parent
            except (ValueError, KeyError):
                pass  # caught between write and rename: try again
        time.sleep(0.1)
    process.kill()
    pytest.fail("no checkpoint in time")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_experience_stops_cleanly_and_stays_resumable(signum, tmp_path):
    process, args, uri = start(tmp_path)
    run_dir = wait_for_checkpoint(tmp_path, process, completed=0)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert f"--resume {run_dir}" in err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "KILLED"
    assert summary["checkpoint_after_experience"] == 0
    assert summary["experiences_evaluated"] == 1
    client = MlflowClient(uri)
    assert client.get_run(summary["run_id"]).info.status == "KILLED"
    if signum == signal.SIGINT:
        return
    killed = AccuracyMatrix.from_csv(run_dir / "accuracy_matrix.csv")
    # resume (in this process) to the end: same run directory, same MLflow run
    resumed = run(config.load(args[0], args[1:]), quiet=True, resume=run_dir)
    assert resumed.run_id == summary["run_id"]
    assert resumed.matrix.is_complete
    assert resumed.matrix.row(0) == pytest.approx(killed.row(0))
    logged = client.get_run(resumed.run_id)
    assert logged.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(resumed.run_id, "eval/acc/exp1")) == [0, 1]


def test_a_second_sigint_stops_at_once_and_says_where_the_checkpoint_is(tmp_path):
    process, _, uri = start(tmp_path)
    run_dir = wait_for_checkpoint(tmp_path, process, completed=0)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # while the stopped run writes its records (before the fix: a traceback, the run left RUNNING)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "The last checkpoint is from experience 0" in err
    assert f"--resume {run_dir}" in err
    assert "No checkpoint" not in err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "KILLED"
    assert MlflowClient(uri).get_run(summary["run_id"]).info.status == "KILLED"
