"""The score matrices of one run: one :class:`AccuracyMatrix`-shaped matrix per score an evaluator reports.

A classification run has one score, ``acc``; an audio-video run has one per retrieval score (``a2v_R1``,
``v2a_R5`` ...). Every matrix is filled at the same evaluation points and its stream metrics come from the
same pure functions (:func:`lifelong.metrics.functional.stream_metrics`). The first score is the primary
one (printed, and the ``matrix`` of a run's result).

Metric names: for ``acc`` they are the plain names (``avg_acc``, ``forgetting``, ...); for any other score
they are ``<score>/<name>`` with ``_acc`` dropped (``a2v_R1/avg``, ``a2v_R1/forgetting``, ...).

>>> m = ScoreMatrices(["a2v_R1", "v2a_R1"], 2)
>>> m.set_row(0, {"a2v_R1": [0.5, 0.1], "v2a_R1": [0.4, 0.0]})
>>> m.metrics_so_far()["a2v_R1/avg"], m.primary.row(0)
(0.5, [0.5, 0.1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lifelong.metrics.accuracy_matrix import AccuracyMatrix

ACCURACY = "acc"


def matrix_file(score: str) -> str:
    """The file stem of a score's matrix in a run folder: ``accuracy_matrix`` for ``acc``, else ``<score>_matrix``."""
    return "accuracy_matrix" if score == ACCURACY else f"{score}_matrix"


def metric_name(score: str, metric: str) -> str:
    """The name of stream metric ``metric`` (``avg_acc`` ...) of score ``score``."""
    return metric if score == ACCURACY else f"{score}/{metric.replace('_acc', '')}"


class ScoreMatrices:
    """One matrix per score name, filled together.

    Args:
        names: the score names, primary first.
        n_experiences: number of experiences ``T``.

    """

    def __init__(self, names: Sequence[str], n_experiences: int) -> None:
        if not names:
            raise ValueError("a run needs at least one score")
        self.matrices = {name: AccuracyMatrix(n_experiences) for name in names}

    @property
    def names(self) -> list[str]:
        """The score names, primary first."""
        return list(self.matrices)

    @property
    def primary(self) -> AccuracyMatrix:
        """The matrix of the first score."""
        return next(iter(self.matrices.values()))

    @property
    def rows_filled(self) -> int:
        """How many rows are filled (the same for every score)."""
        return self.primary.rows_filled

    def set_initial(self, scores: Mapping[str, Sequence[float]]) -> None:
        """Set the row before training of every score."""
        for name, matrix in self.matrices.items():
            matrix.set_initial(scores[name])

    def set_row(self, i: int, scores: Mapping[str, Sequence[float]]) -> None:
        """Set row ``i`` (after training experience ``i``) of every score."""
        for name, matrix in self.matrices.items():
            matrix.set_row(i, scores[name])

    def metrics_so_far(self) -> dict[str, float]:
        """Stream metrics of every score (see the module docstring for the names)."""
        return {
            metric_name(name, key): value
            for name, matrix in self.matrices.items()
            for key, value in matrix.metrics_so_far().items()
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain data (safe for ``torch.load(weights_only=True)``)."""
        return {"scores": {name: matrix.state_dict() for name, matrix in self.matrices.items()}}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ScoreMatrices:
        """Rebuild from :meth:`state_dict` (or from one accuracy matrix's state, as checkpoints before scores held)."""
        scores = state.get("scores", {ACCURACY: state})
        first = next(iter(scores.values()))
        out = cls(list(scores), first["n_experiences"])
        for name, matrix_state in scores.items():
            out.matrices[name].load_state_dict(matrix_state)
        return out

    def allclose(self, other: ScoreMatrices, atol: float = 1e-9) -> bool:
        """The same scores, each matrix equal within ``atol``."""
        return self.names == other.names and all(self.matrices[n].allclose(other.matrices[n], atol) for n in self.names)

    def __repr__(self) -> str:
        return f"ScoreMatrices({self.names}, rows_filled={self.rows_filled})"
