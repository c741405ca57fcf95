"""MLflow tracking (DESIGN §6): the only module that imports mlflow.

Default store: ``sqlite:///<cwd>/runs/mlflow.db`` with artifacts under ``runs/artifacts``;
``MLFLOW_TRACKING_URI`` or an explicit ``uri`` override it (an ``http://`` server works the same).
Training losses are buffered and sent in batches so tracking never dominates a training step.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

import lifelong
from lifelong.errors import unknown_choice

FLUSH_EVERY = 200  # buffered metric values per batch request


def default_uri(root: str | Path = "runs") -> str:
    """The SQLite store under ``root`` (relative to the working directory)."""
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def resolve_uri(uri: str | None, root: str | Path = "runs") -> str:
    """Explicit URI, else ``MLFLOW_TRACKING_URI``, else the default SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def client_for(uri: str) -> MlflowClient:
    """A client bound to ``uri``; creates the SQLite file's folder when needed."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created (with local artifacts under ``artifact_root``) if absent."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (artifact_root / name).resolve().as_uri() if artifact_root is not None else None
    return client.create_experiment(name, artifact_location=location)


def git_commit() -> str | None:
    """The current git commit of the working directory, if any."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class MlflowTracker:
    """One MLflow run: params, tags, buffered metrics and artifacts.

    Args:
        uri: tracking URI (``sqlite:///...``, ``http://...``).
        experiment: experiment name.
        run_name: run name, ``<strategy>-<dataset>-s<seed>``.
        artifact_root: where a new experiment keeps artifacts when the store is local.

    """

    def __init__(self, uri: str, experiment: str, run_name: str, artifact_root: Path | None = None) -> None:
        self.uri = uri
        self.client = client_for(uri)
        local = uri.startswith("sqlite:") or uri.startswith("file:")
        self.experiment_id = ensure_experiment(self.client, experiment, artifact_root if local else None)
        self.run_name = run_name
        self.run_id: str | None = None
        self._buffer: list[Metric] = []

    def start(self, params: dict[str, str], tags: dict[str, str]) -> str:
        """Create the run and log params and tags; returns the run id."""
        all_tags = {"lifelong.version": lifelong.__version__, **tags}
        commit = git_commit()
        if commit:
            all_tags["git.commit"] = commit
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=all_tags)
        self.run_id = run.info.run_id
        items = [mlflow.entities.Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer metrics at ``step``; sent every ``FLUSH_EVERY`` values and on ``flush``."""
        timestamp = mlflow.utils.time.get_current_time_millis()
        self._buffer.extend(Metric(k, float(v), timestamp, step) for k, v in metrics.items())
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics."""
        if self.run_id is None:
            return
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        """Upload one file (or a folder's files) to the run."""
        assert self.run_id is not None, "start() the run first"
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), subdir)
        else:
            self.client.log_artifact(self.run_id, str(path), subdir)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run with ``status`` (FINISHED, FAILED or KILLED)."""
        if self.run_id is None:
            return
        self.flush()
        self.client.set_terminated(self.run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


def stream_metric_table(uri: str, experiment: str) -> list[dict[str, Any]]:
    """One row per finished run of ``experiment``: its strategy, seed, run name and ``stream/*`` metrics."""
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise unknown_choice("experiment", experiment, names)
    rows = []
    for run in client.search_runs([found.experiment_id], filter_string="attributes.status = 'FINISHED'"):
        metrics = {k.removeprefix("stream/"): v for k, v in run.data.metrics.items() if k.startswith("stream/")}
        rows.append(
            {
                "strategy": run.data.params.get("strategy.name", "?"),
                "seed": run.data.params.get("seed", "?"),
                "run_name": run.info.run_name,
                **metrics,
            }
        )
    return rows
