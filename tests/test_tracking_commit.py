"""The tracker and checkpoint commits: evaluation values wait for the commit; a resume neither loses nor repeats."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from lifelong.tracking import MlflowTracker
from lifelong.tracking import tracker as tracking  # the module whose constants the tracker reads


def tracker_in(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return MlflowTracker(uri, "exp", "er-digits-s0", tmp_path / "artifacts", tmp_path / "run" / "tracking"), uri


def steps(uri, run_id, key):
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_evaluation_values_are_fsynced_at_the_barrier_and_sent_only_after_the_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "FLUSH_EVERY", 1)  # send at every log: only the hold keeps values back
    tracker, uri = tracker_in(tmp_path)
    run_id = tracker.start({"seed": "0"}, {})
    tracker.log_metrics({"eval/acc/exp0": 0.1}, 0)
    assert tracker.barrier() == {"metrics": 1}
    tracker.committed({})
    tracker.log_metrics({"train/loss": 2.0}, 5)
    tracker.log_metrics({"eval/acc/exp0": 0.5, "stream/avg_acc": 0.5}, 1)
    tracker.log_metrics({"analysis/x": 1.0}, 1)
    assert tracker.barrier() == {"metrics": 5}
    assert len((tmp_path / "run" / "tracking" / "metrics.jsonl").read_text().splitlines()) == 5  # on disk
    assert steps(uri, run_id, "train/loss") == [5]  # training values go at once
    assert steps(uri, run_id, "eval/acc/exp0") == [0]  # the evaluation after experience 1 waits ...
    tracker.committed({})
    assert steps(uri, run_id, "eval/acc/exp0") == [0, 1]  # ... for the commit of its checkpoint
    assert steps(uri, run_id, "analysis/x") == [1]
    tracker.end()


def test_resume_drops_the_uncommitted_tail_and_skips_what_mlflow_has(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "FLUSH_EVERY", 1)
    tracker, uri = tracker_in(tmp_path)
    run_id = tracker.start({"seed": "0"}, {})
    tracker.log_metrics({"eval/acc/exp0": 0.1}, 0)
    mark = tracker.barrier()["metrics"]
    tracker.committed({})
    tracker.log_metrics({"train/loss": 2.0}, 3)  # sent: MLflow has it
    tracker.log_metrics({"eval/acc/exp0": 0.7}, 1)  # held: the process dies before the commit
    tracker.barrier()
    tracker.journal.unlock()  # as SIGKILL would: no end()

    again, _ = tracker_in(tmp_path)
    assert again.resume(journal_mark=mark) == run_id
    journal = (tmp_path / "run" / "tracking" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in journal] == ["eval/acc/exp0", "train/loss"]  # the held tail is gone
    again.log_metrics({"train/loss": 2.0}, 3)  # the redone step: MLflow has it already
    again.log_metrics({"train/loss": 1.0}, 6)
    again.log_metrics({"eval/acc/exp0": 0.6}, 1)
    again.barrier()
    again.committed({})
    again.end()
    assert steps(uri, run_id, "train/loss") == [3, 6]
    assert [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, "eval/acc/exp0")] in (
        [(0, 0.1), (1, 0.6)],
        [(1, 0.6), (0, 0.1)],
    )
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_sync_marks_a_run_whose_process_is_gone_failed_but_not_a_live_one(tmp_path):
    tracker, uri = tracker_in(tmp_path)
    run_id = tracker.start({"seed": "0"}, {})
    report = tracking.sync_run(tmp_path / "run")  # this process still holds the run's lock: it is alive
    assert not report["died"]
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    tracker.journal.unlock()  # the process is gone (the kernel drops the lock of a killed process)
    report = tracking.sync_run(tmp_path / "run")
    assert report["died"]
    assert report["status"] == "FAILED"
    assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"
