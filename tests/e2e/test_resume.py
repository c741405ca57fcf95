"""Stop a run after experience k of T and resume it: the same accuracy matrix, bit for bit, in one MLflow run."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config, loop
from lifelong.checkpoint import read_state
from lifelong.errors import ConfigError, NonFiniteLossError, RunInterrupted
from lifelong.run import run

T = 5
K = 2  # the run is stopped while training experience K, so its last checkpoint is from experience K - 1


def load(root, strategy, *extra):
    return config.load(
        "experiments/quickstart.yaml",
        [
            f"output_dir={root}",
            f"tracking.uri=sqlite:///{root}/mlflow.db",
            f"strategy.name={strategy}",
            f"stream.n_experiences={T}",
            "model.backbone_kwargs={hidden: [32], dropout: 0.2}",  # dropout draws from the global torch RNG
            "train.epochs=1",
            "train.batch_size=32",
            "train.log_every_n_steps=3",
            "trainer.deterministic=true",
            *extra,
        ],
    )


def stop_at(monkeypatch, index, error):
    real = loop.train_experience

    def train_experience(module, experience, trainer, loaders, steps=None):
        if experience.index == index:
            raise error
        return real(module, experience, trainer, loaders, steps)

    monkeypatch.setattr(loop, "train_experience", train_experience)


def history(uri, run_id, key):
    return [(m.step, m.value) for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


CARRIED_ADAM = ("optim.name=adam", "optim.lr=0.001", "optim.fresh_per_experience=false")


@pytest.mark.parametrize(
    ("strategy", "by", "extra"),
    [("er", "run_dir", ()), ("joint", "run_id", ()), ("er", "run_dir", CARRIED_ADAM)],
    ids=["er", "joint", "er-one-adam-for-the-stream"],  # the last: the carried optimizer state is checkpointed
)
def test_stopped_run_resumes_to_the_uninterrupted_result(strategy, by, extra, tmp_path, monkeypatch):
    full = run(load(tmp_path / "full", strategy, *extra), quiet=True)
    cfg = load(tmp_path / "cut", strategy, *extra)
    uri = cfg.tracking.uri
    stop_at(monkeypatch, K, RunInterrupted("SIGTERM", 143))
    with pytest.raises(RunInterrupted) as info:
        run(cfg, quiet=True)
    run_dir = info.value.run_dir
    assert info.value.checkpointed == K - 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "KILLED"
    assert summary["experiences_evaluated"] == K
    killed_id = summary["run_id"]
    assert MlflowClient(uri).get_run(killed_id).info.status == "KILLED"
    monkeypatch.undo()

    resumed = run(cfg, quiet=True, resume=str(run_dir) if by == "run_dir" else killed_id)

    assert resumed.run_dir == run_dir
    assert resumed.run_id == killed_id
    assert torch.equal(resumed.matrix.as_tensor(), full.matrix.as_tensor())
    assert resumed.matrix.initial == full.matrix.initial
    assert resumed.metrics == full.metrics
    client = MlflowClient(uri)
    (only,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert only.info.run_id == killed_id
    assert only.info.status == "FINISHED"
    # every evaluation point logged once, at its experience's step, with the uninterrupted values
    assert history(uri, killed_id, "eval/acc/exp0") == history(full.config.tracking.uri, full.run_id, "eval/acc/exp0")
    assert [s for s, _ in history(uri, killed_id, "stream/avg_acc")] == list(range(T))
    # the training losses continue at the global step where the checkpoint left off, with the same values
    losses = history(uri, killed_id, "train/loss")
    assert [s for s, _ in losses] == sorted({s for s, _ in losses})
    assert losses == history(full.config.tracking.uri, full.run_id, "train/loss")
    assert read_state(run_dir)["completed"] == T - 1


def test_nan_keeps_the_last_good_checkpoint_and_resume_finishes(tmp_path, monkeypatch):
    cfg = load(tmp_path, "er")
    stop_at(monkeypatch, K, NonFiniteLossError(f"training loss is nan at experience {K}, global step 9"))
    with pytest.raises(NonFiniteLossError) as info:
        run(cfg, quiet=True)
    run_dir = info.value.run_dir
    assert info.value.checkpointed == K - 1
    state = read_state(run_dir)
    assert state["completed"] == K - 1
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "FAILED"
    monkeypatch.undo()
    resumed = run(cfg, quiet=True, resume=run_dir)
    assert resumed.matrix.is_complete
    assert MlflowClient(cfg.tracking.uri).get_run(resumed.run_id).info.status == "FINISHED"


def test_resume_refuses_another_config_or_nothing_to_resume(tmp_path, monkeypatch):
    cfg = load(tmp_path, "er")
    stop_at(monkeypatch, 1, RunInterrupted())
    with pytest.raises(RunInterrupted) as info:
        run(cfg, quiet=True)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"optim.lr: '0.05' then, '0.1' now"):
        run(load(tmp_path, "er", "optim.lr=0.1"), quiet=True, resume=info.value.run_dir)
    with pytest.raises(ConfigError, match="neither a run directory nor the MLflow run id"):
        run(cfg, quiet=True, resume="0123456789abcdef")
    with pytest.raises(ConfigError, match="no checkpoint there"):
        run(cfg, quiet=True, resume=tmp_path)


def test_a_flipped_byte_in_the_latest_checkpoint_resumes_from_the_previous_one(tmp_path, monkeypatch, capsys):
    full = run(load(tmp_path / "full", "er"), quiet=True)
    cfg = load(tmp_path / "cut", "er")
    stop_at(monkeypatch, K, RunInterrupted("SIGTERM", 143))
    with pytest.raises(RunInterrupted) as info:
        run(cfg, quiet=True)
    monkeypatch.undo()
    run_dir = info.value.run_dir
    latest = run_dir / "checkpoints" / read_state(run_dir)["generation"]
    data = bytearray((latest / "rank0.pt").read_bytes())
    data[len(data) // 3] ^= 0x40  # one bit of one weight (or of the pickle around it)
    (latest / "rank0.pt").write_bytes(bytes(data))
    capsys.readouterr()

    resumed = run(cfg, quiet=True, resume=run_dir)

    err = capsys.readouterr().err
    assert f"{latest / 'rank0.pt'} fails its sha256 checksum" in err
    assert f"after experience {K - 2}" in err  # the previous generation: one experience is trained again
    assert torch.equal(resumed.matrix.as_tensor(), full.matrix.as_tensor())
    client = MlflowClient(cfg.tracking.uri)
    assert [s for s, _ in history(cfg.tracking.uri, resumed.run_id, "eval/acc/exp0")] == list(range(T))
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
