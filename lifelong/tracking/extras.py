"""What a tracked run logs besides metrics (stream input, logged models, system metrics, parent runs).

Also finding and downloading a run's logged models.

Values that cannot be sent while the store is away are kept in the run's journal for ``lifelong sync``.
"""

from __future__ import annotations

import contextlib
import sys
import urllib.request
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from lifelong.errors import TrackingError
from lifelong.stores import (
    START_TIMEOUT,
    http_limits,
    is_local,
    package_git_info,
    tracking_error,
    unreachable,
)
from lifelong.tracking.tracker import EXPERIMENT_TAGS, MlflowTracker, client_for, ensure_experiment, now_ms
from lifelong.version import __version__


def log_stream_input(tracker: MlflowTracker, dataset: dict[str, str]) -> None:
    """Log the stream as the run's dataset input (``name``, ``digest``, ``source``, ``profile``); kept for sync."""
    if not tracker._try(lambda: _send_input(tracker, dataset)):
        tracker.journal.meta.setdefault("pending_inputs", []).append(dict(dataset))
        tracker.journal.save()


def _send_input(tracker: MlflowTracker, dataset: dict[str, str]) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    entity = Dataset(dataset["name"], dataset["digest"], "lifelong", dataset["source"], None, dataset["profile"])
    context = InputTag("mlflow.data.context", "stream")
    tracker.client.log_inputs(str(tracker.run_id), [DatasetInput(entity, [context])])


def log_model_folder(tracker: MlflowTracker, folder: Path, step: int, name: str, tags: dict[str, str]) -> str | None:
    """Log ``folder`` as an MLflow logged model of the run, linked to ``step``; returns its id.

    When the store is away the folder is kept and its upload is left to ``lifelong sync`` (returns ``None``).
    """
    ids: list[str] = []
    if tracker._try(lambda: ids.append(_send_model(tracker, folder, step, name, tags))):
        return ids[0]
    tracker.journal.meta.setdefault("pending_models", []).append(
        {"folder": str(Path(folder).resolve()), "step": step, "name": name, "tags": tags}
    )
    tracker.journal.save()
    return None


def _send_model(tracker: MlflowTracker, folder: Path, step: int, name: str, tags: dict[str, str]) -> str:
    from mlflow.entities import LoggedModelOutput

    client, run_id = tracker.client, str(tracker.run_id)
    model = client.create_logged_model(
        tracker.experiment_id, name=name, source_run_id=run_id, tags=tags, model_type="lifelong"
    )
    client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id


def send_pending_extras(tracker: MlflowTracker) -> int:
    """Send the stream inputs and models that could not be sent during the run; returns how many were sent."""
    meta, sent = tracker.journal.meta, 0
    with http_limits():
        while meta.get("pending_inputs"):
            _send_input(tracker, meta["pending_inputs"][0])
            meta["pending_inputs"].pop(0)
            sent += 1
            tracker.journal.save()
        while meta.get("pending_models"):
            item = meta["pending_models"][0]
            _send_model(tracker, Path(item["folder"]), item["step"], item["name"], item["tags"])
            meta["pending_models"].pop(0)
            sent += 1
            tracker.journal.save()
    return sent


