"""AccuracyMatrix: filling in order, metrics on the leading block, CSV and state_dict round trips."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.metrics import AccuracyMatrix

INITIAL = [0.1, 0.05, 0.2]
ROWS = [
    [0.8, 0.3, 0.1],
    [0.9, 0.7, 0.4],
    [0.6, 0.75, 0.9],
]


def filled(rows: int = 3, initial: bool = True) -> AccuracyMatrix:
    matrix = AccuracyMatrix(3)
    if initial:
        matrix.set_initial(INITIAL)
    for i in range(rows):
        matrix.set_row(i, ROWS[i])
    return matrix


def test_a_new_matrix_is_empty():
    matrix = AccuracyMatrix(3)
    assert matrix.n_experiences == 3
    assert matrix.rows_filled == 0
    assert matrix.initial is None
    assert not matrix.is_complete
    assert matrix.metrics_so_far() == {}
    tensor = matrix.as_tensor()
    assert tensor.shape == (3, 3)
    assert tensor.dtype == torch.float64
    assert torch.isnan(tensor).all()


def test_as_tensor_has_nan_in_unfilled_rows():
    tensor = filled(rows=2).as_tensor()
    assert tensor[:2].tolist() == ROWS[:2]
    assert torch.isnan(tensor[2]).all()


def test_initial_is_a_copy():
    matrix = filled()
    matrix.initial[0] = 0.99  # type: ignore[index]
    assert matrix.initial == INITIAL


def test_metrics_so_far_use_the_leading_square_block():
    matrix = AccuracyMatrix(3)
    matrix.set_initial(INITIAL)
    matrix.set_row(0, ROWS[0])
    # block R[:1, :1] = [[0.8]]: T = 1, so forgetting, bwt and fwt are 0 by definition
    assert matrix.metrics_so_far() == pytest.approx(
        {"avg_acc": 0.8, "avg_inc_acc": 0.8, "forgetting": 0.0, "bwt": 0.0, "fwt": 0.0}
    )
    matrix.set_row(1, ROWS[1])
    # block [[0.8, 0.3], [0.9, 0.7]], initial [0.1, 0.05] (R[0, 2], R[1, 2] are outside the block):
    # avg_acc = (0.9 + 0.7) / 2 = 0.8; avg_inc_acc = (0.8 + 0.8) / 2 = 0.8
    # forgetting = R[0,0] - R[1,0] = 0.8 - 0.9 = -0.1; bwt = 0.9 - 0.8 = 0.1; fwt = R[0,1] - b_1 = 0.3 - 0.05 = 0.25
    assert matrix.metrics_so_far() == pytest.approx(
        {"avg_acc": 0.8, "avg_inc_acc": 0.8, "forgetting": -0.1, "bwt": 0.1, "fwt": 0.25}
    )
    matrix.set_row(2, ROWS[2])
    # the full matrix, as computed by hand in test_functional.py
    assert matrix.is_complete
    assert matrix.metrics_so_far() == pytest.approx(
        {"avg_acc": 0.75, "avg_inc_acc": 2.35 / 3, "forgetting": 0.125, "bwt": -0.075, "fwt": 0.225}
    )


def test_metrics_so_far_ignore_future_columns_that_were_not_evaluated():
    matrix = AccuracyMatrix(3)
    matrix.set_row(0, [0.8, math.nan, math.nan])
    matrix.set_row(1, [0.6, 0.9, math.nan])
    # no initial row -> no fwt; (0.6 + 0.9) / 2 = 0.75; bwt = 0.6 - 0.8 = -0.2
    assert matrix.metrics_so_far() == pytest.approx(
        {"avg_acc": 0.75, "avg_inc_acc": 0.775, "forgetting": 0.2, "bwt": -0.2}
    )


def test_rows_are_filled_in_order_and_may_be_overwritten():
    matrix = filled(rows=1)
    with pytest.raises(ValueError, match="the next row is 1, got i=2"):
        matrix.set_row(2, ROWS[2])
    matrix.set_row(0, [0.5, 0.5, 0.5])
    assert matrix.rows_filled == 1
    assert matrix.row(0) == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="row 1 is not filled"):
        matrix.row(1)


@pytest.mark.parametrize(
    ("i", "scores", "message"),
    [
        (-1, ROWS[0], r"row index i=-1 must be an integer in \[0, 2\] \(use set_initial"),
        (3, ROWS[0], r"row index i=3"),
        (True, ROWS[0], r"row index i=True"),
        (0, [0.5, 0.5], r"scores of row 0 needs one score per test experience \(3\); got 2"),
        (0, [0.5, 50.0, 0.5], r"scores of row 0\[1\] = 50.0 is not an accuracy in \[0, 1\]"),
        (0, ["a", 0.5, 0.5], "must be a sequence of numbers"),
    ],
)
def test_bad_rows(i, scores, message):
    with pytest.raises(ValueError, match=message):
        AccuracyMatrix(3).set_row(i, scores)


def test_bad_initial_and_size():
    with pytest.raises(ValueError, match=r"initial scores needs one score per test experience \(3\); got 4"):
        AccuracyMatrix(3).set_initial([0.1] * 4)
    for size in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="n_experiences must be an integer >= 1"):
            AccuracyMatrix(size)  # type: ignore[arg-type]


def test_rows_accept_tensors():
    matrix = AccuracyMatrix(2)
    matrix.set_row(0, torch.tensor([0.25, 0.5]))
    assert matrix.row(0) == [0.25, 0.5]
    assert all(type(v) is float for v in matrix.row(0))


# ----------------------------------------------------------------------------- CSV


def test_csv_layout(tmp_path):
    path = filled(rows=2).to_csv(tmp_path / "sub" / "accuracy_matrix.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "after_exp,exp0,exp1,exp2"
    assert [line.split(",")[0] for line in lines[1:]] == ["init", "0", "1"]
    assert lines[2] == "0,0.8,0.3,0.1"


@pytest.mark.parametrize(("rows", "initial"), [(3, True), (2, True), (3, False), (0, True), (0, False)])
def test_csv_round_trip(tmp_path, rows, initial):
    matrix = filled(rows, initial)
    restored = AccuracyMatrix.from_csv(matrix.to_csv(tmp_path / "m.csv"))
    assert restored == matrix
    assert restored.rows_filled == rows
    assert restored.initial == (INITIAL if initial else None)


def test_csv_round_trip_is_exact_and_keeps_nan(tmp_path):
    matrix = AccuracyMatrix(2)
    matrix.set_row(0, [0.1 + 0.2, math.nan])  # 0.30000000000000004 must survive
    restored = AccuracyMatrix.from_csv(matrix.to_csv(tmp_path / "m.csv"))
    assert restored.row(0)[0] == 0.1 + 0.2
    assert math.isnan(restored.row(0)[1])
    assert restored == matrix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("after,exp0\n0,0.5\n", "header 'after,exp0' is not after_exp,exp0"),
        ("after_exp,exp1\n0,0.5\n", "is not after_exp"),
        ("after_exp,exp0,exp1\n0,0.5\n", "line 2: 2 cells, expected 3"),
        ("after_exp,exp0,exp1\n1,0.5,0.5\n", "line 2: row label '1' must be 'init' or the next row index 0"),
        ("after_exp,exp0,exp1\nfoo,0.5,0.5\n", "row label 'foo'"),
        ("after_exp,exp0,exp1\n0,0.5,x\n", "line 2: cells must be numbers or empty"),
        ("after_exp,exp0,exp1\n0,0.5,0.5\n1,0.5,75\n", r"line 3: scores of row 1\[1\] = 75.0 is not an accuracy"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        AccuracyMatrix.from_csv(path)


# ----------------------------------------------------------------------------- state_dict and equality


def test_state_dict_round_trip_through_torch_save(tmp_path):
    matrix = filled(rows=2)
    torch.save({"matrix": matrix.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["matrix"]
    restored = AccuracyMatrix(3)
    restored.load_state_dict(state)
    assert restored == matrix
    assert AccuracyMatrix.from_state_dict(state) == matrix
    # resuming continues where it stopped
    restored.set_row(2, ROWS[2])
    assert restored == filled()


def test_state_dict_is_independent_of_the_matrix():
    matrix = filled(rows=1)
    state = matrix.state_dict()
    state["rows"][0][0] = 0.0
    assert matrix.row(0) == ROWS[0]


def test_load_state_dict_checks_the_state():
    state = filled().state_dict()
    with pytest.raises(ValueError, match="n_experiences=3, this matrix has 4"):
        AccuracyMatrix(4).load_state_dict(state)
    with pytest.raises(ValueError, match=r"lacks \['rows'\]"):
        AccuracyMatrix(3).load_state_dict({"n_experiences": 3, "initial": None})
    with pytest.raises(ValueError, match="lacks 'n_experiences'"):
        AccuracyMatrix.from_state_dict({})
    bad = filled().state_dict()
    bad["rows"][1] = [0.5, 2.0, 0.5]
    target = filled(rows=1)
    with pytest.raises(ValueError, match=r"row 1\[1\] = 2.0"):
        target.load_state_dict(bad)
    assert target == filled(rows=1)  # a failed load leaves the matrix as it was


def test_equality_and_allclose():
    assert filled() == filled()
    assert filled() != filled(rows=2)
    assert filled() != filled(initial=False)
    assert AccuracyMatrix(2) != AccuracyMatrix(3)
    assert filled() != "a matrix"
    nudged = filled()
    nudged.set_row(2, [0.6, 0.75, 0.9 + 1e-12])
    assert nudged != filled()
    assert nudged.allclose(filled(), atol=1e-9)
    assert not nudged.allclose(filled(), atol=0.0)
    with pytest.raises(TypeError, match="unhashable"):
        hash(filled())


def test_repr():
    assert repr(filled(rows=2)) == "AccuracyMatrix(n_experiences=3, rows_filled=2, initial set)"
