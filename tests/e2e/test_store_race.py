"""First runs at once on a fresh SQLite store: the store is created once and every run finishes.

MLflow creates a SQLite store's tables on first use; two processes doing it at the same moment
used to fail (``duplicate column name``). The processes here import everything first, then all
start their run on the same signal, so they race for the store's creation for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

RUNS = 4
TRACKED_RUN = """
import sys, time
from pathlib import Path
from lifelong.tracking import MlflowTracker
uri, root, i, go = sys.argv[1:]
(Path(root) / f"ready{i}").touch()
while not Path(go).exists():
    time.sleep(0.002)
journal = Path(root) / f"run{i}" / "tracking"
tracker = MlflowTracker(uri, "quickstart", f"er-digits-s{i}", Path(root) / "artifacts", journal)
tracker.start({"seed": i}, {})
for step in range(3):
    tracker.log_metrics({"eval/acc/exp0": 0.5 + step / 10}, step)
    tracker.committed({})
tracker.end("FINISHED")
"""


def start_together(commands, go, env, ready=()):
    """Start ``commands``; once every path in ``ready`` exists (they have imported everything), create ``go``."""
    pipe = subprocess.PIPE
    processes = [subprocess.Popen(c, stdout=pipe, stderr=pipe, text=True, env=env) for c in commands]
    deadline = time.monotonic() + 300
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.write_text("go")
    results = [p.communicate(timeout=600) for p in processes]
    return [p.returncode for p in processes], [err for _, err in results]


def assert_all_finished(uri):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == [str(i) for i in range(RUNS)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_concurrent_first_runs_on_a_fresh_store_all_finish(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    go = tmp_path / "go"
    commands = [[sys.executable, "-c", TRACKED_RUN, uri, str(tmp_path), str(i), str(go)] for i in range(RUNS)]
    ready = [tmp_path / f"ready{i}" for i in range(RUNS)]
    codes, errors = start_together(commands, go, {**os.environ, "OMP_NUM_THREADS": "1"}, ready)
    assert codes == [0] * RUNS, [e[-2000:] for e in errors]
    assert_all_finished(uri)


@pytest.mark.slow
def test_concurrent_first_runs_of_the_command_all_finish(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    run = [sys.executable, "-m", "lifelong.cli", "run", "experiments/quickstart.yaml", f"tracking.uri={uri}"]
    run += ["stream.n_experiences=2", "train.epochs=1", "checkpoint.enabled=false", "--quiet"]
    commands = [[*run, f"output_dir={tmp_path}/out{i}", f"seed={i}"] for i in range(RUNS)]
    codes, errors = start_together(commands, tmp_path / "unused", {**os.environ, "OMP_NUM_THREADS": "1"})
    assert codes == [0] * RUNS, [e[-2000:] for e in errors]
    assert_all_finished(uri)
