"""Seeds under a parent run, comparison by config digest, and what a run records (real runs, SQLite store).

One ``lifelong run --seeds 0,1,2`` of a config and one run of the same config with another memory
size: ``compare`` and the HTML report must show two rows (n=3 and n=1), never one pooled row.
"""

from __future__ import annotations

import html
import json
import os
import re
import statistics
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import lifelong
from lifelong import config
from lifelong.cli import main
from lifelong.digest import short_digest
from lifelong.provenance import resolved_params
from lifelong.report import write_report

BASE = ["stream.n_experiences=2", "stream.train_per_class=60", "train.epochs=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{root}/mlflow.db"
    where = [f"output_dir={root}", f"tracking.uri={uri}"]
    before = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "60"  # longer than the runs: the final sample is the one
    try:
        assert main(["run", "experiments/quickstart.yaml", *BASE, *where, "--seeds", "0,1,2", "--quiet"]) == 0
        assert main(["run", "experiments/quickstart.yaml", *BASE, *where, "strategy.params.memory_size=10"]) == 0
    finally:
        if before is None:
            os.environ.pop("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
        else:
            os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = before
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    return root, uri, runs


def summary_table(page: str) -> list[list[str]]:
    """The cells of the report's ``summary-table``, row by row (header first)."""
    table = re.search(r'<table id="summary-table".*?</table>', page, re.S).group(0)
    return [
        [html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]


def split(runs):
    parents = [r for r in runs if r.data.tags.get("lifelong.role") == "seeds"]
    return parents, [r for r in runs if r not in parents]


def test_seeds_are_nested_under_a_parent_holding_their_mean_and_std(store):
    _, _, runs = store
    parents, children = split(runs)
    assert len(parents) == 1
    parent = parents[0]
    nested = [r for r in children if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in nested) == ["0", "1", "2"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["seeds"] == "0,1,2"
    for metric in ("avg_acc", "forgetting"):
        values = [r.data.metrics[f"stream/{metric}"] for r in nested]
        assert parent.data.metrics[f"stream/{metric}"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert parent.data.metrics[f"stream/{metric}_std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    digest = nested[0].data.tags["lifelong.config_digest"]
    assert {r.data.tags["lifelong.config_digest"] for r in nested} == {digest}
    assert parent.info.run_name == f"er-digits-{digest[:8]}-x3"
    alone = [r for r in children if "mlflow.parentRunId" not in r.data.tags]
    assert len(alone) == 1
    assert alone[0].data.tags["lifelong.config_digest"] != digest
    assert alone[0].info.run_name != nested[0].info.run_name.replace("-s0", "-s1")


def test_compare_gives_one_row_per_config(store, tmp_path, capsys):
    _, uri, runs = store
    out = tmp_path / "cmp.md"
    assert main(["compare", "quickstart", "--uri", uri, "--out", str(out)]) == 0
    lines = [line for line in out.read_text().splitlines() if line.startswith("| er")]
    assert len(lines) == 2
    three = next(line for line in lines if "memory_size=200" in line)
    one = next(line for line in lines if "memory_size=10)" in line)
    assert "| 3 | 0,1,2 |" in three
    assert "| 1 | 0 |" in one
    _, children = split(runs)
    nested = [r for r in children if "mlflow.parentRunId" in r.data.tags]
    mean = statistics.fmean(r.data.metrics["stream/avg_acc"] for r in nested)
    assert f"| {mean:.4f} ± " in three  # avg_acc is the first metric column
    assert main(["compare", "quickstart", "--uri", uri, "--out", str(out), "--by", "strategy.name"]) == 0
    assert "| er | 2 configs | 4 | 0×2,1,2 |" in out.read_text()


def test_report_gives_one_row_per_config(store, tmp_path):
    root, _, _ = store
    page = write_report(root / "quickstart", tmp_path / "report.html")
    table = summary_table(page.read_text())
    rows = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert set(rows) == {"er (memory_size=200)", "er (memory_size=10)"}
    assert rows["er (memory_size=200)"]["runs"] == "3"
    assert rows["er (memory_size=10)"]["runs"] == "1"


def test_a_run_records_resolved_params_stream_input_source_and_system_metrics(store):
    root, _, runs = store
    _, children = split(runs)
    run = next(r for r in children if r.data.params["seed"] == "1")
    cfg = config.load("experiments/quickstart.yaml", [*BASE, "seed=1"])
    assert run.data.params["strategy.params.replay_batch_size"] == "None"  # ER's default, not in the YAML
    assert run.data.params["model.backbone_kwargs.dropout"] == "0.0"
    assert run.data.tags["lifelong.config_digest"].startswith(short_digest(resolved_params(cfg)))
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "digits-class_incremental"
    profile = json.loads(dataset.profile)
    assert sorted(c for classes in profile["class_order"] for c in classes) == list(range(10))
    assert profile["train_counts"] == [300, 300]  # 60 per class, 5 classes per experience
    assert sum(profile["test_counts"]) > 300
    other_seed = next(r for r in children if r.data.params["seed"] == "0")
    assert other_seed.inputs.dataset_inputs[0].dataset.digest != dataset.digest  # another class order
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    package = Path(lifelong.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert run.data.tags["git.commit"] == head.stdout.strip()
        assert run.data.tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert any(key.startswith("system/cpu") for key in run.data.metrics)


def test_load_model_from_a_run_directory_takes_its_last_model(store):
    _, _, runs = store
    _, children = split(runs)
    run = children[0]
    model = lifelong.load_model(run.data.tags["lifelong.run_dir"])  # the journal names the run and the store
    last = max(run.outputs.model_outputs, key=lambda o: o.step)
    assert model.model_id == last.model_id
    assert model.experience == last.step == 1


def test_several_seeds_with_an_unreachable_server_fail_before_training(tmp_path, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    argv = ["run", "experiments/quickstart.yaml", f"output_dir={tmp_path}", f"tracking.uri={uri}", "--seeds", "0,1"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: MLflow tracking at {uri} is unreachable")
    assert not (tmp_path / "quickstart").exists()


def test_the_hint_after_a_run_points_at_the_experiments_runs(store):
    from lifelong.cli import _ui_hint

    root, uri, runs = store
    cfg = config.load("experiments/quickstart.yaml", [f"output_dir={root}", f"tracking.uri={uri}"])
    hint = _ui_hint(cfg)
    assert f"MLflow UI: lifelong ui quickstart --output-dir {root}" in hint  # the store of that output_dir
    assert f"#/experiments/{runs[0].info.experiment_id}/runs?workflowType=machine_learning" in hint
