"""A run that breaks mid-stream says why and keeps what it computed."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.cli import main
from lifelong.errors import NonFiniteLossError
from lifelong.run import run


def test_nan_loss_names_the_step_and_keeps_the_evaluated_rows(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # lr 1e4 diverges within the first experience's epochs (plain SGD on an MLP)
    cfg = config.load("experiments/quickstart.yaml", [f"output_dir={tmp_path}", f"tracking.uri={uri}", "optim.lr=1e4"])
    with pytest.raises(NonFiniteLossError, match=r"at experience \d+, global step \d+; lower optim.lr"):
        run(cfg, quiet=True)
    (summary_path,) = tmp_path.glob("quickstart/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "FAILED"
    assert (summary_path.parent / "accuracy_matrix.csv").read_text().startswith("after_exp,exp0")
    (failed,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("quickstart").experiment_id])
    assert failed.info.status == "FAILED"
    # the evaluation before training was logged before the failure
    assert "eval/init_acc/exp0" in failed.data.metrics


def test_cli_prints_the_nan_message_without_a_traceback(tmp_path, capsys):
    args = ["run", "experiments/quickstart.yaml", f"output_dir={tmp_path}", "tracking.enabled=false", "optim.lr=1e4"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training loss is")
    assert "Traceback" not in err
    # a resume keeps the config (and would diverge again): the hint is a new run with a lower rate
    assert "--resume" not in err
    assert err.rstrip().endswith("tracking.enabled=false optim.lr=1000")
