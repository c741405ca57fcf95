"""Audio-video pretraining (FLAVA and its baselines) through the one engine: `lifelong run`, MLflow, DDP, bf16,
SIGTERM + resume, crash status, report and compare."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.checkpoint import read_state
from lifelong.cli import main
from lifelong.errors import ConfigError
from lifelong.run import check_names, run

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "stream.dataset=av_synthetic",
    "stream.params={train_per_task: 32, test_per_task: 8, tasks: [[0, 1], [2, 3]]}",
    "model.backbone=cavmae_tiny",
    "strategy.name=flava",
    "strategy.params={memory_size: 8}",
    "optim.name=adam",
    "optim.lr=0.001",
    "train.batch_size=8",
    "train.drop_last=true",
    "train.epochs=1",
    "name=av_small",
]
SCORES = [f"{d}{level}_R{k}" for level in ("", "_inst") for d in ("a2v", "v2a") for k in (1, 5, 10)]


def yaml_file(tmp_path):
    """An experiment file holding only the name: everything else comes from the overrides."""
    path = tmp_path / "av_small.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("name: av_small\n")
    return str(path)


def overrides(tmp_path, *extra):
    return [*SMALL, f"output_dir={tmp_path}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *extra]


def only_run(uri, experiment="av_small"):
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, found


def steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_flava_run_through_lifelong_run_is_tracked_like_any_other(tmp_path, capsys):
    assert main(["run", yaml_file(tmp_path), *overrides(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a2v_R1: after \\ on" in out
    assert "exp 1: classes [2, 3]" in out
    (run_dir,) = (tmp_path / "av_small").iterdir()
    assert (run_dir / "config.yaml").is_file()
    for score in SCORES:
        assert (run_dir / f"{score}_matrix.csv").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scores"] == SCORES
    assert summary["status"] == "FINISHED"
    client, found = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert found.info.status == "FINISHED"
    for key in ("stream/a2v_R1/avg", "stream/v2a_R10/forgetting", "eval/a2v_R1/exp0", "eval/v2a_R5/exp1"):
        assert steps(client, found.info.run_id, key) == [0, 1], key
    assert steps(client, found.info.run_id, "eval/init_a2v_R1/exp0") == [0]
    assert found.data.params["strategy.name"] == "flava"
    # the logged R@1 rows are the matrix's rows
    with (run_dir / "a2v_R1_matrix.csv").open() as f:
        rows = {r["after_exp"]: r for r in csv.DictReader(f)}
    history = client.get_metric_history(found.info.run_id, "eval/a2v_R1/exp1")
    assert {m.step: m.value for m in history}[1] == pytest.approx(float(rows["1"]["exp1"]))
    # the logged model reloads from the store: it embeds the test pairs as the run's last evaluation did
    import lifelong
    from lifelong.metrics.evaluators import RetrievalEvaluator
    from lifelong.run import build_parts

    loaded = lifelong.load_model(found.info.run_id, uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert len(loaded.strategy.memory) == 8
    stream, _ = build_parts(config.load(overrides=overrides(tmp_path)))
    evaluator = RetrievalEvaluator(2)
    for j, experience in enumerate(stream.test):
        batch = {
            k: torch.stack([experience.dataset[i][k] for i in range(len(experience.dataset))])
            for k in ("video", "audio", "group")
        }
        evaluator.update(loaded.model.eval(), None, batch, j)
    assert evaluator.compute()["a2v_R1"] == pytest.approx([float(rows["1"]["exp0"]), float(rows["1"]["exp1"])])
    # lifelong report and lifelong compare show the run
    assert main(["report", str(tmp_path / "av_small"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "a2v_R1 matrix" in page
    assert "av_synthetic · audio_video" in page  # the stream's own scenario, not the config's default
    assert "2 of 2 evaluated" in page
    assert "linear head" not in page  # an audio-video model has no head
    assert main(["compare", "av_small", "--output-dir", str(tmp_path)]) == 0  # the store of that output_dir
    assert "a2v_R1/avg" in capsys.readouterr().out
    assert "a2v_R1/avg" in (tmp_path / "av_small" / "compare.md").read_text()


def test_pretrain_is_an_alias_of_run(tmp_path):
    assert main(["pretrain", yaml_file(tmp_path), *overrides(tmp_path, "tracking.enabled=false")]) == 0
    (run_dir,) = (tmp_path / "av_small").iterdir()
    assert (run_dir / "a2v_R1_matrix.csv").is_file()


def test_a_crash_ends_the_mlflow_run_failed(tmp_path, monkeypatch):
    from lifelong.strategies.flava import FLAVA

    calls = {"n": 0}
    original = FLAVA.training_loss

    def crash_later(self, model, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return original(self, model, batch)

    monkeypatch.setattr(FLAVA, "training_loss", crash_later)
    with pytest.raises(RuntimeError, match="boom"):
        run(config.load(overrides=overrides(tmp_path)), quiet=True)
    _, found = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert found.info.status == "FAILED"


def test_bf16_mixed_precision_runs_flava_to_the_end(tmp_path):
    result = run(config.load(overrides=overrides(tmp_path, "trainer.precision=bf16-mixed")), quiet=True)
    assert result.matrices.names == SCORES
    assert result.matrix.is_complete
    assert all(0 <= v <= 1 for v in result.matrix.as_tensor().flatten().tolist())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stream.n_experiences=3", "stream.n_experiences does not apply to the audio-video dataset"),
        ("strategy.name=er", "strategy.name='er' trains classifier models"),
        ("model.backbone=mlp", "stream.dataset='av_synthetic' is an audio-video dataset"),
        ("model.backbone_kwargs={embed_dims: 32}", "did you mean 'embed_dim'"),
        ("stream.params={colour: 1}", "stream.params.colour"),
        ("model.head=cosine", "model.head does not apply"),
    ],
)
def test_mismatched_parts_are_named_before_anything_is_built(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        check_names(config.load(overrides=overrides(tmp_path, override)))


@pytest.mark.parametrize("name", ["flava_av_digits.yaml", "flava_av_digits_256.yaml", "flava_vggsound.yaml"])
def test_shipped_pretraining_configs_load_and_check(name):
    cfg = config.load(ROOT / "experiments" / "pretrain" / name)
    assert cfg.strategy.name == "flava"
    if name != "flava_vggsound.yaml":
        check_names(cfg)  # the VGGSound one needs its data to resolve the categories


def cli(tmp_path, *extra, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "lifelong.cli", "run", yaml_file(tmp_path), *overrides(tmp_path, *extra)]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def matrices(run_dir):
    return {score: (run_dir / f"{score}_matrix.csv").read_text() for score in SCORES}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed (gloo)")
def test_flava_under_two_process_ddp_shards_its_memory(tmp_path):
    init = ["init.dataset=av_synthetic", "init.params={train_per_task: 16, tasks: [[4, 5]]}", "init.avm_epochs=1"]
    done = cli(tmp_path, "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu", *init)
    assert len(list((tmp_path / "init").glob("init-*.pt"))) == 1  # the init stage ran under DDP too, rank 0 cached it
    assert done.stdout.count("flava-av_synthetic-s0: 2 experiences") == 1  # rank 1 prints nothing
    (run_dir,) = (tmp_path / "av_small").iterdir()
    generation = run_dir / "checkpoints" / read_state(run_dir)["generation"]
    for rank in range(2):
        info = json.loads((generation / f"rank{rank}.json").read_text())
        memory = info["memories"]["memory"]
        assert (memory["total_capacity"], memory["capacity"], memory["stored"]) == (8, 4, 4)
        assert info["eval_samples"] == [8, 8]  # every test pair embedded once, gathered from both ranks
    client, found = only_run(f"sqlite:///{tmp_path}/mlflow.db")
    assert found.info.status == "FINISHED"
    assert steps(client, found.info.run_id, "stream/a2v_R1/avg") == [0, 1]


def test_sigterm_mid_stream_then_resume_gives_the_uninterrupted_matrices(tmp_path):
    long = ["train.epochs=25"]  # two experiences of 100 steps: the signal lands inside the second
    reference = tmp_path / "reference"
    cli(reference, *long)
    (expected_dir,) = (reference / "av_small").iterdir()
    stopped = tmp_path / "stopped"
    process = cli(stopped, *long, wait=False)
    line = ""
    deadline = time.monotonic() + 300
    while not line.startswith("exp 0:") and time.monotonic() < deadline:  # the first experience is evaluated
        line = process.stdout.readline()
        assert line or process.poll() is None, process.stderr.read()
    time.sleep(0.5)  # inside the second experience
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    client, found = only_run(f"sqlite:///{stopped}/mlflow.db")
    assert found.info.status == "KILLED"
    (run_dir,) = (stopped / "av_small").iterdir()
    cli(stopped, *long, "--resume", str(run_dir))
    assert matrices(run_dir) == matrices(expected_dir)
    client, found = only_run(f"sqlite:///{stopped}/mlflow.db")
    assert found.info.status == "FINISHED"
    assert steps(client, found.info.run_id, "stream/a2v_R1/avg") == [0, 1]
    assert steps(client, found.info.run_id, "eval/v2a_R1/exp1") == [0, 1]
