"""A whole run on real data (Split Digits) into a real SQLite MLflow store, read back with MlflowClient."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.cli import main
from lifelong.digest import short_digest
from lifelong.provenance import resolved_params, tracked_run_name
from lifelong.run import run

T = 5


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = config.load(
        "experiments/quickstart.yaml",
        [f"output_dir={root}", f"tracking.uri={uri}", "train.epochs=2", "train.log_every_n_steps=5"],
    )
    return run(cfg, quiet=True), uri


def test_metrics_land_at_experience_steps(finished):
    result, uri = finished
    client = MlflowClient(uri)
    history = client.get_metric_history(result.run_id, "eval/acc/exp0")
    assert sorted(m.step for m in history) == list(range(T))
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        result.matrix.as_tensor()[:, 0].tolist()
    )
    avg = {m.step: m.value for m in client.get_metric_history(result.run_id, "stream/avg_acc")}
    assert sorted(avg) == list(range(T))
    assert avg[T - 1] == pytest.approx(result.metrics["avg_acc"])
    init = client.get_metric_history(result.run_id, "eval/init_acc/exp3")
    assert len(init) == 1
    assert init[0].value == pytest.approx(result.matrix.initial[3])


def test_train_loss_step_never_restarts(finished):
    result, uri = finished
    steps = [m.step for m in MlflowClient(uri).get_metric_history(result.run_id, "train/loss")]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)
    # 5 experiences x 2 epochs over ~290 samples in batches of 16: far more steps than one experience has
    assert max(steps) > 2 * 19 * 4


def test_params_tags_and_artifacts(finished):
    result, uri = finished
    client = MlflowClient(uri)
    run_ = client.get_run(result.run_id)
    assert run_.info.status == "FINISHED"
    assert run_.info.run_name == tracked_run_name(result.config)  # er-digits-<digest>-s0
    assert run_.info.run_name.startswith("er-digits-")
    assert run_.info.run_name.endswith("-s0")
    assert run_.data.params["strategy.params.memory_size"] == "200"
    assert run_.data.params["stream.dataset"] == "digits"
    assert run_.data.tags["precision"] == "32-true"
    files = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "accuracy_matrix.csv", "accuracy_matrix.png", "summary.json"} <= files
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["metrics"]["avg_acc"] == pytest.approx(result.metrics["avg_acc"])


def test_er_learns_split_digits(finished):
    result, _ = finished
    assert result.metrics["avg_acc"] > 0.5  # chance is 0.1 over 10 classes


def test_compare_groups_runs_by_config(finished, tmp_path, capsys):
    result, uri = finished
    out = tmp_path / "cmp.md"
    assert main(["compare", "quickstart", "--uri", uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert f"| er | {short_digest(resolved_params(result.config))} | 1 | 0 |" in text
    assert "avg_acc" in text
    assert f"{result.metrics['avg_acc']:.4f} ± 0.0000" in text
