"""Eight runs logging at once: to ``mlflow server`` on PostgreSQL with proxied artifacts, and to the SQLite default.

PostgreSQL is Debian's (``/usr/lib/postgresql/<version>/bin``), initialised in a temporary folder and
listening on a free loopback port; as root it runs as ``nobody`` (``initdb`` refuses root). Each run is
a process of its own that starts on the same signal and logs metrics (with checkpoint commits, as a
run does), a run directory's files as artifacts, and ends. On PostgreSQL every value and file must be
in MLflow exactly once. On SQLite every run either gets there too or says how to switch to a server.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.test_store_race import start_together
from tests.e2e.test_tracking_server import Server, free_port

RUNS = 8
STEPS = 40
LOGGING_RUN = """
import sys, time
from pathlib import Path
from lifelong.tracking import MlflowTracker
uri, root, i, go, steps = sys.argv[1:]
(Path(root) / f"ready{i}").touch()
while not Path(go).exists():
    time.sleep(0.002)
run_dir = Path(root) / f"run{i}"
(run_dir / "plots").mkdir(parents=True)
(run_dir / "config.yaml").write_text(f"seed: {i}\\n")
(run_dir / "plots" / "matrix.csv").write_text(f"0.{i}\\n")
tracker = MlflowTracker(uri, "concurrent", f"run{i}", Path(root) / "artifacts", run_dir / "tracking")
tracker.start({"seed": i}, {})
for step in range(int(steps)):
    tracker.log_metrics({"train/loss": 1.0 / (step + 1), "eval/acc/exp0": int(i) / 10 + step / 1000}, step)
    if step % 10 == 9:  # a checkpoint: the journal is made durable, then what it covers is sent
        tracker.barrier()
        tracker.committed({})
tracker.log_run_dir(run_dir)
tracker.end("FINISHED")
"""
FILES = {"config.yaml", "plots/matrix.csv"}


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trusting local connections (a test database)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="lifelong-pg-"))  # not under pytest's root-only tmp folder
        self.port = free_port()
        self.user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(self.dir, "nobody")
        self.uri = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.user, *command], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    def start(self) -> None:
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        subprocess.run(
            [*self.user, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install -e '.[postgres]'")
    database = Postgres(bin_dir)
    database.start()
    server = Server(tmp_path_factory.mktemp("mlflow-pg"), backend=database.uri)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        database.stop()


def log_at_once(uri: str, root: Path) -> tuple[list[int], list[str]]:
    """``RUNS`` processes that import everything, then start logging to ``uri`` at the same moment."""
    commands = [
        [sys.executable, "-c", LOGGING_RUN, uri, str(root), str(i), str(root / "go"), str(STEPS)] for i in range(RUNS)
    ]
    ready = [root / f"ready{i}" for i in range(RUNS)]
    return start_together(commands, root / "go", {**os.environ, "OMP_NUM_THREADS": "1"}, ready)


def journaled(root: Path, i: int) -> list[dict]:
    lines = (root / f"run{i}" / "tracking" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_logged_once(client: MlflowClient, root: Path, i: int) -> str:
    """Run ``i`` is FINISHED with every journaled value once at its step and each of its files once."""
    run_id = json.loads((root / f"run{i}" / "tracking" / "run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == str(i)
    values = journaled(root, i)
    assert len(values) == 2 * STEPS
    for key in ("train/loss", "eval/acc/exp0"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == sorted((v["step"], v["value"]) for v in values if v["key"] == key), key
    listed = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert listed >= FILES
    return run_id


def test_eight_concurrent_runs_on_postgres_with_proxied_artifacts(postgres_server, tmp_path):
    codes, errors = log_at_once(postgres_server.uri, tmp_path)
    assert codes == [0] * RUNS, [e[-2000:] for e in errors]
    assert not any("warning" in e for e in errors), errors
    client = MlflowClient(postgres_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id])
    assert len(runs) == RUNS
    ids = {assert_logged_once(client, tmp_path, i) for i in range(RUNS)}
    assert ids == {r.info.run_id for r in runs}
    # the files went through the server into its artifact store, once per run
    stored = [p.relative_to(postgres_server.artifacts) for p in postgres_server.artifacts.rglob("*") if p.is_file()]
    for run_id in ids:
        mine = sorted(str(p).split(f"{run_id}/artifacts/")[1] for p in stored if f"{run_id}/artifacts/" in str(p))
        assert mine == sorted(FILES)
    assert not list(tmp_path.glob("artifacts/**/config.yaml"))  # nothing written to the clients' local folder


def test_eight_concurrent_runs_on_sqlite_finish_or_name_the_server_fix(tmp_path):
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    codes, errors = log_at_once(uri, tmp_path)
    client = MlflowClient(uri)
    complete = 0
    for i, (code, err) in enumerate(zip(codes, errors, strict=True)):
        if "database is locked" in err:  # this run could not write: it must say what to do
            assert "PostgreSQL" in err, err[-2000:]
            assert "mlflow server --backend-store-uri postgresql" in err, err[-2000:]
            continue
        assert code == 0, err[-2000:]
        assert_logged_once(client, tmp_path, i)
        complete += 1
    print(f"{complete} of {RUNS} concurrent runs complete on SQLite")


def test_a_busy_sqlite_store_names_the_server_fix_and_sync_catches_up(tmp_path, capsys):
    """Another process holds the write lock longer than SQLite's busy timeout (MLflow waits 20 s)."""
    from lifelong.tracking import MlflowTracker, sync_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri, "busy", "run0", tmp_path / "artifacts", tmp_path / "run0" / "tracking")
    run_id = tracker.start({"seed": "0"}, {})
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer that does not let go
    try:
        tracker.log_metrics({"train/loss": 0.5}, 0)
        tracker.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "database is locked" in err
    assert "use a tracking server on PostgreSQL" in err
    assert "mlflow server --backend-store-uri postgresql+psycopg://" in err
    tracker.end("FINISHED")
    sync_run(tmp_path / "run0")
    client = MlflowClient(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [(0, 0.5)]
    assert client.get_run(run_id).info.status == "FINISHED"
