"""Checkpoints after every experience (DESIGN §4), so a stopped run continues where it stopped.

Layout in the run directory::

    checkpoints/rank<r>.pt    everything rank r needs to continue (replay memories are per rank)
    checkpoints/rank<r>.json  what rank r holds: its replay memories' capacity/stored/seen, test samples scored
    checkpoints/state.json    written last, by rank 0: the experience reached, world size, MLflow run id

A checkpoint holds the module's ``state_dict`` (model, strategy with its buffers and teachers,
the global step), the score matrices, every analysis's ``state_dict``, the listener's counters
and the Python / NumPy / torch (CPU and CUDA) random states. The optimizer is not in it: every
experience starts a fresh one, so no optimizer state crosses an experience boundary. Files are
written to a temporary name and renamed, so a crash leaves the previous checkpoint intact.
They are loaded with ``torch.load(weights_only=True)``: strategies keep plain data (tensors,
numbers, strings, lists, dicts) in their state.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.journal import atomic_write_text
from lifelong.metrics.score_matrices import ScoreMatrices

FORMAT = 2  # 2: the score matrices of every evaluator (1: one accuracy matrix)
DIRNAME = "checkpoints"
STATE = "state.json"


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU, and every CUDA device in use) random states, as plain data."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state((saved["kind"], keys, saved["position"], saved["has_gauss"], saved["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def memory_report(strategy: nn.Module) -> dict[str, dict[str, int]]:
    """Capacity, stored and seen samples of every replay memory of ``strategy`` (modules with ``shard``)."""
    report = {}
    for name, module in strategy.named_modules():
        if callable(getattr(module, "shard", None)) and hasattr(module, "capacity"):
            report[name or "."] = {
                "capacity": int(module.capacity),
                "total_capacity": int(getattr(module, "total_capacity", module.capacity)),
                "stored": len(module),  # type: ignore[arg-type]
                "seen": int(getattr(module, "num_seen", 0)),
            }
    return report


def _barrier(world_size: int) -> None:
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def read_state(run_dir: Path) -> dict[str, Any]:
    """``checkpoints/state.json`` of ``run_dir``.

    Raises:
        ConfigError: there is no readable checkpoint.

    """
    path = Path(run_dir) / DIRNAME / STATE
    if not path.is_file():
        raise ConfigError(
            f"--resume {run_dir}: no checkpoint there ({path} is missing); a run writes one after the evaluation "
            "before its first experience unless checkpoint.enabled=false"
        )
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume {run_dir}: {path} is unreadable ({err})") from None
    if state.get("format") != FORMAT:
        raise ConfigError(f"--resume {run_dir}: checkpoint format {state.get('format')!r}, this version reads {FORMAT}")
    return state


def find_run_dir(target: str, search_root: Path) -> Path | None:
    """The run directory ``target`` names: a folder, or the MLflow run id of a run under ``search_root``."""
    path = Path(target)
    if path.is_dir():
        return path
    for state_path in sorted(Path(search_root).glob(f"*/*/{DIRNAME}/{STATE}")):
        try:
            if json.loads(state_path.read_text()).get("run_id") == target:
                return state_path.parent.parent
        except (OSError, ValueError):
            continue
    return None


def check_same_config(
    before: Mapping[str, str], now: Mapping[str, str], may_change: tuple[str, ...], where: str, saved: Path
) -> None:
    """Raise ``ConfigError`` listing the keys (outside ``may_change``) whose values differ between two flat configs."""
    keys = sorted((set(before) | set(now)) - set(may_change))
    changed = [key for key in keys if before.get(key) != now.get(key)]
    if changed:
        shown = "; ".join(f"{key}: {before.get(key)!r} then, {now.get(key)!r} now" for key in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        raise ConfigError(
            f"{where}: the config differs from the one the run started with ({shown}{more}); resume with the same "
            f"config and overrides (it is saved in {saved}), or start a new run"
        )


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class RunCheckpointer:
    """Saves and restores one rank's share of a run; the loop calls ``restore`` once and ``save`` after each step.

    Args:
        run_dir: the run directory; ``None`` on ranks > 0 of a new DDP run (rank 0 sends it).
        rank: this process's global rank.
        world_size: number of processes.
        module: the ``ContinualModule`` (model + strategy + global step).
        analyses: the run's analyses by name.
        listener: the loop listener (its counters: seconds trained, samples seen).
        info: what ``state.json`` records besides the position (run id, experiment, run name ...).
        resume: restore from ``run_dir`` instead of starting fresh.
        enabled: write checkpoints (``checkpoint.enabled``).

    """

    def __init__(
        self,
        run_dir: Path | None,
        rank: int,
        world_size: int,
        module: nn.Module,
        analyses: Mapping[str, nn.Module],
        listener: Stateful,
        info: dict[str, Any],
        resume: bool = False,
        enabled: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.rank = rank
        self.world_size = world_size
        self.module = module
        self.analyses = analyses
        self.listener = listener
        self.info = info
        self.resume = resume
        self.enabled = enabled
        self.completed: int | None = None  # the last experience checkpointed (-1: the evaluation before training)
        self._agreed = False

    @property
    def directory(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("the run directory is not known on this rank yet")
        return self.run_dir / DIRNAME

    def _agree_on_run_dir(self) -> None:
        """Ranks > 0 of a new run learn the run directory from rank 0 (their clocks may name it differently)."""
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            shared = [str(self.run_dir) if self.rank == 0 else None]
            torch.distributed.broadcast_object_list(shared, src=0)
            self.run_dir = Path(shared[0])  # type: ignore[arg-type]

    def save(self, completed: int, matrix: ScoreMatrices) -> None:
        """Write this rank's checkpoint after experience ``completed`` (all ranks call it together)."""
        if not self.enabled:
            return
        if not self._agreed:  # the first save happens at the same point on every rank
            self._agree_on_run_dir()
            self._agreed = True
        strategy = getattr(self.module, "strategy", self.module)
        payload = {
            "format": FORMAT,
            "completed": completed,
            "rank": self.rank,
            "world_size": self.world_size,
            "module": self.module.state_dict(),
            "matrix": matrix.state_dict(),
            "analyses": {name: analysis.state_dict() for name, analysis in self.analyses.items()},
            "listener": self.listener.state_dict(),
            "rng": rng_state(),
        }
        totals = getattr(self.module, "eval_totals", None)
        details = {
            "rank": self.rank,
            "world_size": self.world_size,
            "completed": completed,
            "memories": memory_report(strategy),
            "eval_samples": totals() if callable(totals) else None,
        }
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"rank{self.rank}.pt.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, directory / f"rank{self.rank}.pt")
        atomic_write_text(directory / f"rank{self.rank}.json", json.dumps(details, indent=1))
        _barrier(self.world_size)
        if self.rank == 0:
            state = {
                "format": FORMAT,
                "completed": completed,
                "world_size": self.world_size,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **self.info,
            }
            atomic_write_text(directory / STATE, json.dumps(state, indent=1))
        self.completed = completed

    def restore(self) -> tuple[int, ScoreMatrices] | None:
        """Load this rank's checkpoint into the module, analyses, listener and random generators.

        Returns:
            ``(completed, matrix)``, or ``None`` when the run starts fresh.

        Raises:
            ConfigError: the checkpoint is missing, unreadable, or from another world size.

        """
        if not self.resume:
            return None
        assert self.run_dir is not None  # a resumed run always knows its directory
        state = read_state(self.run_dir)
        if state["world_size"] != self.world_size:
            raise ConfigError(
                f"--resume {self.run_dir}: the run used {state['world_size']} process(es), this one has "
                f"{self.world_size}; resume with the same trainer.devices / trainer.num_nodes"
            )
        path = self.directory / f"rank{self.rank}.pt"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ConfigError(f"--resume {self.run_dir}: cannot read {path}: {err}") from None
        if payload.get("completed") != state["completed"]:
            raise ConfigError(
                f"--resume {self.run_dir}: {path} is from experience {payload.get('completed')}, state.json says "
                f"{state['completed']} (the run died while writing its checkpoint)"
            )
        self.module.load_state_dict(payload["module"])
        matrix = ScoreMatrices.from_state_dict(payload["matrix"])
        for name, analysis in self.analyses.items():
            if name in payload["analyses"]:
                analysis.load_state_dict(payload["analyses"][name])
        self.listener.load_state_dict(payload["listener"])
        set_rng_state(payload["rng"])
        self.completed = int(payload["completed"])
        return self.completed, matrix
