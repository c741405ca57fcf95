"""Mean ± std over the runs of each setting: what ``lifelong compare`` and the HTML report print.

A setting is a config digest (:mod:`lifelong.digest`): runs are pooled only when their resolved
configs are equal up to the seed and the output/tracking keys. Each row names the keys in which its
setting differs from the others. ``by=KEY`` groups by one key's value instead; a row that then pools
several settings says in which keys its runs differ.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifelong.digest import differing_keys, short_digest

__all__ = ["Group", "RunRow", "compare_table", "grid_table", "group_runs", "mean_std", "parse_grid"]

MAX_KEYS = 4  # differing keys named per row (the rest are counted)


@dataclass
class RunRow:
    """One finished run: its name, its flat resolved config (MLflow params) and its final metrics."""

    name: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    run_id: str | None = None

    @property
    def seed(self) -> str:
        return str(self.params.get("seed", "?"))


@dataclass
class Group:
    """The runs of one setting (or of one value of the ``by`` key)."""

    key: str  # the short digest, or the ``by`` key's value
    runs: list[RunRow] = field(default_factory=list)
    label: str = ""  # the keys that set this group apart, with its values
    within: list[str] = field(default_factory=list)  # keys whose values differ between its runs (``by`` only)

    @property
    def seeds(self) -> str:
        """The seeds of the runs, ``0,1,2``; a seed that occurs more than once is marked ``0×2``."""
        counts = Counter(run.seed for run in self.runs)
        return ",".join(seed if n == 1 else f"{seed}×{n}" for seed, n in sorted(counts.items(), key=_seed_order))

    def values(self, metric: str) -> list[float]:
        return [float(run.metrics[metric]) for run in self.runs if metric in run.metrics]


def _seed_order(item: tuple[str, int]) -> tuple[int, str]:
    seed = item[0]
    return (int(seed), "") if seed.isdigit() else (1 << 62, seed)


def _describe(keys: Sequence[str], params: Mapping[str, str]) -> str:
    shown = [f"{key.removeprefix('strategy.params.')}={params.get(key, '∅')}" for key in keys[:MAX_KEYS]]
    if len(keys) > MAX_KEYS:
        shown.append(f"+{len(keys) - MAX_KEYS} more")
    return ", ".join(shown)


def group_runs(rows: Sequence[RunRow], by: str | None = None) -> list[Group]:
    """Groups of runs with equal config digests (or equal ``by`` values), ordered by label.

    Raises:
        ValueError: ``by`` is a key that no run has.

    """
    if by is not None and not any(by in row.params for row in rows):
        known = sorted({k for row in rows for k in row.params})
        raise ValueError(f"--by {by!r}: no run has this param; params are e.g. {', '.join(known[:12])}")
    groups: dict[str, Group] = {}
    for row in rows:
        key = short_digest(row.params) if by is None else str(row.params.get(by, "∅"))
        groups.setdefault(key, Group(key)).runs.append(row)
    ordered = list(groups.values())
    if by is None:
        _label(ordered)
    else:
        for group in ordered:
            group.label = group.key
            group.within = differing_keys([run.params for run in group.runs])
    return sorted(ordered, key=lambda g: g.label)


def _label(groups: Sequence[Group]) -> None:
    """``<strategy> (<key>=<value>, ...)``: the keys in which a setting differs from the others.

    Strategy parameters are compared among the settings of the same strategy (another strategy has
    other parameters); every other key among all settings.
    """
    configs = [g.runs[0].params for g in groups]
    shared = [k for k in differing_keys(configs) if not k.startswith("strategy.")]
    for group in groups:
        params = group.runs[0].params
        name = params.get("strategy.name", "?")
        same = [c for c in configs if c.get("strategy.name", "?") == name]
        own = [k for k in differing_keys(same) if k.startswith("strategy.params.")]
        detail = _describe([k for k in own + shared if k in params], params)
        group.label = f"{name} ({detail})" if detail else name


def mean_std(values: Sequence[float], empty: str = "-") -> str:
    """``mean ± std`` (sample std; 0 for one value) of the finite values, ``empty`` when there is none."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return empty
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.fmean(finite):.4f} ± {std:.4f}"


