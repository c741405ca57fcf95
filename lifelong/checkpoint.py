"""Checkpoints after every experience (DESIGN §4), so a stopped run continues where it stopped.

Each checkpoint is one generation of :mod:`lifelong.generations` in ``<run dir>/checkpoints/``,
committed atomically with a checksum of every file (the previous generation is kept until the
new one is complete)::

    checkpoints/gen-<n>/rank<r>.pt    everything rank r needs to continue (replay memories are per rank)
    checkpoints/gen-<n>/rank<r>.json  what rank r holds: its replay memories' capacity/stored/seen, test samples scored
    checkpoints/gen-<n>/state.json    written last, by rank 0: the experience reached, world size, MLflow run id,
                                      how many metric values the tracking journal held, the checksums
    checkpoints/LATEST                the committed generation

A checkpoint holds the module's ``state_dict`` (model, strategy with its buffers and teachers,
the global step), the score matrices, every analysis's ``state_dict``, the listener's counters
and the Python / NumPy / torch (CPU and CUDA) random states. The optimizer is in it only when it crosses
experience boundaries (``optim.fresh_per_experience: false``, the module's extra state); by default every
experience starts a fresh one.
Before a generation is written, the run's journal (``journal``, the tracker) makes every metric
evaluated so far durable and says how many values it holds; after the commit it may send them.
Files are loaded with ``torch.load(weights_only=True)``: strategies keep plain data (tensors,
numbers, strings, lists, dicts) in their state.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.faults import crash_point
from lifelong.generations import Generations
from lifelong.metrics.score_matrices import ScoreMatrices

FORMAT = 3  # 3: generations holding the score matrices of the run's evaluator
DIRNAME = "checkpoints"


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


def read_state(run_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """The state of the newest usable checkpoint generation of ``run_dir`` (its ``"generation"`` included).

    A damaged latest generation is reported with a warning and the previous one is used.

    Raises:
        ConfigError: there is no usable checkpoint (every generation tried is named with its fault).

    """
    return Generations(Path(run_dir) / DIRNAME).select(f"--resume {run_dir}", quiet=quiet)[1]


def find_run_dir(target: str, search_root: Path) -> Path | None:
    """The run directory ``target`` names: a folder, or the MLflow run id of a run under ``search_root``."""
    path = Path(target)
    if path.is_dir():
        return path
    root = Path(search_root)
    for pattern in ("*/tracking/run.json", f"*/{DIRNAME}/gen-*/state.json", f"*/{DIRNAME}/state.json"):
        for found in sorted(root.glob(pattern)):
            try:
                if json.loads(found.read_text()).get("run_id") == target:
                    return next(p for p in found.parents if p.parent == root)
            except (OSError, ValueError, StopIteration):
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


class CommitJournal(Protocol):
    """The run's metric journal as a checkpoint sees it (``lifelong.tracking.MlflowTracker``)."""

    def barrier(self) -> dict[str, Any]:
        """Make every value logged so far durable; returns what the generation records about the journal."""
        ...

    def committed(self, state: Mapping[str, Any]) -> None:
        """The generation recording ``state`` is committed: what it covers may be sent."""
        ...


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
        journal: rank 0's metric journal, made durable before each commit (``None``: no tracking).

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
        journal: CommitJournal | None = None,
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
        self.journal = journal if rank == 0 else None
        self.completed: int | None = None  # the last experience checkpointed (-1: the evaluation before training)
        self.step: dict[str, Any] | None = None  # the restored position inside the next experience, if any
        self.every_n_steps = 0  # checkpoint.every_n_steps: also checkpoint every N steps inside an experience
        self._next: int | None = None  # the number of the next generation, agreed by the ranks at the first save

    @property
    def directory(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("the run directory is not known on this rank yet")
        return self.run_dir / DIRNAME

    def _agree(self) -> None:
        """Ranks > 0 of a new run learn the run directory from rank 0 (their clocks may name it differently).

        Rank 0 also names the first generation: newer than any folder a dead attempt left behind.
        """
        number = 1
        if self.rank == 0 and self.run_dir is not None:
            number = int(Generations(self.directory).next_name().removeprefix("gen-"))
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            shared = [str(self.run_dir) if self.rank == 0 else None, number]
            torch.distributed.broadcast_object_list(shared, src=0)
            self.run_dir, number = Path(shared[0]), int(shared[1])  # type: ignore[arg-type]
        self._next = number

    def save(
        self,
        completed: int,
        matrix: ScoreMatrices,
        step: dict[str, Any] | None = None,
        start: dict[str, Any] | None = None,
    ) -> None:
        """Commit this run's checkpoint after experience ``completed`` as one generation (all ranks call it).

        Inside the next experience (:mod:`lifelong.step_checkpoint`): ``start`` is the module and random
        states that experience started from (saved in place of the current ones) and ``step`` where it is.
        """
        if not self.enabled:
            return
        if self._next is None:  # the first save happens at the same point on every rank
            self._agree()
        assert self._next is not None
        generation, self._next = f"gen-{self._next:06d}", self._next + 1
        journal = self.journal.barrier() if self.journal is not None else {}
        crash_point("journal.synced")
        store = Generations(self.directory)
        store.write_rank(generation, self.rank, self._files(completed, matrix, step, start))
        _barrier(self.world_size)
        state: dict[str, Any] = {}
        if self.rank == 0:
            state = {
                "completed": completed,
                "world_size": self.world_size,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "journal": journal,
                **self.info,
            }
            if step is not None:
                state.update(experience=step["experience"], steps=step["steps"])
            store.commit(generation, state, self.world_size)
        _barrier(self.world_size)
        self.completed = completed
        if self.journal is not None:
            self.journal.committed(state)

    def _files(
        self,
        completed: int,
        matrix: ScoreMatrices,
        step: dict[str, Any] | None = None,
        start: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What this rank's share of a generation holds: ``rank<r>.pt`` (to resume) and ``rank<r>.json`` (to read)."""
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
        if start is not None:
            payload.update(module=start["module"], rng=start["rng"], step=step)
        totals = getattr(self.module, "eval_totals", None)
        details = {
            "rank": self.rank,
            "world_size": self.world_size,
            "completed": completed,
            "memories": memory_report(strategy),
            "eval_samples": totals() if callable(totals) else None,
        }
        return {f"rank{self.rank}.pt": payload, f"rank{self.rank}.json": details}

    def restore(self) -> tuple[int, ScoreMatrices] | None:
        """Load this rank's checkpoint into the module, analyses, listener and random generators.

        Returns:
            ``(completed, matrix)``, or ``None`` when the run starts fresh.

        Raises:
            ConfigError: no generation is usable, or the checkpoint is from another world size.

        """
        if not self.resume:
            return None
        assert self.run_dir is not None  # a resumed run always knows its directory
        store = Generations(self.directory)
        generation, state = store.select(f"--resume {self.run_dir}", quiet=True)  # locate_run warned already
        if state["world_size"] != self.world_size:
            raise ConfigError(
                f"--resume {self.run_dir}: the run used {state['world_size']} process(es), this one has "
                f"{self.world_size}; resume with the same trainer.devices / trainer.num_nodes"
            )
        payload = store.load(generation, f"rank{self.rank}.pt")
        if payload.get("completed") != state["completed"]:
            raise ConfigError(
                f"--resume {self.run_dir}: {store.directory / generation} holds rank{self.rank}.pt of experience "
                f"{payload.get('completed')}, its state.json says {state['completed']}; start a new run"
            )
        self.module.load_state_dict(payload["module"])
        matrix = ScoreMatrices.from_state_dict(payload["matrix"])
        for name, analysis in self.analyses.items():
            if name in payload["analyses"]:
                analysis.load_state_dict(payload["analyses"][name])
        self.listener.load_state_dict(payload["listener"])
        set_rng_state(payload["rng"])
        self.completed = int(payload["completed"])
        self.step = payload.get("step")  # inside the next experience: where it was (lifelong.step_checkpoint)
        return self.completed, matrix
