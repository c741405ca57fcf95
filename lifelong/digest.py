"""Config digests: which runs are the same experiment (DESIGN §6).

Runs that differ only in their seed, where they write (``output_dir``, ``tracking.*``) or how they
show progress are repetitions of one setting; anything else that differs makes another setting.
:func:`config_digest` hashes a flattened resolved config (``{"strategy.name": "er", ...}``, as the
MLflow params of a run hold it) without those keys, so ``lifelong compare``, the HTML report and the
run names agree on what a group is. Pure functions on plain mappings: classification and pretraining
runs use them alike, and runs logged before the digest existed are grouped from their params.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

__all__ = ["IGNORED", "config_digest", "differing_keys", "grouping_config", "short_digest"]

# Keys (exact, or prefixes ending in ".") that do not change what a run computes.
IGNORED: tuple[str, ...] = (
    "seed",
    "name",
    "output_dir",
    "tracking.",
    "checkpoint.",
    "stream.root",
    "stream.download",
    "trainer.progress_bar",
    "train.num_workers",
    "train.eval_batch_size",
)
SHORT = 8  # hex digits in run names and tables


def _ignored(key: str, ignored: Sequence[str]) -> bool:
    return any(key == item or (item.endswith(".") and key.startswith(item)) for item in ignored)


def grouping_config(flat: Mapping[str, object], ignored: Sequence[str] = IGNORED) -> dict[str, str]:
    """The keys of a flat config that define its setting (``ignored`` left out), values as text.

    Example:
        >>> grouping_config({"seed": 3, "strategy.name": "er", "tracking.uri": "sqlite:///x.db"})
        {'strategy.name': 'er'}

    """
    return {str(k): str(v) for k, v in sorted(flat.items()) if not _ignored(str(k), ignored)}


def config_digest(flat: Mapping[str, object], ignored: Sequence[str] = IGNORED) -> str:
    """SHA-256 (hex) of the flat config without the ``ignored`` keys: equal for the seeds of one setting.

    Example:
        >>> a = config_digest({"seed": 0, "strategy.params.memory_size": "200"})
        >>> a == config_digest({"seed": 1, "strategy.params.memory_size": 200})
        True
        >>> a == config_digest({"seed": 0, "strategy.params.memory_size": "10"})
        False

    """
    text = json.dumps(grouping_config(flat, ignored), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def short_digest(flat: Mapping[str, object], ignored: Sequence[str] = IGNORED) -> str:
    """The first ``SHORT`` hex digits of :func:`config_digest` (for run names and table rows)."""
    return config_digest(flat, ignored)[:SHORT]


def differing_keys(configs: Sequence[Mapping[str, object]], ignored: Sequence[str] = IGNORED) -> list[str]:
    """The keys (outside ``ignored``) whose values are not the same in every config; a missing key differs.

    Example:
        >>> differing_keys([{"seed": 0, "a": 1, "b": 2}, {"seed": 1, "a": 1, "b": 3}, {"a": 1}])
        ['b']

    """
    flats = [grouping_config(c, ignored) for c in configs]
    keys = sorted({k for flat in flats for k in flat})
    return [k for k in keys if len({flat.get(k) for flat in flats}) > 1]