def compare_table(rows: Sequence[RunRow], by: str | None = None, metrics: Sequence[str] | None = None) -> str:
    """A markdown table: one row per setting (or ``by`` value) with the mean ± std of every metric."""
    groups = group_runs(rows, by)
    names = list(metrics) if metrics is not None else sorted({m for row in rows for m in row.metrics})
    first = "setting" if by is None else by
    header = f"| {first} | config | runs | seeds | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 4)]
    notes = []
    for group in groups:
        configs = sorted({short_digest(run.params) for run in group.runs})
        config = configs[0] if len(configs) == 1 else f"{len(configs)} configs"
        cells = [mean_std(group.values(m)) for m in names]
        lines.append(f"| {group.label} | {config} | {len(group.runs)} | {group.seeds} | " + " | ".join(cells) + " |")
        if group.within:
            keys = ", ".join(k.removeprefix("strategy.params.") for k in group.within)
            notes.append(f"- {by}={group.label} pools runs that differ in: {keys}")
    return "\n".join(lines + ([""] + notes if notes else []))


def rows_from_records(records: Sequence[Mapping[str, Any]]) -> list[RunRow]:
    """``RunRow``s from dicts with ``run_name``, ``params``, ``metrics`` (and ``run_id``)."""
    return [RunRow(r["run_name"], r["params"], r["metrics"], r.get("run_id")) for r in records]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["a=1,2", "b=x,y"]`` -> ``{"a": ["1", "2"], "b": ["x", "y"]}`` (the ``--grid`` of ``lifelong sweep``).

    Raises:
        ValueError: an item is not ``key=v1,v2,...``, has an empty value, or repeats a key.

    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        values = [v.strip() for v in text.split(",")]
        if not sep or not key.strip() or not all(values):
            raise ValueError(f"--grid {item!r}: use key=value1,value2 (e.g. strategy.name=er,hpcr)")
        if key.strip() in grid:
            raise ValueError(f"--grid names {key.strip()!r} twice; give all its values in one item")
        grid[key.strip()] = values
    return grid


def _axis(key: str, wanted: Sequence[str], rows: Sequence[RunRow]) -> list[str]:
    """The values of ``key`` among ``rows``: in the grid's order, then those the grid spells otherwise."""
    found = list(dict.fromkeys(str(row.params.get(key, "∅")) for row in rows))
    return [v for v in wanted if v in found] + [v for v in found if v not in wanted]


def grid_table(rows: Sequence[RunRow], grid: Mapping[str, Sequence[str]], metric: str = "avg_acc") -> str:
    """A markdown table of a sweep: ``metric``'s mean ± std over the seeds of each grid cell.

    The columns are the last grid key's values, the rows every combination of the other keys' values
    (one key: one column). A cell shows ``-`` when no finished run has its values.
    """
    keys = list(grid)
    axes = {key: _axis(key, list(grid[key]), rows) for key in keys}
    row_keys, col_key = (keys[:-1], keys[-1]) if len(keys) > 1 else (keys, None)
    columns = axes[col_key] if col_key else [metric]
    corner = " / ".join(row_keys) + (f" \\ {col_key}" if col_key else "")
    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for combo in itertools.product(*(axes[key] for key in row_keys)):
        cells = []
        for column in columns:
            wanted = dict(zip(row_keys, combo, strict=True)) | ({col_key: column} if col_key else {})
            runs = [r for r in rows if all(str(r.params.get(k, "∅")) == v for k, v in wanted.items())]
            values = [float(r.metrics[metric]) for r in runs if metric in r.metrics]
            cells.append(f"{mean_std(values)} (n={len(values)})" if values else "-")
        lines.append(f"| {', '.join(combo)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
