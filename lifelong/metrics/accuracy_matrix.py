"""The accuracy matrix of one run, filled row by row as training proceeds.

Row ``i`` holds the accuracy on every test experience after training experience ``i``; the
optional ``initial`` row ("init", row -1) holds the accuracies before any training and feeds forward
transfer. Rows are filled in order (a row may be set again, e.g. after a resume), so the filled
rows are always a prefix ``0..k-1``. Accuracies are fractions in [0, 1]; NaN means "not evaluated".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lifelong.metrics.functional import stream_metrics

__all__ = ["AccuracyMatrix"]

_INIT_LABEL = "init"
_FIRST_COLUMN = "after_exp"
_STATE_VERSION = 1


def _scores(values: Iterable[Any], size: int, name: str) -> list[float]:
    """``values`` as ``size`` floats in [0, 1] or NaN; raises ``ValueError`` naming ``name``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    try:
        scores = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of numbers; got {values!r} ({err})") from None
    if len(scores) != size:
        raise ValueError(f"{name} needs one score per test experience ({size}); got {len(scores)}")
    for j, score in enumerate(scores):
        if not math.isnan(score) and not 0.0 <= score <= 1.0 + 1e-6:
            raise ValueError(f"{name}[{j}] = {score!r} is not an accuracy in [0, 1] (NaN marks 'not evaluated')")
    return scores


