"""Every metric against matrices computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.metrics import functional as F

# R[i, j]: accuracy on experience j after training experience i.
# Experience 0 improves after experience 1 is trained (0.8 -> 0.9), so max- and first-forgetting differ;
# experience 1 ends higher than right after training it (0.7 -> 0.75), a negative forgetting.
R3 = [
    [0.8, 0.3, 0.1],
    [0.9, 0.7, 0.4],
    [0.6, 0.75, 0.9],
]
B3 = [0.1, 0.05, 0.2]  # accuracies before training (row "-1")
JOINT3 = [0.85, 0.8, 0.95]  # a*_k of a jointly trained reference


# ----------------------------------------------------------------------------- accuracy


def test_average_accuracy_is_the_mean_of_the_last_row():
    # (0.6 + 0.75 + 0.9) / 3 = 2.25 / 3
    assert F.average_accuracy(R3) == pytest.approx(0.75)


def test_average_accuracy_sample_weighted():
    # (200 * 0.6 + 100 * 0.75 + 100 * 0.9) / 400 = (120 + 75 + 90) / 400 = 285 / 400
    assert F.average_accuracy(R3, test_sizes=[200, 100, 100]) == pytest.approx(0.7125)


def test_incremental_accuracies_task_averaged():
    # A_0 = 0.8; A_1 = (0.9 + 0.7) / 2 = 0.8; A_2 = (0.6 + 0.75 + 0.9) / 3 = 0.75
    assert F.incremental_accuracies(R3) == pytest.approx([0.8, 0.8, 0.75])


def test_incremental_accuracies_sample_weighted():
    # sizes 200, 100, 100: A_0 = 0.8; A_1 = (180 + 70) / 300 = 0.8333...; A_2 = 285 / 400 = 0.7125
    assert F.incremental_accuracies(R3, test_sizes=[200, 100, 100]) == pytest.approx([0.8, 250 / 300, 0.7125])


def test_average_incremental_accuracy():
    # (0.8 + 0.8 + 0.75) / 3 = 2.35 / 3
    assert F.average_incremental_accuracy(R3) == pytest.approx(2.35 / 3)
    # sample-weighted: (0.8 + 0.8333... + 0.7125) / 3, not the task-averaged 0.78333...
    weighted = F.average_incremental_accuracy(R3, test_sizes=[200, 100, 100])
    assert weighted == pytest.approx((0.8 + 250 / 300 + 0.7125) / 3)
    assert weighted != pytest.approx(2.35 / 3)


def test_equal_test_sizes_give_the_task_averaged_form():
    assert F.average_incremental_accuracy(R3, test_sizes=[50, 50, 50]) == pytest.approx(
        F.average_incremental_accuracy(R3)
    )


def test_performance_drop():
    # A_0 - A_2 = 0.8 - 0.75
    assert F.performance_drop(R3) == pytest.approx(0.05)


# ----------------------------------------------------------------------------- forgetting


def test_max_forgetting_differs_from_first_forgetting():
    # max:   f_0 = max(R[0,0], R[1,0]) - R[2,0] = 0.9 - 0.6 = 0.3;  f_1 = R[1,1] - R[2,1] = 0.7 - 0.75 = -0.05
    # first: f_0 = R[0,0] - R[2,0] = 0.8 - 0.6 = 0.2;                f_1 = -0.05
    assert F.forgetting_per_experience(R3, "max") == pytest.approx([0.3, -0.05])
    assert F.forgetting_per_experience(R3, "first") == pytest.approx([0.2, -0.05])
    assert F.forgetting(R3) == pytest.approx((0.3 - 0.05) / 2)  # 0.125, "max" is the default
    assert F.forgetting(R3, mode="first") == pytest.approx((0.2 - 0.05) / 2)  # 0.075


def test_max_forgetting_ignores_rows_before_the_experience_was_trained():
    # R[0, 1] = 0.95 is before experience 1 was trained: f_1 = R[1,1] - R[2,1] = 0.5 - 0.4 = 0.1, not 0.95 - 0.4
    matrix = [[0.9, 0.95, 0.0], [0.9, 0.5, 0.0], [0.9, 0.4, 0.8]]
    assert F.forgetting_per_experience(matrix) == pytest.approx([0.0, 0.1])


def test_forgetting_curve():
    # F_0 = 0; F_1 on R[:2, :2]: f_0 = R[0,0] - R[1,0] = 0.8 - 0.9 = -0.1; F_2 = 0.125 (above)
    assert F.forgetting_curve(R3) == pytest.approx([0.0, -0.1, 0.125])
    # first mode: F_1 = 0.8 - 0.9 = -0.1 too; F_2 = 0.075
    assert F.forgetting_curve(R3, "first") == pytest.approx([0.0, -0.1, 0.075])


def test_forgetting_4x4_where_the_maximum_is_in_a_middle_row():
    # experience 0: 0.5, 0.7, 0.9, 0.4 -> max = 0.9 (row 2), first = 0.5; f_max = 0.5, f_first = 0.1
    # experience 1: 0.6, 0.6, 0.3      -> f_max = f_first = 0.3
    # experience 2: 0.8, 0.6           -> f = 0.2
    matrix = [
        [0.5, 0.0, 0.0, 0.0],
        [0.7, 0.6, 0.0, 0.0],
        [0.9, 0.6, 0.8, 0.0],
        [0.4, 0.3, 0.6, 1.0],
    ]
    assert F.forgetting(matrix) == pytest.approx((0.5 + 0.3 + 0.2) / 3)
    assert F.forgetting(matrix, "first") == pytest.approx((0.1 + 0.3 + 0.2) / 3)


# ----------------------------------------------------------------------------- transfer


def test_negative_backward_transfer():
    # ((R[2,0] - R[0,0]) + (R[2,1] - R[1,1])) / 2 = ((0.6 - 0.8) + (0.75 - 0.7)) / 2 = (-0.2 + 0.05) / 2
    assert F.backward_transfer_per_experience(R3) == pytest.approx([-0.2, 0.05])
    assert F.backward_transfer(R3) == pytest.approx(-0.075)


def test_positive_backward_transfer():
    # (0.9 - 0.5) / 1
    assert F.backward_transfer([[0.5, 0.0], [0.9, 0.6]]) == pytest.approx(0.4)


def test_forward_transfer_with_initial_row():
    # ((R[0,1] - b_1) + (R[1,2] - b_2)) / 2 = ((0.3 - 0.05) + (0.4 - 0.2)) / 2 = (0.25 + 0.2) / 2
    assert F.forward_transfer_per_experience(R3, B3) == pytest.approx([0.25, 0.2])
    assert F.forward_transfer(R3, B3) == pytest.approx(0.225)


def test_forward_transfer_ignores_b0_and_the_diagonal():
    # only R[0,1] - b_1 = 0.2 - 0.5 = -0.3 counts; b_0 and R[1,1] do not
    assert F.forward_transfer([[0.9, 0.2], [0.1, 0.99]], [1.0, 0.5]) == pytest.approx(-0.3)


def test_intransigence():
    # (0.85 - 0.8) + (0.8 - 0.7) + (0.95 - 0.9) = 0.05 + 0.1 + 0.05 = 0.2; / 3
    assert F.intransigence_per_experience(R3, JOINT3) == pytest.approx([0.05, 0.1, 0.05])
    assert F.intransigence(R3, JOINT3) == pytest.approx(0.2 / 3)


# ----------------------------------------------------------------------------- T = 1 and the summary


def test_a_single_experience():
    matrix = [[0.7]]
    assert F.average_accuracy(matrix) == pytest.approx(0.7)
    assert F.average_incremental_accuracy(matrix) == pytest.approx(0.7)
    assert F.forgetting(matrix) == 0.0
    assert F.forgetting(matrix, "first") == 0.0
    assert F.backward_transfer(matrix) == 0.0
    assert F.forward_transfer(matrix, [0.2]) == 0.0
    assert F.performance_drop(matrix) == 0.0
    assert F.intransigence(matrix, [0.9]) == pytest.approx(0.2)  # 0.9 - 0.7
    assert F.forgetting_per_experience(matrix) == []
    assert F.backward_transfer_per_experience(matrix) == []
    assert F.forward_transfer_per_experience(matrix, [0.2]) == []
    assert F.forgetting_curve(matrix) == [0.0]
    assert F.stream_metrics(matrix, [0.2]) == pytest.approx(
        {"avg_acc": 0.7, "avg_inc_acc": 0.7, "forgetting": 0.0, "bwt": 0.0, "fwt": 0.0}
    )


def test_stream_metrics_names_and_values():
    assert F.stream_metrics(R3) == pytest.approx(
        {"avg_acc": 0.75, "avg_inc_acc": 2.35 / 3, "forgetting": 0.125, "bwt": -0.075}
    )
    with_all = F.stream_metrics(R3, initial=B3, joint_reference=JOINT3)
    assert list(with_all) == ["avg_acc", "avg_inc_acc", "forgetting", "bwt", "fwt", "intransigence"]
    assert with_all["fwt"] == pytest.approx(0.225)
    assert with_all["intransigence"] == pytest.approx(0.2 / 3)
    assert all(type(v) is float for v in with_all.values())


@pytest.mark.parametrize(
    "convert",
    [
        list,
        np.array,
        lambda m: torch.tensor(m, dtype=torch.float32),
        lambda m: torch.tensor(m, dtype=torch.float64, requires_grad=True),
    ],
    ids=["list", "numpy", "torch32", "torch-grad"],
)
def test_inputs_may_be_lists_arrays_or_tensors(convert):
    metrics = F.stream_metrics(convert(R3), initial=convert(B3))
    assert metrics == pytest.approx(F.stream_metrics(R3, initial=B3), abs=1e-6)
    assert all(type(v) is float for v in metrics.values())


def test_upper_triangle_may_be_nan_when_no_metric_reads_it():
    # without FWT nothing reads above the diagonal
    matrix = [[0.8, math.nan, math.nan], [0.9, 0.7, math.nan], [0.6, 0.75, 0.9]]
    assert F.stream_metrics(matrix)["forgetting"] == pytest.approx(0.125)
    with pytest.raises(ValueError, match=r"forward_transfer needs R\[0, 1\]"):
        F.forward_transfer(matrix, B3)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[0.5, 0.5]], r"square T x T matrix .* shape \(1, 2\)"),
        ([0.5, 0.5], r"square T x T matrix .* shape \(2,\)"),
        (np.zeros((2, 2, 2)), r"square T x T matrix .* shape \(2, 2, 2\)"),
        (np.zeros((0, 0)), "R is empty"),
        ([[0.5, 0.5], [0.5]], "rows of equal length"),
        ([["a", "b"], ["c", "d"]], "numeric"),
        ([[0.5, 0.5], [0.5, 87.5]], r"R\[1, 1\] = 87.5 is not an accuracy in \[0, 1\] \(divide percentages by 100\)"),
        ([[-0.1]], r"R\[0, 0\] = -0.1 is not an accuracy"),
        ([[math.inf]], r"R\[0, 0\] = inf is not an accuracy"),
    ],
)
def test_bad_matrices_raise_value_error(matrix, message):
    with pytest.raises(ValueError, match=message):
        F.stream_metrics(matrix)


@pytest.mark.parametrize(
    ("function", "cell"),
    [
        (F.average_accuracy, (2, 1)),
        (F.average_incremental_accuracy, (1, 0)),
        (F.incremental_accuracies, (1, 1)),
        (F.forgetting, (1, 0)),
        (F.backward_transfer, (1, 1)),
        (F.performance_drop, (2, 2)),
    ],
)
def test_nan_in_a_needed_cell_is_named(function, cell):
    matrix = np.array(R3)
    matrix[cell] = math.nan
    with pytest.raises(ValueError, match=rf"needs R\[{cell[0]}, {cell[1]}\].*NaN"):
        function(matrix)


def test_first_forgetting_does_not_need_the_middle_rows():
    matrix = np.array(R3)
    matrix[1, 0] = math.nan  # only the max form reads R[1, 0]
    assert F.forgetting(matrix, "first") == pytest.approx(0.075)
    with pytest.raises(ValueError, match=r"forgetting \(max\) needs R\[1, 0\]"):
        F.forgetting(matrix, "max")


def test_unknown_forgetting_mode():
    with pytest.raises(ValueError, match=r"mode='last' is not allowed; choose one of: max, first"):
        F.forgetting(R3, mode="last")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        ([0.1, 0.1], r"initial must be a vector with one entry per experience \(3\); got shape \(2,\)"),
        ([[0.1, 0.1, 0.1]], r"initial must be a vector"),
        ([0.1, math.nan, 0.1], r"initial\[1\] is NaN"),
        ([0.1, 10.0, 0.1], r"initial\[1\] = 10.0 is not an accuracy"),
    ],
)
def test_bad_initial_row(initial, message):
    with pytest.raises(ValueError, match=message):
        F.forward_transfer(R3, initial)


def test_bad_joint_reference():
    with pytest.raises(ValueError, match=r"joint_reference must be a vector with one entry per experience \(3\)"):
        F.intransigence(R3, [0.9])


@pytest.mark.parametrize("sizes", [[1, 2], [100, 0, 100], [100, -5, 100], [100, math.nan, 100]])
def test_bad_test_sizes(sizes):
    with pytest.raises(ValueError, match="test_sizes"):
        F.average_accuracy(R3, test_sizes=sizes)


# ----------------------------------------------------------------------------- properties

accuracy = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def matrices(draw):
    size = draw(st.integers(min_value=1, max_value=6))
    return np.array(draw(st.lists(st.lists(accuracy, min_size=size, max_size=size), min_size=size, max_size=size)))


@settings(max_examples=60, deadline=None)
@given(matrices())
def test_first_forgetting_is_minus_bwt_and_max_forgetting_bounds_it(matrix):
    assert F.forgetting(matrix, "first") == pytest.approx(-F.backward_transfer(matrix), abs=1e-12)
    for f_max, f_first in zip(
        F.forgetting_per_experience(matrix, "max"), F.forgetting_per_experience(matrix, "first"), strict=True
    ):
        assert f_max >= f_first - 1e-12
    metrics = F.stream_metrics(matrix, initial=matrix[0])
    assert 0.0 <= metrics["avg_acc"] <= 1.0
    assert 0.0 <= metrics["avg_inc_acc"] <= 1.0
    assert all(-1.0 <= metrics[k] <= 1.0 for k in ("forgetting", "bwt", "fwt"))
    assert F.forgetting_curve(matrix)[-1] == pytest.approx(metrics["forgetting"])
