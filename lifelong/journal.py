"""The local copy of everything a run sends to MLflow, kept in ``<run dir>/tracking/``.

A tracking server may go away in the middle of a run that takes days. Every value is therefore
written here first and sent afterwards; what has been sent is recorded, so the rest can be sent
when the server is back (automatically, or with ``lifelong sync <run dir>``) and nothing is sent
twice. Files:

- ``run.json``: tracking URI, experiment, run name and id, params, tags, start/end time, status,
  the run directory whose files are the run's artifacts, and what was sent already;
- ``metrics.jsonl``: one ``{"key", "value", "timestamp", "step"}`` object per logged value, in order;
  every value is written (to the OS) when it is logged, and fsynced before a checkpoint covers it;
- ``lock``: held (``flock``) by the process that runs the run, so ``lifelong sync`` and ``--resume``
  can tell a live run from one whose process died (the kernel drops the lock of a killed process).

Plain JSON so the files can be read (and fixed) by hand; no MLflow import here.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lifelong.errors import ConfigError, DataError

META = "run.json"
METRICS = "metrics.jsonl"
LOCK = "lock"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, fsync it, rename it and fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a crash leaves either the old or the new file, never half of one."""
    write_durable(path, text.encode())


class RunJournal:
    """The journal of one MLflow run.

    Args:
        directory: where the journal lives (``<run dir>/tracking``), created on the first write;
            ``None`` keeps the bookkeeping in memory only (nothing is written).

    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.meta: dict[str, Any] = {}
        self._count = 0
        self._lock: int | None = None
        if self.directory is not None and self.meta_path.is_file():
            try:
                self.meta = json.loads(self.meta_path.read_text())
            except (OSError, ValueError) as err:
                raise DataError(f"cannot read the tracking journal {self.meta_path}: {err}") from None
            self._drop_torn_line()
            self._count = sum(1 for _ in self._lines())

    def _drop_torn_line(self) -> None:
        """Cut a last line that a crash left half-written (every complete line ends with a newline)."""
        if not self.metrics_path.is_file():
            return
        data = self.metrics_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.metrics_path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    @classmethod
    def open(cls, run_dir: Path) -> RunJournal:
        """The journal of an existing run directory.

        Raises:
            ConfigError: the folder holds no journal.

        """
        journal = cls(Path(run_dir) / "tracking")
        if not journal.meta:
            raise ConfigError(
                f"{run_dir} holds no tracking journal ({journal.meta_path} is missing); pass the run directory that "
                "`lifelong run` printed, of a run with tracking.enabled=true"
            )
        return journal

    @property
    def meta_path(self) -> Path:
        return (self.directory or Path()) / META

    @property
    def metrics_path(self) -> Path:
        return (self.directory or Path()) / METRICS

    @property
    def sent(self) -> dict[str, Any]:
        """What reached the server: ``params`` / ``artifacts`` / ``status`` (bool), ``metrics`` (values, in order)."""
        return self.meta.setdefault("sent", {"params": False, "metrics": 0, "artifacts": False, "status": False})

    def __len__(self) -> int:
        """Metric values journaled so far."""
        return self._count

    def save(self) -> None:
        """Write ``run.json`` (atomically)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.meta_path, json.dumps(self.meta, indent=1, sort_keys=True))

    def append(self, values: Iterable[dict[str, Any]]) -> None:
        """Add metric values (dicts with key, value, timestamp, step) to ``metrics.jsonl``."""
        lines = [json.dumps(v) + "\n" for v in values]
        if not lines or self.directory is None:
            self._count += len(lines)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as f:
            f.writelines(lines)
            f.flush()
        self._count += len(lines)

    def sync(self) -> None:
        """Fsync ``metrics.jsonl``: what was appended survives a crash of the machine, not only of the process."""  # noqa: D403
        if self.directory is None or not self.metrics_path.is_file():
            return
        with self.metrics_path.open("rb") as f:
            os.fsync(f.fileno())

    def truncate(self, keep: int) -> None:
        """Keep only the first ``keep`` metric values (the rest belong to work a resumed run redoes)."""
        if self.directory is None or keep >= self._count:
            return
        lines = list(self._lines())[:keep]
        atomic_write_text(self.metrics_path, "".join(lines))
        self._count = len(lines)

    def try_lock(self) -> bool:
        """Take the run's lock (kept until :meth:`unlock` or the process ends); ``False`` if another process has it."""
        if self.directory is None or self._lock is not None:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd
        return True

    def unlock(self) -> None:
        """Release the lock taken by :meth:`try_lock`."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def holder(self) -> str:
        """The process id written by the lock's holder (``?`` when unknown)."""
        try:
            return (self.directory / LOCK).read_text().strip() or "?"  # type: ignore[operator]
        except (OSError, TypeError):
            return "?"

    def _lines(self) -> Iterator[str]:
        if self.directory is not None and self.metrics_path.is_file():
            with self.metrics_path.open() as f:
                yield from (line for line in f if line.strip())

    def values(self, start: int = 0) -> list[dict[str, Any]]:
        """The journaled metric values from index ``start`` on.

        Raises:
            DataError: a line is not JSON (the file was damaged).

        """
        out = []
        for i, line in enumerate(self._lines()):
            if i < start:
                continue
            try:
                out.append(json.loads(line))
            except ValueError as err:
                raise DataError(f"{self.metrics_path}, line {i + 1}, is not JSON: {err}") from None
        return out
