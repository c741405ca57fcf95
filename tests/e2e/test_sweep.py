"""``lifelong sweep`` on submitit's local executor, and a preempted / killed job that is requeued (real processes).

The sweep is 2 strategies x 2 batch sizes x 2 seeds with ``--jobs 2`` (real SQLite store, tiny MLP, 2
experiences of Split Digits). The requeued job is the run of ``test_hard_kill`` (5 experiences, dropout,
deterministic): preempted with submitit's signal (USR2, what SLURM sends before it preempts), requeued by
submitit through ``RunJob.checkpoint()``, then SIGKILLed and submitted again; it must end with the
uninterrupted run's accuracy matrix and metric histories, in the same MLflow run.
"""

from __future__ import annotations

import signal
import statistics
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient
from submitit.core.utils import UncompletedJobError

from lifelong.checkpoint import read_state
from lifelong.cli import main
from lifelong.launch import LaunchOptions, RunJob, make_executor
from tests.e2e.test_hard_kill import args_for, assert_same_as_uninterrupted, reference

TINY = [
    "stream.n_experiences=2",
    "stream.train_per_class=60",
    "train.epochs=1",
    "model.backbone_kwargs={hidden: [32]}",
    "tracking.log_models=false",
    "tracking.system_metrics=false",
]
GRID = ["strategy.name=er,finetune", "train.batch_size=16,32"]


def test_a_2x2x2_sweep_is_one_parent_with_8_nested_runs_and_a_2x2_grid(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    where = [f"output_dir={tmp_path}", f"tracking.uri={uri}"]
    argv = ["sweep", "experiments/quickstart.yaml", *TINY, *where, "--seeds", "0,1", "--jobs", "2", "--grid", *GRID]
    assert main(argv) == 0, capsys.readouterr()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("lifelong.role") == "sweep"]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 9
    assert len(nested) == 8
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/runs"] == 8
    assert parent.data.params["sweep.grid"] == " ".join(GRID)
    assert "strategy.name" not in parent.data.params  # swept: not a param shared by the runs
    cells = sorted(
        (r.data.params["strategy.name"], r.data.params["train.batch_size"], r.data.params["seed"]) for r in nested
    )
    assert cells == sorted((s, b, seed) for s in ("er", "finetune") for b in ("16", "32") for seed in ("0", "1"))
    assert all(r.info.status == "FINISHED" for r in nested)
    assert len({r.data.tags["lifelong.run_dir"] for r in nested}) == 8
    capsys.readouterr()
    assert main(["compare", "quickstart", "--uri", uri, "--output-dir", str(tmp_path), "--grid"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0] == "| strategy.name \\ train.batch_size | 16 | 32 |"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| er", "| finetune"]
    for line in table[2:]:
        strategy = line.split(" | ")[0].removeprefix("| ")
        for batch, cell in zip(("16", "32"), line.strip("| ").split(" | ")[1:], strict=True):
            values = [
                r.data.metrics["stream/avg_acc"]
                for r in nested
                if r.data.params["strategy.name"] == strategy and r.data.params["train.batch_size"] == batch
            ]
            mean, sd = statistics.fmean(values), statistics.stdev(values)
            assert cell == f"{mean:.4f} ± {sd:.4f} (n=2)"


def task_of(job, timeout=120):
    """The process running the job's function (the child of submitit's local controller)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(job._process.pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise AssertionError("the job's task did not start")


def wait_for_checkpoint(run_dir, after, job, timeout=240):
    """Wait until the run has committed a checkpoint of an experience later than ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not job.done():
        try:
            completed = read_state(run_dir, quiet=True)["completed"]
        except Exception:  # noqa: BLE001 - not written yet
            completed = -2
        if completed > after:
            return completed
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after experience {after} in {run_dir}: {job.stderr()}")


def test_a_preempted_then_killed_job_resumes_its_run_to_the_uninterrupted_result(tmp_path):
    full = reference(tmp_path / "full")
    root = tmp_path / "cut"
    config, *overrides = args_for(root)
    run_dir = root / "quickstart" / "requeued"
    job = RunJob(config, overrides, 0, str(run_dir), threads=1)
    executor = make_executor(LaunchOptions("local", 1, folder=tmp_path / "submitit"))
    submitted = executor.submit(job)
    first = task_of(submitted)
    wait_for_checkpoint(run_dir, 0, submitted)
    first.send_signal(signal.SIGUSR2)  # preemption: submitit checkpoints the job and requeues it
    first.wait(60)
    second = task_of(submitted)
    assert second.pid != first.pid
    reached = wait_for_checkpoint(run_dir, read_state(run_dir, quiet=True)["completed"], submitted)
    assert reached < 4, "the run ended before it could be killed"
    second.send_signal(signal.SIGKILL)  # a lost node: nothing runs in the job, which fails
    with pytest.raises(UncompletedJobError, match="has not produced any output"):
        submitted.result()
    again = executor.submit(job)  # SLURM's requeue of the same job script
    assert again.result()["run_dir"] == str(run_dir)
    log = (submitted.stdout() or "") + (submitted.stderr() or "")
    assert "this job is preempted" in log
    assert "Calling checkpoint method" in log
    assert_same_as_uninterrupted(root, full)
