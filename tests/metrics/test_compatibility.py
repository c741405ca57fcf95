"""Compatibility metrics (ECC, AC, AM, BC, FC) on hand-made matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lifelong.metrics.compatibility import (
    average_compatibility,
    average_multimodel_accuracy,
    backward_compatibility,
    compatibility_metrics,
    compatibility_pairs,
    empirical_compatibility,
    forward_compatibility,
)

NAN = float("nan")
# rows: query model, columns: gallery model; upper triangle not evaluated
M = [
    [0.40, NAN, NAN, NAN],
    [0.45, 0.50, NAN, NAN],  # (1,0): 0.45 > 0.40 ok
    [0.40, 0.48, 0.60, NAN],  # (2,0): tie -> fails; (2,1): 0.48 < 0.50 fails
    [0.41, 0.55, 0.70, 0.65],  # (3,0) ok, (3,1) ok, (3,2) ok
]


def test_ecc_is_strict():
    assert empirical_compatibility(0.5, 0.4)
    assert not empirical_compatibility(0.4, 0.4)
    assert not empirical_compatibility(0.3, 0.4)
    pairs = compatibility_pairs(M)
    assert pairs.tolist() == [
        [False, False, False, False],
        [True, False, False, False],
        [False, False, False, False],
        [True, True, True, False],
    ]


def test_average_compatibility_counts_ties_as_failures():
    assert average_compatibility(M) == pytest.approx(4 / 6)
    assert average_compatibility([[0.5, NAN], [0.5, 0.9]]) == 0.0
    assert average_compatibility([[0.5, NAN], [0.51, 0.2]]) == 1.0


def test_tie_rule_pass_counts_only_lower_scores_as_failures():
    # M has one tie, (2,0): 0.40 = M[0,0]; under "pass" it is compatible, everything else unchanged
    assert compatibility_pairs(M, ties="pass")[2].tolist() == [True, False, False, False]
    assert average_compatibility(M, ties="pass") == pytest.approx(5 / 6)
    assert average_compatibility(M, ties="fail") == pytest.approx(4 / 6)
    all_ties = [[0.5, NAN, NAN], [0.5, 0.6, NAN], [0.5, 0.6, 0.7]]
    assert average_compatibility(all_ties) == 0.0
    assert average_compatibility(all_ties, ties="pass") == 1.0
    assert compatibility_metrics(all_ties, ties="pass")["ac"] == 1.0
    with pytest.raises(ValueError, match="ties='strict' is not allowed"):
        average_compatibility(M, ties="strict")


def test_average_multimodel_accuracy_is_the_lower_triangle_mean():
    cells = [0.40, 0.45, 0.50, 0.40, 0.48, 0.60, 0.41, 0.55, 0.70, 0.65]
    assert average_multimodel_accuracy(M) == pytest.approx(sum(cells) / 10)
    assert average_multimodel_accuracy([[0.3]]) == pytest.approx(0.3)


def test_backward_and_forward_compatibility():
    # BC: last row vs the diagonal: (0.41-0.40 + 0.55-0.50 + 0.70-0.60) / 3
    assert backward_compatibility(M) == pytest.approx((0.01 + 0.05 + 0.10) / 3)
    # FC: M[i][i-1] - M[i][i] for i = 1..3: (0.45-0.50) + (0.48-0.60) + (0.70-0.65)
    assert forward_compatibility(M) == pytest.approx((-0.05 - 0.12 + 0.05) / 3)


def test_all_metrics_and_input_types():
    out = compatibility_metrics(torch.tensor(M, dtype=torch.float64))
    assert set(out) == {"am", "ac", "bc", "fc", "self_test"}
    assert out["self_test"] == pytest.approx(0.65)
    assert out == compatibility_metrics(np.array(M))
    assert set(compatibility_metrics([[0.7]])) == {"am", "self_test"}


def test_needs_two_models_and_finite_lower_triangle():
    for metric in (average_compatibility, backward_compatibility, forward_compatibility):
        with pytest.raises(ValueError, match="at least 2 models"):
            metric([[0.5]])
    with pytest.raises(ValueError, match=r"M\[1, 0\]"):
        average_multimodel_accuracy([[0.5, 0.1], [math.nan, 0.4]])
    with pytest.raises(ValueError, match="square"):
        average_compatibility([[0.5, 0.1]])
