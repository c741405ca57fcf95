"""`just ui` opens the MLflow UI on the experiment's runs table (headless Chromium looks at it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import matplotlib.image
import pytest

from lifelong.tracking import MlflowTracker, default_uri
from lifelong.ui import runs_url

CHROMIUM = Path("/usr/bin/chromium")
JUSTFILE = Path(__file__).resolve().parent.parent / "Justfile"
RUN_NAMES = ("er-digits-0123abcd-s0", "er-digits-0123abcd-s1", "finetune-digits-4567ef01-s0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_store(root: Path) -> str:
    """``<root>/runs/mlflow.db`` with two experiments; "quickstart" holds three finished runs."""
    uri = default_uri(root / "runs")
    other = MlflowTracker(uri, "other", "not-this-one", root / "runs" / "artifacts")
    other.start({"seed": "0"}, {})
    other.end()
    for name in RUN_NAMES:
        tracker = MlflowTracker(uri, "quickstart", name, root / "runs" / "artifacts")
        tracker.start({"strategy.name": name.split("-")[0], "seed": name[-1]}, {})
        tracker.log_metrics({"stream/avg_acc": 0.5}, 0)
        tracker.end()
    return uri


def test_runs_url_goes_to_the_runs_table_in_the_model_training_view():
    assert (
        runs_url("127.0.0.1", 5000, "3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium (Debian: apt-get install chromium)")
@pytest.mark.skipif(shutil.which("just") is None, reason="needs just")
def test_just_ui_lands_on_the_experiments_runs_table(tmp_path):
    make_store(tmp_path)
    port = free_port()
    env = {**os.environ, "BROWSER": "true"}  # webbrowser.open runs `true URL`: no browser window in tests
    command = ["just", "--justfile", str(JUSTFILE), "--working-directory", str(tmp_path), "ui", "quickstart", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()  # type: ignore[union-attr]
            if not line and server.poll() is not None:
                break
            found = re.search(r"MLflow UI: (\S+)", line)
            url = found.group(1) if found else None
        assert url is not None, "lifelong ui printed no URL"
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/#/experiments/\d+/runs\?workflowType=machine_learning", url)
        shot = tmp_path / "ui.png"
        browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        shown = [f"--screenshot={shot}", "--dump-dom", "--window-size=1400,900", "--virtual-time-budget=30000", url]
        dom = subprocess.run([*browser, *shown], capture_output=True, text=True, timeout=180, check=True).stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # just, lifelong ui and the MLflow server it started
        server.wait(timeout=60)
    for name in RUN_NAMES:  # the runs table of "quickstart" lists its runs ...
        assert name in dom
    assert "not-this-one" not in dom  # ... and not those of another experiment
    assert "Run Name" in dom  # the table's header
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (900, 1400)
