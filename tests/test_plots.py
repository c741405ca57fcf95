"""The accuracy-matrix heatmap: a real PNG of the expected size, annotated cells, blank NaN cells."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pytest
import torch

from lifelong.metrics import AccuracyMatrix
from lifelong.plots import DPI, heatmap_figure, heatmap_size, matrix_heatmap


def partly_filled() -> AccuracyMatrix:
    matrix = AccuracyMatrix(3)
    matrix.set_initial([0.1, 0.12, 0.09])
    matrix.set_row(0, [0.95, 0.1, 0.0])
    matrix.set_row(1, [0.7, 0.93, math.nan])
    return matrix


def test_heatmap_writes_a_png_of_the_expected_size(tmp_path):
    path = matrix_heatmap(partly_filled(), tmp_path / "plots" / "accuracy_matrix.png", title="Accuracy")
    assert path == tmp_path / "plots" / "accuracy_matrix.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)  # (H, W, 4)
    width, height = heatmap_size(4, 3)  # init + 3 rows, 3 columns
    assert image.shape[0] == pytest.approx(height * DPI, abs=2)
    assert image.shape[1] == pytest.approx(width * DPI, abs=2)
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_heatmap_annotates_finite_cells_and_masks_nan():
    fig = heatmap_figure(partly_filled(), title="Accuracy")
    ax = fig.axes[0]
    # init row, rows 0 and 1; row 2 (not filled) and R[1, 2] (NaN) carry no text
    assert [t.get_text() for t in ax.texts] == [
        "0.10",
        "0.12",
        "0.09",
        "0.95",
        "0.10",
        "0.00",
        "0.70",
        "0.93",
    ]
    mask = np.ma.getmaskarray(ax.images[0].get_array())
    assert mask.tolist() == [[False] * 3, [False] * 3, [False, False, True], [True] * 3]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["init", "after 0", "after 1", "after 2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["exp 0", "exp 1", "exp 2"]
    assert ax.get_title() == "Accuracy"


def test_heatmap_without_initial_row_of_plain_data():
    fig = heatmap_figure(torch.tensor([[0.5, 0.25], [0.125, 1.0]]), value_format=".1%")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["50.0%", "25.0%", "12.5%", "100.0%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["after 0", "after 1"]


def test_heatmap_custom_labels(tmp_path):
    fig = heatmap_figure([[0.5, 0.5]], row_labels=["model 0"], col_labels=["gallery 0", "gallery 1"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["model 0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gallery 0", "gallery 1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"row_labels": ["a", "b"]}, "row_labels has 2 labels, but the matrix has 1"),
        ({"col_labels": ["a"]}, "col_labels has 1 labels, but the matrix has 2"),
    ],
)
def test_heatmap_label_count_must_match(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        matrix_heatmap([[0.5, 0.5]], tmp_path / "x.png", **kwargs)


@pytest.mark.parametrize("matrix", [[], [[]], [[0.5, 0.5], [0.5]]])
def test_heatmap_rejects_empty_or_ragged_tables(tmp_path, matrix):
    with pytest.raises(ValueError, match="non-empty 2-D table"):
        matrix_heatmap(matrix, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
