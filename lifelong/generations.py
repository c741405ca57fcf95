"""Checkpoint generations: each checkpoint is one atomic commit with checksums; the previous one is kept.

Layout of a checkpoint folder::

    gen-000007/              one generation: what every rank saved at one point of the run
        rank0.pt rank0.json  the files each rank wrote (any names; ``.pt`` is torch, ``.json`` is JSON)
        rank0.sums.json      sha256 and size of the files rank 0 wrote
        state.json           written by rank 0 once every rank's files are there: the caller's state
                             and the sha256 of every file of the generation
    LATEST                   the name of the newest committed generation

Committing: every rank writes and fsyncs its files into a new ``gen-N`` folder; rank 0 writes
``state.json`` and fsyncs the folder, then replaces ``LATEST`` (write, fsync, rename, fsync the
parent): that rename is the commit. Only then are generations older than the previous one removed.
A kill at any point therefore leaves ``LATEST`` naming a complete generation and keeps its
predecessor as a fallback. Loading verifies every checksum; a damaged latest generation gives a
warning and the previous one is used; when none is usable the error names each one and its fault.

This module knows nothing of what the files hold: callers hand it plain objects (dicts of tensors,
numbers, strings) and get them back, loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lifelong.errors import ConfigError
from lifelong.faults import crash_point
from lifelong.journal import write_durable

FORMAT = 2
LATEST = "LATEST"
STATE = "state.json"
PATTERN = re.compile(r"gen-(\d{6,})")
LEGACY_FORMAT = 1  # a single unversioned checkpoint (state.json + rank<r>.pt in the folder itself)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode(name: str, obj: Any) -> bytes:
    """``obj`` as the bytes of file ``name``: JSON for ``.json``, ``torch.save`` otherwise."""
    if name.endswith(".json"):
        return json.dumps(obj, indent=1).encode()
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def generation_name(number: int) -> str:
    return f"gen-{number:06d}"


def generation_number(name: str) -> int | None:
    match = PATTERN.fullmatch(name)
    return int(match.group(1)) if match else None


class Generations:
    """The generations in one checkpoint folder (``<run dir>/checkpoints``).

    Args:
        directory: the checkpoint folder (created on the first write).

    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # ------------------------------------------------------------------ reading the folder
    def numbers(self) -> list[int]:
        """Numbers of the generation folders present (complete or not), ascending."""
        if not self.directory.is_dir():
            return []
        found = (generation_number(p.name) for p in self.directory.iterdir() if p.is_dir())
        return sorted(n for n in found if n is not None)

    def latest_name(self) -> str | None:
        """What ``LATEST`` names, or ``None`` when it is missing or unreadable."""
        try:
            name = (self.directory / LATEST).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return name if generation_number(name) is not None else None

    def next_name(self) -> str:
        """A generation name newer than every folder present (a dead attempt's leftovers included)."""
        numbers = self.numbers()
        return generation_name((numbers[-1] if numbers else 0) + 1)

    def candidates(self) -> list[str]:
        """Generations to try, newest committed first, then older ones (``"."``: a legacy checkpoint)."""
        names = [generation_name(n) for n in reversed(self.numbers())]
        latest = self.latest_name()
        if latest is not None and latest in names:  # newer folders are uncommitted leftovers
            names = names[names.index(latest) :]
        if not names and (self.directory / STATE).is_file():
            names = ["."]
        return names

    # ------------------------------------------------------------------ writing
    def write_rank(self, generation: str, rank: int, files: Mapping[str, Any]) -> None:
        """Write one rank's files into ``generation`` (fsynced), with their checksums."""
        folder = self.directory / generation
        folder.mkdir(parents=True, exist_ok=True)
        sums = {}
        for name, obj in files.items():
            data = encode(name, obj)
            with (folder / name).open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            sums[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        write_durable(folder / f"rank{rank}.sums.json", json.dumps(sums, indent=1).encode())
        crash_point("checkpoint.files")

    def commit(self, generation: str, state: Mapping[str, Any], world_size: int) -> None:
        """Rank 0, once every rank's files are written: record ``state`` and the checksums, then switch ``LATEST``."""
        folder = self.directory / generation
        files: dict[str, Any] = {}
        for rank in range(world_size):
            files.update(json.loads((folder / f"rank{rank}.sums.json").read_text()))
        write_durable(folder / STATE, json.dumps({**state, "format": FORMAT, "files": files}, indent=1).encode())
        crash_point("checkpoint.state")
        previous = self.latest_name()
        write_durable(self.directory / LATEST, (generation + "\n").encode())
        crash_point("checkpoint.pointer")
        self._prune(keep={generation, previous})

    def _prune(self, keep: set[str | None]) -> None:
        for number in self.numbers():
            name = generation_name(number)
            if name not in keep:
                shutil.rmtree(self.directory / name, ignore_errors=True)
        if (self.directory / STATE).is_file():  # a legacy single checkpoint, superseded by the first generation
            for path in [*self.directory.glob("rank*.pt"), *self.directory.glob("rank*.json")]:
                path.unlink(missing_ok=True)
            (self.directory / STATE).unlink(missing_ok=True)

    # ------------------------------------------------------------------ loading
    def fault(self, generation: str, world_size: int | None = None) -> str | None:
        """What is wrong with ``generation`` (``None``: complete, every checksum matches)."""
        folder = self.directory / generation
        try:
            state = json.loads((folder / STATE).read_text())
        except FileNotFoundError:
            return f"{folder / STATE} is missing (the run died while writing it)"
        except (OSError, ValueError) as err:
            return f"{folder / STATE} is unreadable ({err})"
        if not isinstance(state, dict) or state.get("format") not in (FORMAT, LEGACY_FORMAT):
            return f"{folder / STATE}: format {state.get('format') if isinstance(state, dict) else '?'!r} unknown"
        if world_size is not None and state.get("world_size", world_size) != world_size:
            return None  # readable: the caller reports the world size it needs
        for name, expected in state.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                return f"{path} is missing"
            size = path.stat().st_size
            if size != expected["bytes"]:
                return f"{path} has {size} bytes, {expected['bytes']} were written (truncated or overwritten)"
            if sha256_of(path) != expected["sha256"]:
                return f"{path} fails its sha256 checksum (the file is damaged)"
        return None

    def select(self, where: str, quiet: bool = False) -> tuple[str, dict[str, Any]]:
        """The newest usable generation and its state; warns when a newer one is damaged.

        Raises:
            ConfigError: no generation is usable (each is named with its fault).

        """
        faults: list[str] = []
        for name in self.candidates():
            fault = self.fault(name)
            if fault is None:
                state = json.loads((self.directory / name / STATE).read_text())
                if faults and not quiet:
                    print(
                        f"warning: {where}: the latest checkpoint is damaged ({'; '.join(faults)}); using the "
                        f"previous one, {self.directory / name} (after experience {state.get('completed')})",
                        file=sys.stderr,
                        flush=True,
                    )
                return name, {**state, "generation": name}
            faults.append(fault)
        if not faults:
            raise ConfigError(
                f"{where}: no checkpoint there ({self.directory} holds none); a run writes one after the evaluation "
                "before its first experience unless checkpoint.enabled=false"
            )
        raise ConfigError(
            f"{where}: no usable checkpoint: {'; '.join(faults)}; start a new run (or restore the files from a backup)"
        )

    def load(self, generation: str, name: str) -> Any:
        """One file of a generation, as written (``.pt``: ``torch.load(weights_only=True)`` on the CPU).

        Raises:
            ConfigError: the file cannot be read.

        """
        path = self.directory / generation / name
        try:
            if name.endswith(".json"):
                return json.loads(path.read_text())
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot read checkpoint file {path} ({path.stat().st_size} bytes): {reason}") from None
