"""Two-process DDP on CPU (gloo) via the CLI: sharded replay memory, evaluation reduced over ranks, one MLflow run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong.checkpoint import read_state
from lifelong.data import build_stream, resolve_root

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed (gloo)")


def ddp_run(tmp_path, strategy, n_experiences):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [
        sys.executable,
        "-m",
        "lifelong.cli",
        "run",
        "experiments/quickstart.yaml",
        f"output_dir={tmp_path}",
        f"tracking.uri={uri}",
        f"strategy.name={strategy}",
        f"stream.n_experiences={n_experiences}",
        "model.backbone_kwargs={hidden: [32]}",
        "train.epochs=1",
        "train.batch_size=32",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.accelerator=cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "quickstart").iterdir()
    generation = run_dir / "checkpoints" / read_state(run_dir)["generation"]
    ranks = [json.loads((generation / f"rank{r}.json").read_text()) for r in range(2)]
    return done, run_dir, ranks, uri


def stream_sizes(n_experiences):
    stream = build_stream("digits", "class_incremental", n_experiences, root=resolve_root(None), seed=0)
    return [len(e.dataset) for e in stream.train], [len(e.dataset) for e in stream.test]


def assert_logged_once(uri, n_experiences):
    client = MlflowClient(uri)
    (only,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert only.info.status == "FINISHED"
    assert only.data.tags["world_size"] == "2"
    for key in ("eval/acc/exp0", "stream/avg_acc"):
        assert sorted(m.step for m in client.get_metric_history(only.info.run_id, key)) == list(range(n_experiences))
    steps = [m.step for m in client.get_metric_history(only.info.run_id, "train/loss")]
    assert len(steps) == len(set(steps)) > 0
    return only


def test_er_shards_its_memory_and_reduces_evaluation(tmp_path):
    done, run_dir, ranks, uri = ddp_run(tmp_path, "er", 5)
    assert done.stdout.count("avg_acc") >= 1
    assert done.stdout.count("er-digits-s0: 5 experiences") == 1  # rank 1 prints nothing
    train_sizes, test_sizes = stream_sizes(5)
    # the progress line counts the samples of both ranks (global samples/s), padding included
    printed = [int(n) for n in re.findall(r"exp \d: classes \[[^]]*\] \| (\d+) samples in", done.stdout)]
    assert len(printed) == 5
    for count, size in zip(printed, train_sizes, strict=True):
        assert size <= count <= size + 1
    for rank, info in enumerate(ranks):
        assert info["rank"] == rank
        assert info["world_size"] == 2
        memory = info["memories"]["memory"]
        # quickstart's memory_size=200 over 2 ranks: 100 slots each, full after 5 experiences
        assert (memory["total_capacity"], memory["capacity"], memory["stored"]) == (200, 100, 100)
        # each rank saw its half of every experience (DistributedSampler pads a shard by at most one sample)
        assert 0 <= memory["seen"] - sum(train_sizes) / 2 <= len(train_sizes)
        # the evaluation counted every test sample exactly once over both ranks
        assert info["eval_samples"] == test_sizes
    generation = run_dir / "checkpoints" / read_state(run_dir)["generation"]
    shards = [torch.load(generation / f"rank{r}.pt", weights_only=True)["module"] for r in range(2)]
    assert shards[0]["strategy.memory.x"].shape == (100, 1, 8, 8)
    assert not torch.equal(shards[0]["strategy.memory.x"], shards[1]["strategy.memory.x"])  # rank-local, not synced
    assert torch.equal(shards[0]["model.head.weight"], shards[1]["model.head.weight"])  # DDP keeps the model in sync
    summary = json.loads((run_dir / "summary.json").read_text())
    logged = assert_logged_once(uri, 5)
    assert logged.data.metrics["stream/avg_acc"] == pytest.approx(summary["metrics"]["avg_acc"])
    assert summary["metrics"]["avg_acc"] > 0.3  # chance is 0.1


def test_finetune_runs_to_the_end(tmp_path):
    _, run_dir, ranks, uri = ddp_run(tmp_path, "finetune", 2)
    _, test_sizes = stream_sizes(2)
    assert [info["memories"] for info in ranks] == [{}, {}]
    assert [info["eval_samples"] for info in ranks] == [test_sizes, test_sizes]
    assert json.loads((run_dir / "summary.json").read_text())["experiences_evaluated"] == 2
    assert_logged_once(uri, 2)
