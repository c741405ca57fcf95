"""SIGKILL a run (inside the checkpoint commit, and at random points) and resume it, again and again.

Real processes, real SIGKILL (``LIFELONG_CRASH_AT`` makes a process kill itself at a named point of
the commit; the test kills it from outside at a random moment of training), a real SQLite store.
After the last resume the accuracy matrix is the uninterrupted run's, every metric is in MLflow
exactly once at its step with the uninterrupted value, and the run is FINISHED.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.cli import main
from lifelong.run import run

T = 5
KILLS = 8  # random SIGKILLs of the slow test
OVERRIDES = [
    f"stream.n_experiences={T}",
    "model.backbone_kwargs={hidden: [32], dropout: 0.2}",  # dropout draws from the global torch RNG
    "train.epochs=2",
    "train.batch_size=32",
    "train.log_every_n_steps=3",
    "trainer.deterministic=true",
]


def args_for(root):
    return ["experiments/quickstart.yaml", f"output_dir={root}", f"tracking.uri=sqlite:///{root}/mlflow.db", *OVERRIDES]


def launch(root, crash_at=None, resume=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LIFELONG_CRASH_AT", None)
    if crash_at:
        env["LIFELONG_CRASH_AT"] = crash_at
    extra = ["--resume", str(resume)] if resume else []
    command = [sys.executable, "-m", "lifelong.cli", "run", *args_for(root), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def kill_during_training(process, rng, longest=1.5, root=None):
    """SIGKILL ``process`` at a random moment after it printed its run directory (training has begun).

    With ``root``: only once the run has a checkpoint to resume from.
    """
    for line in process.stdout:
        if line.startswith("run dir:"):
            break
    while root is not None and not list(root.glob("quickstart/*/checkpoints/LATEST")) and process.poll() is None:
        time.sleep(0.02)
    delay = rng.uniform(0.0, longest)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    return delay


def run_dir_of(root):
    (run_dir,) = (root / "quickstart").iterdir()
    return run_dir


def reference(root):
    """The uninterrupted run, in this process (one thread, as the subprocesses)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(config.load(args_for(root)[0], args_for(root)[1:]), quiet=True)
    finally:
        torch.set_num_threads(threads)


def histories(uri, run_id):
    """Every computed metric's history (``system/*`` are measurements of the machine, not of the run)."""
    client = MlflowClient(uri)
    keys = [key for key in client.get_run(run_id).data.metrics if not key.startswith("system/")]
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def assert_same_as_uninterrupted(root, full):
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    (only,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert only.info.status == "FINISHED"
    run_dir = run_dir_of(root)
    expected = (full.run_dir / "accuracy_matrix.csv").read_text()
    assert (run_dir / "accuracy_matrix.csv").read_text() == expected
    logged, wanted = histories(uri, only.info.run_id), histories(full.config.tracking.uri, full.run_id)
    assert logged.keys() == wanted.keys()
    for key, values in logged.items():
        steps = [step for step, _ in values]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step"
        assert values == wanted[key], key
    assert sum(key.startswith("eval/acc/") for key in logged) == T
    lines = [json.loads(line) for line in (run_dir / "tracking" / "metrics.jsonl").read_text().splitlines()]
    assert len({(v["key"], v["step"]) for v in lines}) == len(lines)  # the journal holds each value once too


def killed_run(root):
    """The store's client and its one run, which a SIGKILL left RUNNING."""
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    (dead,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert dead.info.status == "RUNNING"
    return client, dead


def test_sigkill_inside_the_commit_and_at_random_points_then_resume(tmp_path):
    rng = random.Random(15)
    full = reference(tmp_path / "full")
    root = tmp_path / "cut"
    # 1. killed with the second generation complete but not committed: resume falls back to the first
    code, _, err = finish(launch(root, crash_at="checkpoint.state@2"))
    assert code == -signal.SIGKILL, err
    run_dir = run_dir_of(root)
    client, dead = killed_run(root)
    assert main(["sync", str(run_dir)]) == 0  # the process is gone: sync marks the run FAILED
    assert client.get_run(dead.info.run_id).info.status == "FAILED"
    # 2. killed after the journal was fsynced, before the generation's files were written
    code, _, err = finish(launch(root, crash_at="journal.synced@2", resume=run_dir))
    assert code == -signal.SIGKILL, err
    # 3. killed from outside at a random moment of training
    process = launch(root, resume=run_dir)
    kill_during_training(process, rng)
    code, _, err = finish(process)
    assert code in (-signal.SIGKILL, 0), err
    # 4. killed after the commit, before anything was sent to MLflow
    code, _, err = finish(launch(root, crash_at="checkpoint.pointer@1", resume=run_dir))
    assert code in (-signal.SIGKILL, 0), err
    # 5. the last resume finishes
    code, out, err = finish(launch(root, resume=run_dir))
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert_same_as_uninterrupted(root, full)


def test_a_run_killed_in_its_first_checkpoint_is_marked_failed_by_resume(tmp_path, capsys):
    code, _, err = finish(launch(tmp_path, crash_at="checkpoint.files@1"))
    assert code == -signal.SIGKILL, err
    run_dir = run_dir_of(tmp_path)
    client, dead = killed_run(tmp_path)
    assert main(["run", *args_for(tmp_path), "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err
    assert "state.json is missing (the run died while writing it)" in err
    assert client.get_run(dead.info.run_id).info.status == "FAILED"
    assert json.loads((run_dir / "tracking" / "run.json").read_text())["status"] == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1515, 7, 42])
def test_many_random_sigkills_then_resume(seed, tmp_path):
    rng = random.Random(seed)
    full = reference(tmp_path / "full")
    root = tmp_path / "cut"
    process, kills, delays = launch(root), 0, []
    for attempt in range(KILLS):
        delays.append(kill_during_training(process, rng, root=root if attempt == 0 else None))
        code, _, err = finish(process)
        process = None
        if code == 0:  # it finished before the kill came
            break
        assert code == -signal.SIGKILL, err
        kills += 1
        process = launch(root, resume=run_dir_of(root))
    if process is not None:  # the last resume runs to the end
        code, _, err = finish(process)
        assert code == 0, err[-3000:]
    print(f"{kills} SIGKILLs survived, delays {[round(d, 2) for d in delays]}")
    assert kills >= 3
    assert_same_as_uninterrupted(root, full)