class SystemMetrics:
    """MLflow's system metrics (CPU, memory, disk, network, GPU) of this machine as ``system/*`` of a run."""

    def __init__(self, tracker: MlflowTracker, interval: float = 10.0) -> None:
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop banners per run
        self.monitor: Any = None
        try:
            self.monitor = SystemMetricsMonitor(
                str(tracker.run_id), sampling_interval=interval, resume_logging=True, tracking_uri=tracker.uri
            )
            self.monitor.start()
        except Exception as err:  # noqa: BLE001 - monitoring must never stop a run
            print(f"warning: system metrics are off ({err})", file=sys.stderr)
            self.monitor = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling and send what is left (before the run is ended); waits at most ``timeout`` seconds.

        The samples taken since the last interval are sent too (MLflow's monitor drops them), so a
        run shorter than one interval still gets its ``system/*`` values. A sampler stuck on a lost
        server (MLflow retries for minutes) is left behind as a daemon thread.
        """
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        with contextlib.suppress(Exception):
            monitor._shutdown_event.set()
            thread = monitor._process
            if thread is not None:
                thread.join(timeout)
            if thread is None or not thread.is_alive():
                if not any(m.metrics for m in monitor.monitors):  # nothing sampled yet: take one sample now
                    monitor.collect_metrics()
                if last := monitor.aggregate_metrics():
                    monitor.publish_metrics(last)
                with http_limits():
                    monitor.mlflow_logger.flush()


def start_parent_run(
    uri: str, experiment: str, run_name: str, params: dict[str, str], tags: dict[str, str], artifact_root: Path | None
) -> str:
    """Create the parent run of a multi-seed invocation (its seeds become nested runs); returns its id.

    Raises:
        TrackingError: the store cannot be reached (before any training).

    """
    if (reason := unreachable(uri, START_TIMEOUT)) is not None:
        raise tracking_error(uri, reason)
    try:
        client = client_for(uri)
        experiment_id = ensure_experiment(client, experiment, artifact_root if is_local(uri) else None)
        all_tags = {"lifelong.version": __version__, **package_git_info(), **tags}
        with http_limits():
            run = client.create_run(experiment_id, start_time=now_ms(), tags=all_tags, run_name=run_name)
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                client.log_batch(run.info.run_id, params=items[start : start + 100])
    except Exception as err:  # noqa: BLE001 - any failure of the store at start is the user's to fix
        raise tracking_error(uri, err) from None
    return run.info.run_id


def end_parent_run(uri: str, run_id: str, metrics: dict[str, float], status: str) -> None:
    """Log the parent's aggregate metrics and close it with ``status`` (a warning if the store is away)."""
    client = client_for(uri)
    stamp = now_ms()
    try:
        with http_limits():
            if metrics:
                client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()])
            client.set_terminated(run_id, status=status)
    except Exception as err:  # noqa: BLE001 - the seeds' runs are done and journaled; only the summary is lost
        print(f"warning: the parent run {run_id} at {uri} could not be closed ({err})", file=sys.stderr)


def experiment_id_of(uri: str, experiment: str | None = None) -> str | None:
    """The id of ``experiment`` (default: the experiment with the latest run) in the store at ``uri``."""
    client = client_for(uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        return found.experiment_id if found is not None else None
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0].info.experiment_id if runs else None


def show_as_model_training(uri: str, experiment_id: str) -> None:
    """Tag an experiment (also one made before this tag existed) so the MLflow UI shows its runs."""
    client = client_for(uri)
    for key, value in EXPERIMENT_TAGS.items():
        client.set_experiment_tag(experiment_id, key, value)


def logged_models_of_run(uri: str, run_id: str) -> list[dict[str, Any]]:
    """The logged models of run ``run_id`` (id, name, tags, artifact location), oldest first.

    Raises:
        TrackingError: the run is not in this store.

    """
    client = client_for(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise TrackingError(f"run {run_id!r} is not in the MLflow store at {uri} ({err.error_code})") from None
    found = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    models = [_model_record(m) for m in found]
    return sorted(models, key=lambda m: m["created"])


def logged_model(uri: str, model_id: str) -> dict[str, Any]:
    """One logged model's record (see :func:`logged_models_of_run`)."""
    try:
        return _model_record(client_for(uri).get_logged_model(model_id))
    except MlflowException as err:
        raise TrackingError(f"model {model_id!r} is not in the MLflow store at {uri} ({err.error_code})") from None


def _model_record(model: Any) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "name": model.name,
        "tags": dict(model.tags),
        "artifact_location": model.artifact_location,
        "created": model.creation_timestamp,
        "run_id": model.source_run_id,
    }


def download_model(uri: str, record: dict[str, Any], destination: Path) -> Path:
    """Download a logged model's files into ``destination``; returns the local folder.

    A SQLite store that was copied or moved keeps absolute artifact paths of its old place; when
    those are gone, the same relative path under the copy's ``artifacts`` folder is used.
    """
    location = str(record["artifact_location"])
    if location.startswith("file:"):
        local = Path(urllib.request.url2pathname(location.removeprefix("file://")))
        if not local.is_dir() and uri.startswith("sqlite:///"):
            local = _moved(local, Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
        return local
    import mlflow.artifacts

    with http_limits():
        return Path(mlflow.artifacts.download_artifacts(location, dst_path=str(destination), tracking_uri=uri))


def _moved(old: Path, root: Path) -> Path:
    """``old``'s longest tail that exists under ``root`` (the store's new artifact root), else ``old``."""
    parts = old.parts
    for start in range(1, len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_dir():
            return candidate
    return old
