"""Compatibility metrics: pure functions of a lower-triangular compatibility matrix.

Notation (0-based, as in the code): ``M[i, j]`` for ``i >= j`` is a retrieval score (CMC top-1, mAP,
identification or verification accuracy; higher is better) with the **queries embedded by the model
after experience i** and the **gallery embedded by the model after experience j** (Shen et al., BCT,
CVPR 2020; Biondi et al., CL2R/CoReS). The diagonal ``M[j, j]`` is the self-test of model ``j``. The
upper triangle is never read (NaN is fine there); every lower-triangle cell must be finite.

- **ECC** (empirical compatibility criterion) of the pair (new ``i``, old ``j``), ``i > j``:
  ``M[i, j] > M[j, j]``: searching the old gallery with the new model beats the old model itself.
- **AC** (average compatibility): ``AC = 2 / (T (T - 1)) * sum_{i > j} 1[M[i, j] > M[j, j]]``, the
  fraction of pairs that satisfy ECC. Two tie rules (``ties``): ``"fail"`` (the default, iamcl2r's
  ``<=`` failure test) counts a tie ``M[i, j] = M[j, j]`` as a **failure**; ``"pass"`` (the CL2R and
  CoReS code, which count a failure only on ``<``) counts it as compatible, so its AC is never lower.
- **AM** (average multi-model accuracy): ``AM = 2 / (T (T + 1)) * sum_{i >= j} M[i, j]``, the mean of the
  lower triangle with the diagonal. (iamcl2r drops exact zeros and rescales to percent; CoReS takes
  the mean of the positive entries; here every cell counts and the unit is ``M``'s.)
- **BC** (backward compatibility, CL2R code): ``BC = 1 / (T - 1) * sum_{j < T-1} (M[T-1, j] - M[j, j])``,
  how the last model does on every old gallery relative to that gallery's own model.
- **FC** (forward compatibility, CL2R code): ``FC = 1 / (T - 1) * sum_{i >= 1} (M[i, i-1] - M[i, i])``,
  cross-test with the previous gallery relative to the new model's self-test.

AC, BC and FC need at least two models (``ValueError`` otherwise). Inputs may be a ``torch.Tensor``,
a numpy array or nested lists; scalars come back as Python floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _lower(matrix: Any, min_size: int = 1, metric: str = "the metric") -> np.ndarray:
    """``matrix`` as a T x T float64 array whose lower triangle (with the diagonal) is finite."""
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"M must be numeric with rows of equal length; got {matrix!r} ({err})") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(
            f"M must be a square T x T matrix (rows: query model, columns: gallery model); got shape {array.shape}"
        )
    size = array.shape[0]
    if size < min_size:
        raise ValueError(f"{metric} needs at least {min_size} models (a {min_size} x {min_size} matrix); got T={size}")
    rows, cols = np.tril_indices(size)
    bad = ~np.isfinite(array[rows, cols])
    if bad.any():
        i, j = int(rows[bad][0]), int(cols[bad][0])
        raise ValueError(f"M[{i}, {j}] = {array[i, j]!r}: every cell with i >= j must be a finite score")
    return array


def empirical_compatibility(new_on_old: float, old_on_old: float) -> bool:
    """ECC of one pair: ``new_on_old > old_on_old`` (strict; a tie is not compatible).

    Example:
        >>> empirical_compatibility(0.71, 0.70), empirical_compatibility(0.70, 0.70)
        (True, False)

    """
    return bool(float(new_on_old) > float(old_on_old))


TIE_RULES = ("fail", "pass")


def _check_ties(ties: str) -> None:
    if ties not in TIE_RULES:
        raise ValueError(f"ties={ties!r} is not allowed; choose 'fail' (iamcl2r, the default) or 'pass' (CL2R, CoReS)")


def compatibility_pairs(matrix: Any, ties: str = "fail") -> np.ndarray:
    """The ``T x T`` bool matrix ``C[i, j] = 1[M[i, j] > M[j, j]]`` for ``i > j`` (False on and above the diagonal).

    With ``ties="pass"`` the test is ``M[i, j] >= M[j, j]`` (only ``<`` fails, as in the CL2R code).

    Example:
        >>> compatibility_pairs([[0.5, 0.0], [0.6, 0.7]]).tolist()
        [[False, False], [True, False]]
        >>> compatibility_pairs([[0.5, 0.0], [0.5, 0.7]], ties="pass").tolist()
        [[False, False], [True, False]]

    """
    _check_ties(ties)
    array = _lower(matrix, 1, "ECC")
    diagonal = np.diag(array)
    strictly_lower = np.tril(np.ones_like(array, dtype=bool), k=-1)
    below = np.where(strictly_lower, array, -np.inf)
    compatible = below > diagonal[None, :] if ties == "fail" else below >= diagonal[None, :]
    return strictly_lower & compatible


def average_compatibility(matrix: Any, ties: str = "fail") -> float:
    """AC: the fraction of pairs ``i > j`` with ``M[i, j] > M[j, j]`` (``ties="fail"``) or ``>=`` (``"pass"``).

    Example:
        >>> M = [[0.50, 0.0, 0.0], [0.55, 0.60, 0.0], [0.50, 0.65, 0.70]]
        >>> average_compatibility(M)  # (1,0) ok, (2,0) tie fails, (2,1) ok
        0.6666666666666666
        >>> average_compatibility(M, ties="pass")  # the tie passes
        1.0

    """
    array = _lower(matrix, 2, "AC")
    size = array.shape[0]
    return float(compatibility_pairs(array, ties).sum() / (size * (size - 1) / 2))


def average_multimodel_accuracy(matrix: Any) -> float:
    """AM: the mean of ``M[i, j]`` over ``i >= j`` (self-tests and cross-tests alike).

    Example:
        >>> round(average_multimodel_accuracy([[0.5, float("nan")], [0.6, 0.7]]), 4)
        0.6

    """
    array = _lower(matrix, 1, "AM")
    rows, cols = np.tril_indices(array.shape[0])
    return float(array[rows, cols].mean())


def backward_compatibility(matrix: Any) -> float:
    """BC: mean over ``j < T - 1`` of ``M[T-1, j] - M[j, j]`` (last model on each old gallery vs its own model).

    Example:
        >>> round(backward_compatibility([[0.5, 0.0, 0.0], [0.55, 0.60, 0.0], [0.50, 0.65, 0.70]]), 4)
        0.025

    """
    array = _lower(matrix, 2, "BC")
    last = array.shape[0] - 1
    return float(np.mean([array[last, j] - array[j, j] for j in range(last)]))


def forward_compatibility(matrix: Any) -> float:
    """FC: mean over ``i >= 1`` of ``M[i, i-1] - M[i, i]`` (previous gallery vs the new model's self-test).

    Example:
        >>> round(forward_compatibility([[0.5, 0.0, 0.0], [0.55, 0.60, 0.0], [0.50, 0.65, 0.70]]), 4)
        -0.05

    """
    array = _lower(matrix, 2, "FC")
    return float(np.mean([array[i, i - 1] - array[i, i] for i in range(1, array.shape[0])]))


def compatibility_metrics(matrix: Any, ties: str = "fail") -> dict[str, float]:
    """``{"am", "self_test"}`` for any ``T``, plus ``{"ac", "bc", "fc"}`` once ``T >= 2`` (AC under ``ties``).

    ``self_test`` is the last model's own score ``M[T-1, T-1]``.

    Example:
        >>> sorted(compatibility_metrics([[0.5]]))
        ['am', 'self_test']

    """
    array = _lower(matrix, 1, "compatibility_metrics")
    out = {"am": average_multimodel_accuracy(array), "self_test": float(array[-1, -1])}
    if array.shape[0] >= 2:
        out.update(
            ac=average_compatibility(array, ties), bc=backward_compatibility(array), fc=forward_compatibility(array)
        )
    return out
