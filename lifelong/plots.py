"""Matplotlib figures written as PNG files (logged as run artifacts).

matplotlib is imported inside the functions and draws on an Agg canvas without pyplot, so importing
this module is cheap, nothing opens a window and the global backend is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "curves_figure",
    "curves_plot",
    "figure_png",
    "heatmap_figure",
    "heatmap_size",
    "labelled_heatmap",
    "matrix_heatmap",
]

DPI = 100


def heatmap_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Figure size in inches (width, height) of a heatmap with ``n_rows`` x ``n_cols`` cells."""
    return max(3.6, 1.8 + 0.75 * n_cols), max(2.4, 1.2 + 0.45 * n_rows)  # room for the title and colour bar


def _table(matrix: Any) -> tuple[list[list[float]], list[str]]:
    """Return the rows to draw and their default labels.

    An object with ``as_tensor()`` and ``initial`` (an ``AccuracyMatrix``) gives its initial row
    ("init", when set) followed by every row ("after 0", ...), NaN where not filled. Anything else is
    taken as a 2-D table of numbers with rows "after 0", ....
    """
    values = matrix.as_tensor() if hasattr(matrix, "as_tensor") else matrix
    if hasattr(values, "detach"):
        values = values.detach().cpu().tolist()
    rows = [[float(v) for v in row] for row in values]
    labels = [f"after {i}" for i in range(len(rows))]
    initial = getattr(matrix, "initial", None)
    if initial is not None:
        rows.insert(0, [float(v) for v in initial])
        labels.insert(0, "init")
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(f"matrix_heatmap needs a non-empty 2-D table with rows of equal length; got {values!r}")
    return rows, labels


def _check_labels(labels: Sequence[str], size: int, name: str) -> list[str]:
    if len(labels) != size:
        raise ValueError(f"{name} has {len(labels)} labels, but the matrix has {size}")
    return [str(label) for label in labels]


def heatmap_figure(
    matrix: Any,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    value_format: str = ".2f",
) -> Figure:
    """Draw a heatmap of ``matrix`` on an Agg canvas, each cell annotated with its value; NaN cells blank.

    The colour scale is [0, 1] (accuracies) unless the values fall outside it. The figure is
    ``heatmap_size(rows, cols)`` inches at ``DPI`` dots per inch.

    Args:
        matrix: An ``AccuracyMatrix`` (drawn with its "init" row first when set), a tensor, an array
            or nested lists.
        title: Figure title.
        row_labels: One label per drawn row; default "init", "after 0", "after 1", ....
        col_labels: One label per column; default "exp 0", "exp 1", ....
        value_format: Format spec of the cell annotations.

    Returns:
        The figure (not registered with pyplot; nothing to close).

    """
    rows, default_rows = _table(matrix)
    n_rows, n_cols = len(rows), len(rows[0])
    row_labels = _check_labels(row_labels if row_labels is not None else default_rows, n_rows, "row_labels")
    col_labels = _check_labels(
        col_labels if col_labels is not None else [f"exp {j}" for j in range(n_cols)], n_cols, "col_labels"
    )
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.ma.masked_invalid(np.asarray(rows, dtype=np.float64))  # (rows, cols), NaN masked
    finite = data.compressed()
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(1.0, float(finite.max())) if finite.size else 1.0
    fig = Figure(figsize=heatmap_size(n_rows, n_cols), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state or any window
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(data, cmap=cmap, vmin=low, vmax=high, aspect="auto")
    _annotate(ax, rows, value_format, low, high)
    ax.set_xticks(range(n_cols), col_labels)
    ax.set_yticks(range(n_rows), row_labels)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained through")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def matrix_heatmap(
    matrix: Any,
    path: str | Path,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    value_format: str = ".2f",
) -> Path:
    """Write :func:`heatmap_figure` of ``matrix`` as a PNG of ``heatmap_size(rows, cols) * DPI`` pixels.

    Args:
        matrix: An ``AccuracyMatrix`` (drawn with its "init" row first when set), a tensor, an array
            or nested lists.
        path: Destination PNG; parent folders are created.
        title: Figure title.
        row_labels: One label per drawn row; default "init", "after 0", "after 1", ....
        col_labels: One label per column; default "exp 0", "exp 1", ....
        value_format: Format spec of the cell annotations.

    Returns:
        The path written.

    """
    fig = heatmap_figure(matrix, title, row_labels, col_labels, value_format)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _annotate(ax: Any, rows: list[list[float]], value_format: str, low: float, high: float) -> None:
    """Write each finite value in its cell, dark text on light cells and light text on dark ones."""
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if math.isnan(value):
                continue
            light_cell = (value - low) / max(high - low, 1e-12) > 0.6
            ax.text(
                j,
                i,
                format(value, value_format),
                ha="center",
                va="center",
                color="black" if light_cell else "white",
                fontsize=9,
            )


def labelled_heatmap(
    matrix: Any,
    path: str | Path,
    title: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    xlabel: str,
    ylabel: str,
    value_format: str = ".2f",
) -> Path:
    """Write :func:`heatmap_figure` of ``matrix`` as a PNG with its own axis titles.

    For tables that are not accuracy matrices (e.g. layer x experience for CKA), whose axes are not
    "trained through" / "evaluated on". Parent folders are created; returns the path.
    """
    fig = heatmap_figure(matrix, title, row_labels, col_labels, value_format)
    ax = fig.axes[0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def curves_figure(
    series: Mapping[str, Sequence[float]],
    x_labels: Sequence[str],
    title: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = (0.0, 1.0),
) -> Figure:
    """Line plot of one curve per entry of ``series`` over the evaluation points ``x_labels``.

    NaN values leave gaps (e.g. a metric undefined before the first experience). Each point carries
    a marker, so a curve of one defined point is still visible.

    Args:
        series: curve name -> one value per x label.
        x_labels: the points on the x axis, e.g. "init", "after 0", ...
        title: Figure title.
        ylabel: y-axis title.
        ylim: fixed y range; ``None`` fits the data.

    Returns:
        The figure (not registered with pyplot; nothing to close).

    """
    for name, values in series.items():
        if len(values) != len(x_labels):
            raise ValueError(f"curve {name!r} has {len(values)} values for {len(x_labels)} x labels")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.5 + 0.6 * len(x_labels)), 3.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    positions = list(range(len(x_labels)))
    for name, values in series.items():
        ax.plot(positions, [float(v) for v in values], marker="o", label=str(name))
    ax.set_xticks(positions, [str(label) for label in x_labels])
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title)
    return fig


def curves_plot(
    series: Mapping[str, Sequence[float]],
    path: str | Path,
    x_labels: Sequence[str],
    title: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = (0.0, 1.0),
) -> Path:
    """Write :func:`curves_figure` as a PNG; parent folders are created. Returns the path."""
    return _save(curves_figure(series, x_labels, title, ylabel, ylim), path)


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig`` at ``DPI`` (for inlining in HTML)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path
