"""Continual-learning metrics as pure functions of an accuracy matrix.

Notation (0-based, as in the code):

- ``R[i, j]``: accuracy on test experience ``j`` after training experience ``i``; ``i, j = 0..T-1``.
  The papers index 1..T and keep row 0 for the untrained model; here that row is the separate
  ``initial`` vector ``b_j`` (row "-1": accuracy on experience ``j`` before any training).
- Accuracies are fractions in ``[0, 1]``, not percentages; anything outside raises ``ValueError``.
- A NaN cell means "not evaluated". It is allowed anywhere a metric does not read it (for example
  the upper triangle, experiences not yet trained on); a metric that needs it raises ``ValueError``
  naming the cell.

Task-averaged vs sample-weighted: by default every experience weighs the same (GEM's ACC, the
task form of average incremental accuracy). Pass ``test_sizes`` (test samples per experience) to
the accuracy functions for the sample-weighted form (iCaRL's A_t, Avalanche's stream accuracy);
the two differ whenever experiences have different test-set sizes. The transfer and forgetting
metrics are always task-averaged.

Inputs may be a ``torch.Tensor`` (any device), a ``numpy`` array or nested lists; every scalar
metric returns a Python ``float``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

Matrix: TypeAlias = "torch.Tensor | np.ndarray | Sequence[Sequence[float]]"
Vector: TypeAlias = "torch.Tensor | np.ndarray | Sequence[float]"
ForgettingMode = Literal["max", "first"]
FORGETTING_MODES: tuple[str, ...] = ("max", "first")

_TOLERANCE = 1e-6  # accuracies reduced across devices may overshoot 1.0 by rounding


# --------------------------------------------------------------------------- validation


def _to_numpy(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; torch tensors are detached and moved to the CPU."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric with rows of equal length; got {values!r} ({err})") from None
    return array


def _check_range(array: np.ndarray, name: str) -> None:
    """Every non-NaN entry must be a fraction in [0, 1]."""
    for index in zip(*np.nonzero(~np.isnan(array)), strict=True):
        value = float(array[index])
        if not (-_TOLERANCE <= value <= 1 + _TOLERANCE):
            cell = ", ".join(str(int(k)) for k in index)
            hint = " (divide percentages by 100)" if 1 < value <= 100 else ""
            raise ValueError(f"{name}[{cell}] = {value!r} is not an accuracy in [0, 1]{hint}")


def _square(matrix: Matrix) -> np.ndarray:
    """``matrix`` as a validated T x T float64 array (T >= 1)."""
    array = _to_numpy(matrix, "R")
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(
            f"R must be a square T x T matrix (rows: after experience i, columns: experience j); "
            f"got shape {tuple(array.shape)}"
        )
    if array.shape[0] == 0:
        raise ValueError("R is empty; it needs at least one experience (shape 1 x 1)")
    _check_range(array, "R")
    return array


def _vector(values: Vector, size: int, name: str) -> np.ndarray:
    """``values`` as a validated float64 vector of length ``size`` with no NaN."""
    array = _to_numpy(values, name)
    if array.ndim != 1 or array.shape[0] != size:
        raise ValueError(f"{name} must be a vector with one entry per experience ({size}); got shape {array.shape}")
    _check_range(array, name)
    missing = np.flatnonzero(np.isnan(array))
    if missing.size:
        raise ValueError(f"{name}[{int(missing[0])}] is NaN; every experience needs a value")
    return array


def _weights(test_sizes: Vector | None, size: int) -> np.ndarray:
    """Per-experience weights: ones (task-averaged) or the positive test sizes (sample-weighted)."""
    if test_sizes is None:
        return np.ones(size)
    sizes = _to_numpy(test_sizes, "test_sizes")
    if sizes.ndim != 1 or sizes.shape[0] != size:
        raise ValueError(f"test_sizes must have one entry per experience ({size}); got shape {sizes.shape}")
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"test_sizes must be positive sample counts; got {sizes.tolist()}")
    return sizes


def _need(array: np.ndarray, cells: Iterable[tuple[int, int]], metric: str) -> None:
    """Raise if any of ``cells`` of ``array`` is NaN (not evaluated)."""
    for i, j in cells:
        if math.isnan(array[i, j]):
            raise ValueError(
                f"{metric} needs R[{i}, {j}] (experience {j} evaluated after training experience {i}), but it is NaN"
            )


def _lower_triangle(size: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(size) for j in range(i + 1)]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# --------------------------------------------------------------------------- accuracy


def average_accuracy(matrix: Matrix, test_sizes: Vector | None = None) -> float:
    r"""Average accuracy after the last experience (ACC of GEM).

    ``ACC = (1/T) * sum_j R[T-1, j]`` (task-averaged). With ``test_sizes`` n_j it is the
    sample-weighted ``sum_j n_j R[T-1, j] / sum_j n_j``.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        test_sizes: Test samples per experience, for the sample-weighted form; ``None`` averages tasks.

    Returns:
        The average accuracy, a fraction.

    Example:
        >>> average_accuracy([[0.9, 0.1], [0.6, 0.8]])  # (0.6 + 0.8) / 2
        0.7
        >>> round(average_accuracy([[0.9, 0.1], [0.6, 0.8]], test_sizes=[100, 300]), 4)  # (60 + 240) / 400
        0.75

    """
    array = _square(matrix)
    last = array.shape[0] - 1
    _need(array, [(last, j) for j in range(last + 1)], "average_accuracy")
    weights = _weights(test_sizes, last + 1)
    return float(np.dot(weights, array[last]) / weights.sum())


def incremental_accuracies(matrix: Matrix, test_sizes: Vector | None = None) -> list[float]:
    r"""Accuracy on the experiences seen so far, after each experience: ``[A_0, ..., A_{T-1}]``.

    Task-averaged: ``A_t = (1/(t+1)) * sum_{j<=t} R[t, j]``. With ``test_sizes`` n_j:
    ``A_t = sum_{j<=t} n_j R[t, j] / sum_{j<=t} n_j`` (iCaRL's accuracy on all classes seen so far,
    when experiences are disjoint sets of classes).

    Reference: Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        test_sizes: Test samples per experience, for the sample-weighted form; ``None`` averages tasks.

    Returns:
        ``T`` fractions, one per training experience.

    Example:
        >>> incremental_accuracies([[0.9, 0.0], [0.6, 0.8]])  # [0.9, (0.6 + 0.8) / 2]
        [0.9, 0.7]

    """
    array = _square(matrix)
    size = array.shape[0]
    _need(array, _lower_triangle(size), "incremental_accuracies")
    weights = _weights(test_sizes, size)
    return [float(np.dot(weights[: t + 1], array[t, : t + 1]) / weights[: t + 1].sum()) for t in range(size)]


def average_incremental_accuracy(matrix: Matrix, test_sizes: Vector | None = None) -> float:
    r"""Average incremental accuracy: ``(1/T) * sum_t A_t`` over the curve of :func:`incremental_accuracies`.

    Task-averaged (default): ``(1/T) * sum_t (1/(t+1)) * sum_{j<=t} R[t, j]``. iCaRL's original
    ``A_t`` is the accuracy over all test samples seen so far, i.e. sample-weighted; it differs from
    the task-averaged form when experiences have different test sizes; pass ``test_sizes`` for it.

    Reference: Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        test_sizes: Test samples per experience, for the sample-weighted form; ``None`` averages tasks.

    Returns:
        The average incremental accuracy, a fraction.

    Example:
        >>> average_incremental_accuracy([[0.9, 0.0], [0.6, 0.8]])  # (0.9 + (0.6 + 0.8) / 2) / 2
        0.8

    """
    return _mean(incremental_accuracies(matrix, test_sizes))


def performance_drop(matrix: Matrix, test_sizes: Vector | None = None) -> float:
    r"""Compute the performance drop of few-shot class-incremental learning: ``PD = A_0 - A_{T-1}``.

    ``A_t`` as in :func:`incremental_accuracies` (task-averaged unless ``test_sizes`` is given).
    ``T = 1`` gives 0.0.

    Reference: as reported in few-shot class-incremental papers, e.g. Wang et al., "Few-Shot
    Class-Incremental Learning via Training-Free Prototype Calibration" (TEEN), NeurIPS 2023.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        test_sizes: Test samples per experience, for the sample-weighted form; ``None`` averages tasks.

    Returns:
        The drop, a fraction (negative if accuracy on the seen experiences rose).

    Example:
        >>> round(performance_drop([[0.9, 0.0], [0.6, 0.8]]), 4)  # 0.9 - 0.7
        0.2

    """
    curve = incremental_accuracies(matrix, test_sizes)
    return curve[0] - curve[-1]


# --------------------------------------------------------------------------- forgetting


def _check_mode(mode: str) -> None:
    if mode not in FORGETTING_MODES:
        raise ValueError(f"forgetting mode={mode!r} is not allowed; choose one of: {', '.join(FORGETTING_MODES)}")


def forgetting_per_experience(matrix: Matrix, mode: ForgettingMode = "max") -> list[float]:
    r"""Forgetting of each experience but the last, after training on all ``T`` experiences.

    - ``mode="max"`` (Chaudhry et al.): ``f_j = max_{l in [j, T-2]} R[l, j] - R[T-1, j]``, the drop
      from the best accuracy the experience ever had after it was trained.
    - ``mode="first"`` (Avalanche's ``Forgetting``): ``f_j = R[j, j] - R[T-1, j]``, the drop from the
      accuracy right after training on it.

    Neither is clipped: both are negative when the final accuracy beats every earlier one.
    ``f_max >= f_first`` always.

    Reference: Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting
    and Intransigence", ECCV 2018.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        mode: ``"max"`` or ``"first"``.

    Returns:
        ``T - 1`` values, for experiences ``0..T-2`` (empty for ``T = 1``).

    Example:
        >>> R = [[0.8, 0.0, 0.0], [0.9, 0.7, 0.0], [0.6, 0.75, 0.9]]
        >>> [round(f, 4) for f in forgetting_per_experience(R)]  # [max(0.8, 0.9) - 0.6, 0.7 - 0.75]
        [0.3, -0.05]
        >>> [round(f, 4) for f in forgetting_per_experience(R, mode="first")]  # [0.8 - 0.6, 0.7 - 0.75]
        [0.2, -0.05]

    """
    _check_mode(mode)
    array = _square(matrix)
    last = array.shape[0] - 1
    if mode == "max":
        _need(array, [(i, j) for j in range(last) for i in range(j, last + 1)], "forgetting (max)")
        return [float(array[j:last, j].max() - array[last, j]) for j in range(last)]
    _need(array, [(j, j) for j in range(last)] + [(last, j) for j in range(last)], "forgetting (first)")
    return [float(array[j, j] - array[last, j]) for j in range(last)]


def forgetting(matrix: Matrix, mode: ForgettingMode = "max") -> float:
    r"""Average forgetting after the last experience, over the first ``T - 1`` experiences.

    ``F = (1/(T-1)) * sum_{j<T-1} f_j`` with ``f_j`` from :func:`forgetting_per_experience`
    (``mode="max"``: Chaudhry et al.; ``mode="first"``: Avalanche's first-minus-last, which equals
    ``-backward_transfer(R)``). By definition ``F = 0.0`` for ``T = 1`` (nothing to forget yet).

    Reference: Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting
    and Intransigence", ECCV 2018.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        mode: ``"max"`` or ``"first"``.

    Returns:
        The average forgetting, a fraction (positive means accuracy was lost).

    Example:
        >>> R = [[0.8, 0.0, 0.0], [0.9, 0.7, 0.0], [0.6, 0.75, 0.9]]
        >>> round(forgetting(R), 4)  # (0.3 + -0.05) / 2
        0.125
        >>> round(forgetting(R, mode="first"), 4)  # (0.2 + -0.05) / 2
        0.075
        >>> forgetting([[0.5]])
        0.0

    """
    return _mean(forgetting_per_experience(matrix, mode))


def forgetting_curve(matrix: Matrix, mode: ForgettingMode = "max") -> list[float]:
    r"""Average forgetting after each experience: ``[F_0, ..., F_{T-1}]``.

    ``F_k = forgetting(R[:k+1, :k+1], mode)``, the forgetting of experiences ``0..k-1`` after
    training experience ``k``; ``F_0 = 0.0``.

    Reference: Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting
    and Intransigence", ECCV 2018.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        mode: ``"max"`` or ``"first"``.

    Returns:
        ``T`` values.

    Example:
        >>> R = [[0.8, 0.0, 0.0], [0.9, 0.7, 0.0], [0.6, 0.75, 0.9]]
        >>> [round(f, 4) for f in forgetting_curve(R)]  # [0, 0.8 - 0.9, (0.3 - 0.05) / 2]
        [0.0, -0.1, 0.125]

    """
    array = _square(matrix)
    return [forgetting(array[: k + 1, : k + 1], mode) for k in range(array.shape[0])]


# --------------------------------------------------------------------------- transfer


def flava_forgetting(matrix: np.ndarray | Sequence[Sequence[float]]) -> float:
    """FLAVA's forgetting: ``sum_k max_{t < T-1} (R[t, k] - R[T-1, k]) / (T - 1)`` over ALL ``T`` tasks.

    As in the official ``vggsound_retrieval_result.py``: the max runs over every checkpoint before the
    last (also those before task k was trained), and the last task's term is included, so it can be
    negative. ``R[t, k]`` is the score on task k after training task t. One task gives 0.

    >>> flava_forgetting([[0.5, 0.1], [0.3, 0.6]])
    -0.3
    """
    r = np.asarray(matrix, dtype=float)
    t = r.shape[0]
    if r.ndim != 2 or r.shape[1] != t:
        raise ValueError(f"forgetting needs a square T x T matrix, got shape {r.shape}")
    if t < 2:
        return 0.0
    return float(round((r[:-1].max(0) - r[-1]).sum() / (t - 1), 12))


def backward_transfer_per_experience(matrix: Matrix) -> list[float]:
    r"""Backward transfer of each experience but the last: ``R[T-1, j] - R[j, j]`` for ``j < T-1``.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.

    Returns:
        ``T - 1`` values (empty for ``T = 1``).

    Example:
        >>> [round(b, 4) for b in backward_transfer_per_experience([[0.9, 0.0], [0.6, 0.8]])]  # [0.6 - 0.9]
        [-0.3]

    """
    array = _square(matrix)
    last = array.shape[0] - 1
    _need(array, [(j, j) for j in range(last)] + [(last, j) for j in range(last)], "backward_transfer")
    return [float(array[last, j] - array[j, j]) for j in range(last)]


def backward_transfer(matrix: Matrix) -> float:
    r"""Backward transfer (BWT): ``(1/(T-1)) * sum_{j<T-1} (R[T-1, j] - R[j, j])``.

    Negative values mean forgetting. By definition ``BWT = 0.0`` for ``T = 1``.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.

    Returns:
        The backward transfer, a fraction in [-1, 1].

    Example:
        >>> R = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]]
        >>> round(backward_transfer(R), 4)  # ((0.5 - 0.9) + (0.7 - 0.8)) / 2
        -0.25

    """
    return _mean(backward_transfer_per_experience(matrix))


def forward_transfer_per_experience(matrix: Matrix, initial: Vector) -> list[float]:
    r"""Forward transfer to each experience but the first: ``R[j-1, j] - b_j`` for ``j >= 1``.

    ``b_j = initial[j]`` is the accuracy on experience ``j`` before any training.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        initial: The ``T`` accuracies before training (row "-1").

    Returns:
        ``T - 1`` values, for experiences ``1..T-1`` (empty for ``T = 1``).

    Example:
        >>> [round(f, 4) for f in forward_transfer_per_experience([[0.9, 0.3], [0.6, 0.8]], [0.1, 0.1])]
        [0.2]

    """
    array = _square(matrix)
    size = array.shape[0]
    base = _vector(initial, size, "initial")
    _need(array, [(j - 1, j) for j in range(1, size)], "forward_transfer")
    return [float(array[j - 1, j] - base[j]) for j in range(1, size)]


def forward_transfer(matrix: Matrix, initial: Vector) -> float:
    r"""Forward transfer (FWT): ``(1/(T-1)) * sum_{j>=1} (R[j-1, j] - b_j)``.

    How much training on experiences ``< j`` helps experience ``j`` before it is trained, relative
    to the untrained model (``b_j = initial[j]``). By definition ``FWT = 0.0`` for ``T = 1``.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        initial: The ``T`` accuracies before training (row "-1").

    Returns:
        The forward transfer, a fraction in [-1, 1].

    Example:
        >>> R = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]]
        >>> round(forward_transfer(R, initial=[0.1, 0.1, 0.1]), 4)  # ((0.1 - 0.1) + (0.2 - 0.1)) / 2
        0.05

    """
    return _mean(forward_transfer_per_experience(matrix, initial))


# --------------------------------------------------------------------------- intransigence


def intransigence_per_experience(matrix: Matrix, joint_reference: Vector) -> list[float]:
    r"""Intransigence of each experience: ``I_k = a*_k - R[k, k]``.

    ``a*_k = joint_reference[k]`` is the accuracy on experience ``k`` of a reference model trained
    jointly on all data of experiences ``0..k``.

    Reference: Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting
    and Intransigence", ECCV 2018.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        joint_reference: The ``T`` joint-training accuracies ``a*_k``.

    Returns:
        ``T`` values.

    Example:
        >>> [round(i, 4) for i in intransigence_per_experience([[0.9, 0.0], [0.6, 0.8]], [0.95, 0.9])]
        [0.05, 0.1]

    """
    array = _square(matrix)
    size = array.shape[0]
    reference = _vector(joint_reference, size, "joint_reference")
    _need(array, [(k, k) for k in range(size)], "intransigence")
    return [float(reference[k] - array[k, k]) for k in range(size)]


def intransigence(matrix: Matrix, joint_reference: Vector) -> float:
    r"""Average intransigence: ``(1/T) * sum_k (a*_k - R[k, k])``.

    Positive values mean the continual learner learns each new experience worse than joint training
    would (lack of plasticity).

    Reference: Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting
    and Intransigence", ECCV 2018.

    Args:
        matrix: The T x T accuracy matrix ``R``.
        joint_reference: The ``T`` joint-training accuracies ``a*_k``.

    Returns:
        The average intransigence, a fraction.

    Example:
        >>> round(intransigence([[0.9, 0.0], [0.6, 0.8]], [0.95, 0.9]), 4)  # ((0.95 - 0.9) + (0.9 - 0.8)) / 2
        0.075

    """
    return _mean(intransigence_per_experience(matrix, joint_reference))


# --------------------------------------------------------------------------- summary


def stream_metrics(
    matrix: Matrix, initial: Vector | None = None, joint_reference: Vector | None = None
) -> dict[str, float]:
    r"""Compute the standard stream metrics of one accuracy matrix, task-averaged.

    Keys: ``avg_acc`` (:func:`average_accuracy`), ``avg_inc_acc``
    (:func:`average_incremental_accuracy`), ``forgetting`` (:func:`forgetting`, Chaudhry's max
    form), ``bwt`` (:func:`backward_transfer`), ``fwt`` (:func:`forward_transfer`, only when
    ``initial`` is given) and ``intransigence`` (only when ``joint_reference`` is given).

    References: Lopez-Paz & Ranzato (NeurIPS 2017); Rebuffi et al. (CVPR 2017); Chaudhry et al. (ECCV 2018).

    Args:
        matrix: The T x T accuracy matrix ``R``.
        initial: The ``T`` accuracies before training (row "-1"), for ``fwt``.
        joint_reference: The ``T`` joint-training accuracies, for ``intransigence``.

    Returns:
        Metric name -> value (Python floats).

    Example:
        >>> R = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]]
        >>> {k: round(v, 4) for k, v in stream_metrics(R, initial=[0.1, 0.1, 0.1]).items()}
        {'avg_acc': 0.7, 'avg_inc_acc': 0.7667, 'forgetting': 0.25, 'bwt': -0.25, 'fwt': 0.05}

    """
    array = _square(matrix)
    metrics = {
        "avg_acc": average_accuracy(array),
        "avg_inc_acc": average_incremental_accuracy(array),
        "forgetting": forgetting(array, "max"),
        "bwt": backward_transfer(array),
    }
    if initial is not None:
        metrics["fwt"] = forward_transfer(array, initial)
    if joint_reference is not None:
        metrics["intransigence"] = intransigence(array, joint_reference)
    return metrics
