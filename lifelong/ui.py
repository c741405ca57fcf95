"""``lifelong ui``: the MLflow UI on the project's store, opened on an experiment's runs (``just ui``).

MLflow 3's UI lands on a GenAI overview (traces, token usage) and keeps training runs behind a
"Model training" switch; the URL printed and opened here goes straight to the experiment's runs
table with the model-training view (``workflowType=machine_learning``). Experiments are also tagged
``mlflow.experimentKind=custom_model_development`` (new ones when they are created, older ones here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser

from lifelong.errors import ConfigError

__all__ = ["runs_url", "serve", "server_command"]


def runs_url(host: str, port: int, experiment_id: str | None) -> str:
    """The UI address of an experiment's runs table (the UI's home when there is no experiment yet)."""
    base = f"http://{host}:{port}/"
    if experiment_id is None:
        return base + "#/experiments?workflowType=machine_learning"
    return base + f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def server_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow ui`` command line for the store at ``uri`` (one worker is plenty for one person)."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    return [*command, "--workers", str(workers)]


def server_env() -> dict[str, str]:
    """The environment of the UI server: without MLflow's GenAI job runner (evaluation jobs; none here)."""
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }


def landing_url(uri: str, experiment: str | None, host: str, port: int) -> str:
    """Where ``lifelong ui`` opens the browser; tags the experiment so the UI shows it as model training.

    Raises:
        ConfigError: ``experiment`` is not in the store.

    """
    from lifelong.tracking import client_for, experiment_id_of, show_as_model_training

    experiment_id = experiment_id_of(uri, experiment)
    if experiment is not None and experiment_id is None:
        names = sorted(e.name for e in client_for(uri).search_experiments())
        raise ConfigError(f"experiment {experiment!r} is not in {uri}; experiments there: {', '.join(names) or 'none'}")
    if experiment_id is not None:
        show_as_model_training(uri, experiment_id)
    return runs_url(host, port, experiment_id)


def wait_until_up(url: str, timeout: float = 60.0) -> bool:
    """Whether ``url`` answers (any HTTP status) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(uri: str | None, experiment: str | None, host: str, port: int, browser: bool = True) -> int:
    """Run ``mlflow ui`` on the store until it stops (Ctrl+C); print and open the experiment's runs view."""
    from lifelong.tracking import resolve_uri

    store = resolve_uri(uri)
    url = landing_url(store, experiment, host, port)
    # its own process group: stopping it stops the uvicorn workers it starts as well
    process = subprocess.Popen(server_command(store, host, port), env=server_env(), start_new_session=True)
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops the server too, as Ctrl+C does
    try:
        if wait_until_up(f"http://{host}:{port}/health"):
            print(f"MLflow UI: {url}  (Ctrl+C stops it)", flush=True)
            if browser:
                webbrowser.open(url)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
