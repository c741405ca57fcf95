"""Where MLflow runs are stored, and whether that store can be used (no MLflow import: see ``tracking``).

Default store: ``sqlite:///<cwd>/runs/mlflow.db``; ``MLFLOW_TRACKING_URI`` or an explicit URI
override it. A new SQLite store is created under an exclusive file lock (``<db>.lock``), so
concurrent first runs create its tables once. :func:`check_store` fails fast, before any data is
loaded, on a server that does not answer and on a store that cannot be written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lifelong.errors import TrackingError

START_TIMEOUT = 5.0  # seconds the server has to answer when a run starts
# Few and short HTTP retries (unless the user set these): a lost server must not stall training for minutes.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def default_uri(root: str | Path = "runs") -> str:
    """The SQLite store under ``root`` (relative to the working directory)."""
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def resolve_uri(uri: str | None, root: str | Path = "runs") -> str:
    """Explicit URI, else ``MLFLOW_TRACKING_URI``, else the default SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine (artifacts then go to a local folder)."""
    return uri.startswith(("sqlite:", "file:"))


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store (``<db>.lock``), so concurrent first runs create it once."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (before any data is loaded) when the store cannot be used: unreachable, or read-only.

    Raises:
        TrackingError: naming the URI, what is wrong and the ways out.

    """
    reason = unreachable(uri, timeout)
    if reason is not None:
        raise tracking_error(uri, reason)
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    reason = None
    if path.is_dir() or not folder.is_dir():
        reason = f"{path if path.is_dir() else folder} is not a file in a folder"
    elif path.exists() and not os.access(path, os.W_OK):
        reason = f"{path} is read-only"
    elif not os.access(folder, os.W_OK):  # SQLite writes its journal next to the database
        reason = f"{folder} is read-only"
    if reason is not None:
        raise TrackingError(
            f"the MLflow store {path} cannot be written ({reason}); make it writable, point tracking.uri or "
            "MLFLOW_TRACKING_URI at a writable store, or run without tracking: tracking.enabled=false"
        )


def git_commit(directory: str | Path | None = None) -> str | None:
    """The git commit checked out where ``directory`` is (default: the working directory), if any."""
    return _git(["rev-parse", "HEAD"], directory)


def _git(args: list[str], directory: str | Path | None) -> str | None:
    where = ["-C", str(directory)] if directory is not None else []
    try:
        out = subprocess.run(["git", *where, *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def package_git_info(directory: str | Path | None = None) -> dict[str, str]:
    """Tags naming the git commit of the package's source tree (not of the working directory).

    ``git.commit`` and ``mlflow.source.git.commit`` (what the MLflow UI shows), the branch, and
    ``git.dirty=true`` when tracked files of that tree have uncommitted changes. Empty outside a git checkout
    (an installed wheel).
    """
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    commit = git_commit(directory)
    if not commit:
        return {}
    tags = {"git.commit": commit, "mlflow.source.git.commit": commit}
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], directory)
    if branch and branch != "HEAD":
        tags["mlflow.source.git.branch"] = branch
    changes = _git(["status", "--porcelain", "--untracked-files=no", "--", "."], directory)
    tags["git.dirty"] = "true" if changes else "false"
    return tags


def unreachable(uri: str, timeout: float) -> str | None:
    """Why the HTTP server at ``uri`` does not answer, or ``None`` when it does (any HTTP status counts)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


SERVER_FIX = (
    "SQLite lets one process write at a time: for many concurrent runs (or a store on a shared filesystem) use a "
    "tracking server on PostgreSQL, e.g. `mlflow server --backend-store-uri postgresql+psycopg://USER@HOST/DB "
    "--serve-artifacts --artifacts-destination DIR --host 0.0.0.0 --port 5000`, and tracking.uri=http://HOST:5000 "
    "(README: Scaling out, a production tracking server)"
)


def locked_hint(reason: object) -> str:
    """The way out when a SQLite store was busy (``database is locked``), else ``""``."""
    return f". {SERVER_FIX}" if "database is locked" in str(reason) else ""


def tracking_error(uri: str, reason: object) -> TrackingError:
    """The error for a tracking store that cannot be used, with the ways out."""
    if is_local(uri):
        return TrackingError(
            f"the MLflow store {uri} failed ({' '.join(str(reason).split())[:500]}); check that the file is an "
            "intact, writable MLflow database, point tracking.uri or MLFLOW_TRACKING_URI at another store, or run "
            "without tracking: tracking.enabled=false" + locked_hint(reason)
        )
    return TrackingError(
        f"MLflow tracking at {uri} is unreachable or failed ({reason}). Start the server (e.g. `mlflow server "
        "--host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///runs/mlflow.db`), point tracking.uri or "
        "MLFLOW_TRACKING_URI at a running one, or run without tracking: tracking.enabled=false"
    )


@contextlib.contextmanager
def http_limits() -> Iterator[None]:
    """Apply ``HTTP_LIMITS`` for the duration of a block (variables the user set are left alone)."""
    added = [key for key in HTTP_LIMITS if key not in os.environ]
    os.environ.update({key: HTTP_LIMITS[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
