"""Runs against a real ``mlflow server`` process (SQLite backend, 127.0.0.1, a free port), over HTTP.

The server is started once per module (it takes 10-20 s on 2 cores), killed in the middle of a
run and started again on the same store to check that ``lifelong sync`` uploads what was kept.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lifelong import config, loop, tracking
from lifelong.cli import main
from lifelong.errors import TrackingError
from lifelong.journal import RunJournal
from lifelong.run import run
from lifelong.tracking import MlflowTracker

T = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` in its own process group, so stopping it also stops its uvicorn worker.

    The backend store is SQLite in ``root`` unless ``backend`` names another (``postgresql+psycopg://...``);
    artifacts are proxied by the server (``--serve-artifacts``) into ``root/server-artifacts``.
    """

    def __init__(self, root: Path, backend: str | None = None) -> None:
        self.root = root
        self.backend = backend or f"sqlite:///{root}/server.db"
        self.artifacts = root / "server-artifacts"
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts),
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.root / "server.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(sys.executable).with_name("mlflow").exists():
        pytest.skip("the mlflow command is not installed next to this Python")
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.stop()


def load(root, uri, *extra):
    return config.load(
        "experiments/quickstart.yaml",
        [
            f"output_dir={root}",
            f"tracking.uri={uri}",
            "model.backbone_kwargs={hidden: [32]}",
            "train.epochs=1",
            "train.batch_size=32",
            "train.log_every_n_steps=2",
            *extra,
        ],
    )


def test_a_run_logs_over_http(server, tmp_path):
    result = run(load(tmp_path, server.uri, "tracking.experiment=http"), quiet=True)
    client = MlflowClient(server.uri)
    logged = client.get_run(result.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["strategy.name"] == "er"
    assert logged.data.tags["lifelong.run_dir"] == str(result.run_dir.resolve())
    history = sorted(client.get_metric_history(result.run_id, "eval/acc/exp1"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(T))
    assert [m.value for m in history] == pytest.approx(result.matrix.as_tensor()[:, 1].tolist())
    files = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "accuracy_matrix.csv", "summary.json"} <= files
    assert "checkpoints" not in files
    journal = RunJournal.open(result.run_dir)
    assert journal.sent == {"params": True, "metrics": len(journal), "artifacts": True, "status": True}


def test_unreachable_server_fails_fast_with_the_uri_and_the_fix(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"MLflow tracking at http://127\.0\.0\.1:\d+ is unreachable") as info:
        run(load(tmp_path, uri), quiet=True)
    assert "mlflow server" in str(info.value)
    assert "tracking.enabled=false" in str(info.value)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "quickstart").exists()  # nothing was trained or written
    assert main(["run", "experiments/quickstart.yaml", f"output_dir={tmp_path}", f"tracking.uri={uri}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: MLflow tracking at {uri} is unreachable")
    assert "Traceback" not in err


def test_server_lost_mid_run_then_sync_uploads_everything(server, tmp_path, monkeypatch, capsys):
    real = loop.train_experience

    def lose_the_server_at_experience_2(module, experience, trainer, loaders, steps=None):
        if experience.index == 2:
            server.stop()
        return real(module, experience, trainer, loaders, steps)

    monkeypatch.setattr(loop, "train_experience", lose_the_server_at_experience_2)
    try:
        result = run(load(tmp_path, server.uri, "tracking.experiment=lost"), quiet=True)
    finally:
        monkeypatch.undo()
        if server.process is None:
            server.start()
    assert result.matrix.is_complete  # training went on without the server
    err = capsys.readouterr().err
    assert f"MLflow at {server.uri} failed" in err
    assert f"lifelong sync {result.run_dir}" in err
    journal = RunJournal.open(result.run_dir)
    assert journal.meta["status"] == "FINISHED"
    assert not journal.sent["status"]
    assert journal.sent["metrics"] < len(journal)
    client = MlflowClient(server.uri)
    assert client.get_run(result.run_id).info.status == "RUNNING"  # what the server saw before it went away

    assert main(["sync", str(result.run_dir)]) == 0
    assert "status FINISHED" in capsys.readouterr().out

    logged = client.get_run(result.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["strategy.params.memory_size"] == "200"
    for j in range(T):
        history = sorted(client.get_metric_history(result.run_id, f"eval/acc/exp{j}"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(T))
        assert [m.value for m in history] == pytest.approx(result.matrix.as_tensor()[:, j].tolist())
    journaled = sorted((v["step"], v["value"]) for v in journal.values() if v["key"] == "train/loss")
    uploaded = sorted((m.step, m.value) for m in client.get_metric_history(result.run_id, "train/loss"))
    assert [s for s, _ in uploaded] == [s for s, _ in journaled]  # every step once
    assert [v for _, v in uploaded] == pytest.approx([v for _, v in journaled])
    assert {"config.yaml", "accuracy_matrix.csv", "summary.json"} <= {
        a.path for a in client.list_artifacts(result.run_id)
    }
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert logged.data.metrics["stream/avg_acc"] == pytest.approx(summary["metrics"]["avg_acc"])
    # the models of the experiences trained while the server was away were kept and sent by sync
    assert sorted(o.step for o in logged.outputs.model_outputs) == list(range(T))
    assert not RunJournal.open(result.run_dir).meta.get("pending_models")
    # a second sync has nothing left to send
    assert main(["sync", str(result.run_dir)]) == 0
    assert "sent 0 metric values" in capsys.readouterr().out


def test_a_store_that_fails_mid_run_is_caught_up_when_it_is_back(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(
        uri, "offline", "er-digits-s0", tmp_path / "artifacts", journal=tmp_path / "run" / "tracking"
    )
    run_id = tracker.start({"seed": "0"}, {})
    send, calls = tracker.client.log_batch, []

    def refused(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("connection refused")

    monkeypatch.setattr(tracker.client, "log_batch", refused)
    tracker.log_metrics({"train/loss": 1.0}, 1)
    tracker.flush()
    assert not tracker.online
    assert "failed (connection refused); training goes on" in capsys.readouterr().err
    tracker.log_metrics({"train/loss": 2.0}, 2)
    tracker.flush()
    assert len(calls) == 1  # no new attempt within RETRY_SECONDS: a lost server costs nothing per step
    monkeypatch.setattr(tracker.client, "log_batch", send)
    monkeypatch.setattr(tracking.tracker, "RETRY_SECONDS", 0.0)  # the module the tracker reads it from
    tracker.log_metrics({"train/loss": 3.0}, 3)
    tracker.end("FINISHED")
    assert tracker.online
    assert "is back" in capsys.readouterr().err
    client = MlflowClient(uri)
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    assert history == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert client.get_run(run_id).info.status == "FINISHED"
    journal = RunJournal.open(tmp_path / "run")
    assert journal.sent == {"params": True, "metrics": 3, "artifacts": False, "status": True}