def _same(a: list[float] | None, b: list[float] | None, atol: float) -> bool:
    """Element-wise equality within ``atol``, NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or (not math.isnan(x) and not math.isnan(y) and abs(x - y) <= atol)
        for x, y in zip(a, b, strict=True)
    )


def _cell(text: str) -> float:
    return math.nan if text.strip() in ("", "nan", "NaN") else float(text)


class AccuracyMatrix:
    """Accuracies ``R[i, j]`` on test experience ``j`` after training experience ``i``, plus the initial row.

    Example:
        >>> m = AccuracyMatrix(2)
        >>> m.set_initial([0.1, 0.1])
        >>> m.set_row(0, [0.9, 0.2])
        >>> m.rows_filled
        1
        >>> {k: round(v, 4) for k, v in m.metrics_so_far().items()}
        {'avg_acc': 0.9, 'avg_inc_acc': 0.9, 'forgetting': 0.0, 'bwt': 0.0, 'fwt': 0.0}
        >>> m.set_row(1, [0.6, 0.8])
        >>> round(m.metrics_so_far()["bwt"], 4), round(m.metrics_so_far()["fwt"], 4)  # 0.6 - 0.9; 0.2 - 0.1
        (-0.3, 0.1)

    """

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(self, n_experiences: int) -> None:
        """Create an empty matrix.

        Args:
            n_experiences: Number of experiences ``T`` (rows and columns), at least 1.

        """
        if isinstance(n_experiences, bool) or not isinstance(n_experiences, int) or n_experiences < 1:
            raise ValueError(f"n_experiences must be an integer >= 1; got {n_experiences!r}")
        self._size = n_experiences
        self._initial: list[float] | None = None
        self._rows: list[list[float]] = []

    # ------------------------------------------------------------------ filling

    @property
    def n_experiences(self) -> int:
        """Number of experiences ``T``."""
        return self._size

    @property
    def initial(self) -> list[float] | None:
        """The accuracies before training (row "init"), or ``None`` if not set."""
        return None if self._initial is None else list(self._initial)

    @property
    def rows_filled(self) -> int:
        """How many rows are filled: rows ``0..rows_filled-1``."""
        return len(self._rows)

    @property
    def is_complete(self) -> bool:
        """Whether every row is filled."""
        return len(self._rows) == self._size

    def set_initial(self, scores: Iterable[float]) -> None:
        """Set the accuracies before any training (row "init").

        Args:
            scores: One accuracy per test experience.

        """
        self._initial = _scores(scores, self._size, "initial scores")

    def set_row(self, i: int, scores: Iterable[float]) -> None:
        """Set the accuracies after training experience ``i``.

        Rows are filled in order: ``i`` may be any filled row (to overwrite it) or the next one.

        Args:
            i: The experience just trained, ``0 <= i <= rows_filled``.
            scores: One accuracy per test experience.

        """
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self._size:
            raise ValueError(
                f"row index i={i!r} must be an integer in [0, {self._size - 1}] "
                f"(use set_initial for the row before training)"
            )
        if i > len(self._rows):
            raise ValueError(f"rows are filled in order: the next row is {len(self._rows)}, got i={i}")
        row = _scores(scores, self._size, f"scores of row {i}")
        if i == len(self._rows):
            self._rows.append(row)
        else:
            self._rows[i] = row

    def row(self, i: int) -> list[float]:
        """Return the accuracies after training experience ``i`` (a filled row)."""
        if not 0 <= i < len(self._rows):
            raise ValueError(f"row {i} is not filled; rows 0..{len(self._rows) - 1} are")
        return list(self._rows[i])

    # ------------------------------------------------------------------ views and metrics

    def as_tensor(self) -> torch.Tensor:
        """Return the T x T matrix as float64, NaN in the rows not filled yet (without the initial row)."""
        tensor = torch.full((self._size, self._size), math.nan, dtype=torch.float64)  # (T, T)
        if self._rows:
            tensor[: len(self._rows)] = torch.tensor(self._rows, dtype=torch.float64)
        return tensor

    def metrics_so_far(self) -> dict[str, float]:
        """Stream metrics on the filled leading block.

        After training experience ``i`` (``rows_filled = i + 1``) the block is ``R[:i+1, :i+1]``, so
        ``avg_acc`` is the accuracy on the experiences seen so far; ``fwt`` is included when the
        initial row is set. See :func:`lifelong.metrics.functional.stream_metrics`.

        Returns:
            Metric name -> value; empty before the first row is filled.

        """
        k = len(self._rows)
        if k == 0:
            return {}
        block = [row[:k] for row in self._rows]
        initial = None if self._initial is None else self._initial[:k]
        return stream_metrics(block, initial=initial)

    # ------------------------------------------------------------------ persistence

    def to_csv(self, path: str | Path) -> Path:
        """Write the filled rows as CSV: header ``after_exp,exp0,...``; row ``init`` first if set.

        Values are written at full precision (``repr``), NaN as an empty cell, so
        :meth:`from_csv` restores the matrix exactly.

        Args:
            path: Destination file; parent folders are created.

        Returns:
            The path written.

        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        labelled = ([(_INIT_LABEL, self._initial)] if self._initial is not None else []) + [
            (str(i), row) for i, row in enumerate(self._rows)
        ]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([_FIRST_COLUMN] + [f"exp{j}" for j in range(self._size)])
            for label, row in labelled:
                writer.writerow([label] + ["" if math.isnan(v) else repr(v) for v in row])
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> AccuracyMatrix:
        """Read a matrix written by :meth:`to_csv`.

        Args:
            path: A CSV file with header ``after_exp,exp0,...,exp{T-1}``.

        Returns:
            The matrix, with the same initial row and filled rows.

        """
        path = Path(path)
        with path.open(newline="") as handle:
            lines = list(csv.reader(handle))
        if not lines:
            raise ValueError(f"{path} is empty; expected a header {_FIRST_COLUMN},exp0,...")
        header = lines[0]
        expected = [_FIRST_COLUMN] + [f"exp{j}" for j in range(len(header) - 1)]
        if len(header) < 2 or header != expected:
            raise ValueError(f"{path}: header {','.join(header)!r} is not {_FIRST_COLUMN},exp0,...,exp<T-1>")
        matrix = cls(len(header) - 1)
        for number, line in enumerate(lines[1:], start=2):
            matrix._read_line(line, f"{path}, line {number}")
        return matrix

    def _read_line(self, line: list[str], where: str) -> None:
        """Apply one CSV data line (``init`` or a row index) to this matrix."""
        if len(line) != self._size + 1:
            raise ValueError(f"{where}: {len(line)} cells, expected {self._size + 1}")
        label, cells = line[0].strip(), line[1:]
        try:
            scores = [_cell(c) for c in cells]
        except ValueError:
            raise ValueError(f"{where}: cells must be numbers or empty; got {cells}") from None
        try:
            if label == _INIT_LABEL:
                self.set_initial(scores)
            elif label.isdigit() and int(label) == len(self._rows):
                self.set_row(int(label), scores)
            else:
                raise ValueError(f"row label {label!r} must be {_INIT_LABEL!r} or the next row index {len(self._rows)}")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    def state_dict(self) -> dict[str, Any]:
        """Return the state as plain Python (ints, floats, lists, ``None``).

        It is safe for ``torch.save`` and ``torch.load(weights_only=True)``.
        """
        return {
            "version": _STATE_VERSION,
            "n_experiences": self._size,
            "initial": self.initial,
            "rows": [list(row) for row in self._rows],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state from :meth:`state_dict`; the number of experiences must match.

        Args:
            state: A mapping produced by :meth:`state_dict`.

        """
        missing = {"n_experiences", "initial", "rows"} - set(state)
        if missing:
            raise ValueError(f"accuracy matrix state lacks {sorted(missing)}; got keys {sorted(state)}")
        if state["n_experiences"] != self._size:
            raise ValueError(
                f"accuracy matrix state has n_experiences={state['n_experiences']}, this matrix has {self._size}"
            )
        restored = AccuracyMatrix(self._size)
        if state["initial"] is not None:
            restored.set_initial(state["initial"])
        for i, row in enumerate(state["rows"]):
            restored.set_row(i, row)
        self._initial, self._rows = restored._initial, restored._rows

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> AccuracyMatrix:
        """Build a new matrix from :meth:`state_dict`."""
        if "n_experiences" not in state:
            raise ValueError(f"accuracy matrix state lacks 'n_experiences'; got keys {sorted(state)}")
        matrix = cls(state["n_experiences"])
        matrix.load_state_dict(state)
        return matrix

    # ------------------------------------------------------------------ comparison

    def allclose(self, other: AccuracyMatrix, atol: float = 1e-9) -> bool:
        """Check for the same size, filled rows and initial row within ``atol`` (NaN equals NaN).

        Args:
            other: The matrix to compare with.
            atol: Absolute tolerance per cell.

        Returns:
            Whether the two matrices hold the same scores.

        """
        return (
            isinstance(other, AccuracyMatrix)
            and self._size == other._size
            and len(self._rows) == len(other._rows)
            and _same(self._initial, other._initial, atol)
            and all(_same(a, b, atol) for a, b in zip(self._rows, other._rows, strict=True))
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccuracyMatrix):
            return NotImplemented
        return self.allclose(other, atol=0.0)

    def __repr__(self) -> str:
        init = "set" if self._initial is not None else "unset"
        return f"AccuracyMatrix(n_experiences={self._size}, rows_filled={len(self._rows)}, initial {init})"
