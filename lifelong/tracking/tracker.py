"""The MLflow tracker of one run, ``lifelong sync`` and the compare table.

How values are journaled, committed with checkpoints and sent is described in :mod:`lifelong.tracking`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lifelong.errors import TrackingError, unknown_choice
from lifelong.journal import RunJournal
from lifelong.stores import (
    START_TIMEOUT,
    http_limits,
    is_local,
    locked_hint,
    package_git_info,
    store_lock,
    tracking_error,
    unreachable,
)
from lifelong.version import __version__

FLUSH_EVERY = 200  # metric values per batch request
SEND_SECONDS = 10.0  # ... or whatever has been logged, this long after the last request
RETRY_SECONDS = 30.0  # while the server is away, how often sending is tried again
NOT_ARTIFACTS = ("checkpoints", "tracking")  # run-directory folders that are not uploaded
TERMINAL = ("FINISHED", "FAILED", "KILLED")
# The MLflow UI then shows the experiment as model training (runs, charts), not as a GenAI app (traces).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
ROLE_TAG, PARENT_ROLE = "lifelong.role", "seeds"  # the parent run of a multi-seed invocation
SWEEP_ROLE = "sweep"  # the parent run of a sweep (``lifelong sweep``)


def client_for(uri: str) -> MlflowClient:
    """A client bound to ``uri``; a new SQLite store (and its folder) is created under :func:`store_lock`."""
    with store_lock(uri):
        return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created (with local artifacts under ``artifact_root``) if absent."""
    with store_lock(client.tracking_uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (artifact_root / name).resolve().as_uri() if artifact_root is not None else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException as err:  # another process (on another machine) created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise err from None
            return found.experiment_id


def now_ms() -> int:
    return mlflow.utils.time.get_current_time_millis()


class MlflowTracker:
    """One MLflow run: params, tags, buffered metrics, artifacts; journaled locally and sent when possible.

    Args:
        uri: tracking URI (``sqlite:///...``, ``http://...``).
        experiment: experiment name.
        run_name: run name, ``<strategy>-<dataset>-s<seed>``.
        artifact_root: where a new experiment keeps artifacts when the store is local.
        journal: the run's journal folder (``<run dir>/tracking``); ``None`` keeps unsent values in memory only.

    Raises:
        TrackingError: the store cannot be reached (fail fast, before any training).

    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        artifact_root: Path | None = None,
        journal: Path | None = None,
    ) -> None:
        self.uri = uri
        self.run_name = run_name
        self.journal = RunJournal(journal)
        self.artifact_root = artifact_root if is_local(uri) else None
        reason = unreachable(uri, START_TIMEOUT)
        if reason is not None:
            raise tracking_error(uri, reason)
        self.client: MlflowClient = self._now_or_fail(lambda: client_for(uri))
        self.experiment_id: str = self._now_or_fail(
            lambda: ensure_experiment(self.client, experiment, self.artifact_root)
        )
        self.journal.meta.update(uri=uri, experiment=experiment, run_name=run_name)
        if self.artifact_root is not None:
            self.journal.meta["artifact_root"] = str(Path(self.artifact_root).resolve())
        self.run_id: str | None = None
        self.online = True
        self._failed_at = 0.0
        self._sent_at = time.monotonic()
        self._unsent: list[dict[str, Any]] = []  # journaled, not yet on the server (journal values from `sent` on)
        self._holding = False  # checkpoints are written: evaluation values wait for the commit that covers them
        self._hold_from: int | None = None  # journal index of the first value waiting for a commit
        self._skip: set[tuple[str, int]] = set()  # (key, step) MLflow has from a dead attempt: not logged again

    def _now_or_fail(self, call: Callable[[], Any]) -> Any:
        try:
            with http_limits():
                return call()
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the store at start is the user's to fix
            raise tracking_error(self.uri, err) from None

    # ------------------------------------------------------------------ starting
    def start(self, params: dict[str, str], tags: dict[str, str]) -> str:
        """Create the run and log params and tags; returns the run id."""
        all_tags = {"lifelong.version": __version__, **package_git_info(), **tags}
        started = now_ms()
        run = self._now_or_fail(
            lambda: self.client.create_run(
                self.experiment_id, start_time=started, tags=all_tags, run_name=self.run_name
            )
        )
        self.run_id = run.info.run_id
        self.journal.try_lock()
        self.journal.meta.update(
            run_id=self.run_id, params=dict(params), tags=all_tags, start_time=started, status="RUNNING"
        )
        self.journal.save()
        self._now_or_fail(self._send_params)
        return self.run_id

    def resume(self, journal_mark: int | None = None) -> str:
        """Continue the journal's run (recreated from the journal if this server does not know it).

        Args:
            journal_mark: how many metric values the journal held when the checkpoint the run resumes
                from was committed; later values belong to work that is done again and are dropped,
                except those MLflow has already (their (key, step) is then not logged again).

        Raises:
            TrackingError: another process is running this run, or the store failed.

        """
        if not self.journal.meta.get("run_id"):
            raise TrackingError(f"{self.journal.meta_path} names no MLflow run to continue")
        if not self.journal.try_lock():
            raise TrackingError(
                f"the run in {self.journal.directory.parent if self.journal.directory else '?'} is still running "
                f"(process {self.journal.holder()} holds its lock); stop it first or wait for it to end"
            )
        self._now_or_fail(self._ensure_run)
        if self.mark_dead_failed():
            self._now_or_fail(self._send_status)
        if not self.journal.sent["params"]:
            self._now_or_fail(self._send_params)
        self._now_or_fail(lambda: self.client.update_run(str(self.run_id), status="RUNNING"))
        self.journal.meta.update(status="RUNNING")
        self.journal.meta.pop("end_time", None)
        self.journal.sent["status"] = False
        self.journal.save()
        if journal_mark is not None:
            self._drop_uncommitted(journal_mark)
            self._holding = True
        self._unsent = self.journal.values(self.journal.sent["metrics"])
        self.flush()
        return str(self.run_id)

    def _drop_uncommitted(self, mark: int) -> None:
        """Cut the journal back to ``mark`` values, keeping what MLflow already has (and skipping it from now on)."""
        sent = self.journal.sent["metrics"]
        if mark > len(self.journal):
            print(
                f"warning: {self.journal.metrics_path} holds {len(self.journal)} metric values, the checkpoint "
                f"recorded {mark}: values logged before the checkpoint may be missing in MLflow",
                file=sys.stderr,
                flush=True,
            )
            return
        beyond = self.journal.values(mark)[: max(sent - mark, 0)]
        self._skip = {(v["key"], int(v["step"])) for v in beyond}
        self.journal.truncate(max(mark, sent))

    def mark_dead_failed(self) -> bool:
        """Mark the run FAILED in the journal if it is RUNNING but no process holds its lock (it was killed).

        Returns:
            whether it was marked (send the status afterwards).

        """
        meta = self.journal.meta
        if meta.get("status") != "RUNNING" or not self.journal.try_lock():
            return False
        values = self.journal.values(max(len(self.journal) - 1, 0))
        ended = int(values[-1]["timestamp"]) if values else int(meta.get("start_time") or now_ms())
        meta.update(status="FAILED", end_time=ended, died=True)
        self.journal.sent["status"] = False
        self.journal.save()
        return True

    def _ensure_run(self) -> None:
        meta = self.journal.meta
        try:
            self.client.get_run(meta["run_id"])
            self.run_id = meta["run_id"]
            return
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        run = self.client.create_run(
            self.experiment_id, start_time=meta.get("start_time"), tags=meta.get("tags", {}), run_name=self.run_name
        )
        meta.setdefault("previous_run_ids", []).append(meta["run_id"])
        meta["run_id"] = self.run_id = run.info.run_id
        self.journal.sent.update(params=False, metrics=0, artifacts=False, status=False)
        self.journal.save()

    # ------------------------------------------------------------------ sending
    def _send_params(self) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in self.journal.meta.get("params", {}).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(str(self.run_id), params=items[start : start + 100])
        self.journal.sent["params"] = True
        self.journal.save()

    def _sendable(self) -> int:
        """How many of the unsent values may go now (none waiting for a checkpoint commit)."""
        if self._hold_from is None:
            return len(self._unsent)
        return max(0, min(len(self._unsent), self._hold_from - self.journal.sent["metrics"]))

    def _send_metrics(self) -> None:
        while (count := min(self._sendable(), 1000)) > 0:
            chunk = self._unsent[:count]
            values = [Metric(v["key"], float(v["value"]), int(v["timestamp"]), int(v["step"])) for v in chunk]
            self.client.log_batch(str(self.run_id), metrics=values)
            del self._unsent[:count]
            self.journal.sent["metrics"] += count
            self.journal.save()
        self._sent_at = time.monotonic()

    def _send_artifacts(self) -> None:
        folder = Path(self.journal.meta["artifacts_dir"])
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            if child.name in NOT_ARTIFACTS or child.name.endswith(".tmp"):
                continue
            if child.is_dir():
                self.client.log_artifacts(str(self.run_id), str(child), child.name)
            else:
                self.client.log_artifact(str(self.run_id), str(child))
        self.journal.sent["artifacts"] = True
        self.journal.save()

    def _send_status(self) -> None:
        meta = self.journal.meta
        self.client.set_terminated(str(self.run_id), status=meta["status"], end_time=meta.get("end_time"))
        self.journal.sent["status"] = True
        self.journal.save()

    def _try(self, send: Callable[[], None]) -> bool:
        """Send now if the server is there (re-checked at most every ``RETRY_SECONDS``); never raises."""
        if self.run_id is None:
            return False
        if not self.online:
            if time.monotonic() - self._failed_at < RETRY_SECONDS:
                return False
            if unreachable(self.uri, 2.0) is not None:
                self._failed_at = time.monotonic()
                return False
            self.online = True
            print(f"MLflow at {self.uri} is back: sending what was kept locally", file=sys.stderr, flush=True)
        try:
            with http_limits():
                send()
            return True
        except Exception as err:  # noqa: BLE001 - training goes on whatever the server does
            self._offline(err)
            return False

    def _offline(self, err: Exception) -> None:
        self._failed_at = time.monotonic()
        if self.online:
            where = self.journal.directory or "memory"
            print(
                f"warning: MLflow at {self.uri} failed ({str(err).splitlines()[0][:300]}); training goes on and "
                f"everything is kept in {where}; it is sent when the server is back, or with `lifelong sync`"
                + locked_hint(err),
                file=sys.stderr,
                flush=True,
            )
        self.online = False

    # ------------------------------------------------------------------ public logging API
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Journal metrics at ``step`` now; they are sent every ``FLUSH_EVERY`` values or ``SEND_SECONDS``."""
        timestamp = now_ms()
        values: list[dict[str, Any]] = [
            {"key": k, "value": float(v), "timestamp": timestamp, "step": int(step)}
            for k, v in metrics.items()
            if (k, int(step)) not in self._skip
        ]
        if self._holding and self._hold_from is None:
            held = [i for i, v in enumerate(values) if not str(v["key"]).startswith("train/")]
            if held:
                self._hold_from = len(self.journal) + held[0]
        self.journal.append(values)
        self._unsent.extend(values)
        if len(self._unsent) >= FLUSH_EVERY or time.monotonic() - self._sent_at >= SEND_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send what is journaled and not sent yet (if the server is there), but nothing awaiting a commit."""
        if self._sendable():
            self._try(self._send_metrics)

    def barrier(self) -> dict[str, Any]:
        """Before a checkpoint is committed: fsync the journal; returns how many values it holds (the mark)."""
        self.journal.sync()
        self._holding = True
        return {"metrics": len(self.journal)}

    def committed(self, state: Any) -> None:
        """A checkpoint covering every value journaled so far is committed: send them."""
        self._hold_from = None
        self.flush()

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        """Upload one file (or a folder's files) to the run (kept for a later ``sync`` if that fails)."""
        if self.run_id is None:
            raise TrackingError("start() the run before logging artifacts")

        def send() -> None:
            if path.is_dir():
                self.client.log_artifacts(str(self.run_id), str(path), subdir)
            else:
                self.client.log_artifact(str(self.run_id), str(path), subdir)

        if not self._try(send):
            self.journal.meta.setdefault("pending_files", []).append([str(Path(path).resolve()), subdir])
            self.journal.save()

    def log_run_dir(self, run_dir: Path) -> None:
        """Upload the run directory's files as the run's artifacts (without checkpoints and the journal)."""
        self.journal.meta["artifacts_dir"] = str(Path(run_dir).resolve())
        self.journal.sent["artifacts"] = False
        self.journal.save()
        self._try(self._send_artifacts)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run with ``status`` (FINISHED, FAILED or KILLED)."""
        if self.run_id is None:
            return
        self._hold_from = None
        self.flush()
        self.journal.meta.update(status=RunStatus.to_string(RunStatus.from_string(status)), end_time=now_ms())
        self.journal.sent["status"] = False
        self.journal.save()
        self._try(self._send_status)
        self.journal.unlock()
        if not self.online:
            folder = self.journal.directory.parent if self.journal.directory else None
            where = f"is kept in {folder}; upload it later with `lifelong sync {folder}`" if folder else "was lost"
            print(f"MLflow at {self.uri} is unreachable: what it did not get {where}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ sync
    def sync(self) -> dict[str, Any]:
        """Send everything the journal holds that the server lacks; returns what was sent.

        Raises:
            TrackingError: the server failed.

        """
        meta, sent = self.journal.meta, self.journal.sent
        report: dict[str, Any] = {"uri": self.uri, "metrics": 0, "params": False, "artifacts": False, "status": None}
        try:
            with http_limits():
                self._ensure_run()
                report["run_id"] = self.run_id
                report["died"] = self.mark_dead_failed()
                if not sent["params"]:
                    self._send_params()
                    report["params"] = True
                self._unsent = self.journal.values(sent["metrics"])
                report["metrics"] = len(self._unsent)
                self._send_metrics()
                for path, subdir in meta.pop("pending_files", []):
                    self.client.log_artifact(str(self.run_id), path, subdir)
                if meta.get("artifacts_dir") and not sent["artifacts"]:
                    self._send_artifacts()
                    report["artifacts"] = True
                if meta.get("status") in TERMINAL and not sent["status"]:
                    self._send_status()
                    report["status"] = meta["status"]
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001
            raise tracking_error(self.uri, err) from None
        self.journal.save()
        return report


def sync_run(run_dir: Path, uri: str | None = None) -> dict[str, Any]:
    """Upload what the run in ``run_dir`` kept locally to ``uri`` (default: the URI it was run with).

    Metrics keep their steps and timestamps; params, artifacts and the final status follow. A
    server that does not know the run (a new store) gets a new run with everything in it.

    Raises:
        ConfigError: ``run_dir`` holds no journal.
        TrackingError: the server cannot be reached or failed.

    """
    journal = RunJournal.open(run_dir)
    meta = journal.meta
    root = Path(meta["artifact_root"]) if meta.get("artifact_root") else None
    tracker = MlflowTracker(uri or meta["uri"], meta["experiment"], meta["run_name"], root, journal.directory)
    from lifelong.tracking.extras import send_pending_extras  # extras builds on this module

    try:
        report = tracker.sync()
        try:
            report["extras"] = send_pending_extras(tracker)  # the stream input and models it could not send
        except Exception as err:  # noqa: BLE001
            raise tracking_error(tracker.uri, err) from None
    finally:
        tracker.journal.unlock()
    report["journal_status"] = meta.get("status")
    return report


def run_dir_tag(uri: str, run_id: str) -> str | None:
    """The run directory recorded on MLflow run ``run_id`` (tag ``lifelong.run_dir``), if it can be read."""
    if unreachable(uri, START_TIMEOUT) is not None:
        return None
    try:
        with http_limits():
            return client_for(uri).get_run(run_id).data.tags.get("lifelong.run_dir")
    except Exception:  # noqa: BLE001 - unknown id or store: the caller reports it
        return None


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise unknown_choice("experiment", experiment, names)
    return found.experiment_id


def stream_metric_table(uri: str, experiment: str, parent: str | None = None) -> list[dict[str, Any]]:
    """One record per finished run of ``experiment`` (parents of seed groups and sweeps left out).

    Each record holds the ``run_id``, ``run_name``, the run's ``params`` (its flat resolved config) and
    its final ``stream/*`` metrics (under ``metrics``, without the prefix). ``parent``: only the runs
    nested in that run (a sweep's).
    """
    client = client_for(uri)
    query = "attributes.status = 'FINISHED'" + (f" and tags.mlflow.parentRunId = '{parent}'" if parent else "")
    rows = []
    for run in client.search_runs([_experiment_id(client, experiment)], filter_string=query):
        if run.data.tags.get(ROLE_TAG) in (PARENT_ROLE, SWEEP_ROLE):
            continue
        metrics = {k.removeprefix("stream/"): v for k, v in run.data.metrics.items() if k.startswith("stream/")}
        params = dict(run.data.params)
        rows.append({"run_id": run.info.run_id, "run_name": run.info.run_name, "params": params, "metrics": metrics})
    return rows


def sweep_grid(uri: str, experiment: str, run_id: str | None = None) -> tuple[str, str]:
    """``(run id, grid)`` of a sweep's parent run in ``experiment`` (default: the latest sweep).

    Raises:
        TrackingError: the experiment has no sweep, or ``run_id`` is not a sweep's parent.

    """
    client = client_for(uri)
    query = f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'"
    sweeps = client.search_runs(
        [_experiment_id(client, experiment)], filter_string=query, order_by=["attributes.start_time DESC"]
    )
    chosen = [r for r in sweeps if run_id in (None, r.info.run_id)][:1]
    if not chosen:
        what = f"run {run_id} is not the parent of a sweep" if run_id else "it has no sweep"
        raise TrackingError(f"compare --grid on experiment {experiment!r}: {what} (start one with `lifelong sweep`)")
    return chosen[0].info.run_id, chosen[0].data.params["sweep.grid"]


def mark_dead_run(run_dir: Path) -> bool:
    """Sync the run in ``run_dir`` if its process died while it was RUNNING, which marks it FAILED.

    Best effort (used on the way to another error): returns whether it was marked.
    """
    journal = RunJournal(Path(run_dir) / "tracking")
    if journal.meta.get("status") != "RUNNING":
        return False
    try:
        return bool(sync_run(Path(run_dir)).get("died"))
    except Exception:  # noqa: BLE001 - the server may be away; `lifelong sync` reports it later
        return False
