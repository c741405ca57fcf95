"""One self-contained HTML page per run or experiment: what a researcher wants to see at a glance.

A run folder (``runs/<experiment>/<run>/``, written by ``lifelong run``) holds ``config.yaml``,
``accuracy_matrix.csv`` / ``.png``, ``summary.json`` and, when analyses were enabled, ``cka.*`` and
``linear_probe.*``. The report shows, per run: the stream summary, the final metrics, the accuracy
matrix heatmap, the metric curves per experience (computed from the matrix with
``lifelong.metrics.functional``), the CKA and linear-probe plots and tables when present, any other
figure of the folder, and the config. An experiment folder (several runs) gets the runs side by side
plus a mean ± std table over the runs of each setting and the accuracy curves of all runs overlaid.

Every image is inlined as a base64 PNG data URI and the style sheet is inline: the page has no
external asset and no script, so it opens anywhere (mail it, log it to MLflow).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lifelong.errors import DataError
from lifelong.metrics import functional
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.metrics.score_matrices import ACCURACY, matrix_file
from lifelong.version import __version__

__all__ = [
    "RunRecord",
    "default_report_path",
    "find_runs",
    "load_run",
    "log_report",
    "matrix_curves",
    "render_report",
    "write_report",
]

KNOWN_FIGURES = ("accuracy_matrix.png", "cka.png", "linear_probe.png")
CURVE_NAMES = {
    "avg_acc": "{score} on seen experiences",
    "avg_inc_acc": "average incremental {score}",
    "acc_new": "{score} on the newest experience",
    "forgetting": "forgetting (max)",
}

STYLE = """
body { font-family: system-ui, sans-serif; color: #222; background: #fff; margin: 16px; }
h1 { font-size: 1.5em; margin: 0 0 4px 0; }
h2 { font-size: 1.2em; border-bottom: 1px solid #bbb; padding-bottom: 2px; }
h3 { font-size: 1.0em; margin: 14px 0 4px 0; }
.meta { color: #666; font-size: 0.85em; }
.runs { display: grid; grid-template-columns: repeat(var(--columns), minmax(440px, 1fr)); gap: 16px;
        overflow-x: auto; }
.run { border: 1px solid #ccc; border-radius: 4px; padding: 8px 12px; min-width: 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 4px 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 6px; font-size: 0.8em; overflow-x: auto; }
"""


@dataclass
class Table:
    """A CSV table: its header and rows (first cell a label, the rest numbers; NaN for empty cells)."""

    header: list[str]
    rows: list[tuple[str, list[float]]]

    def last(self) -> dict[str, float]:
        """The last row as column -> value."""
        if not self.rows:
            return {}
        return dict(zip(self.header[1:], self.rows[-1][1], strict=False))


@dataclass
class RunRecord:
    """What the report reads from one run folder."""

    path: Path
    name: str
    config_text: str
    config: dict[str, Any]
    summary: dict[str, Any]
    matrix: AccuracyMatrix | None  # the primary score's (accuracy; a2v R@1 for audio-video runs)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    cka: Table | None = None
    probe: Table | None = None
    primary: str = ACCURACY  # the score of ``matrix``

    @property
    def params(self) -> dict[str, str]:
        """The run's flat resolved config with defaults, as its MLflow params hold it (for grouping by digest)."""
        return _resolved_params(self.path / "config.yaml", self.config)

    def final_metrics(self) -> dict[str, float]:
        """Stream metrics of ``summary.json`` plus the last CKA and probe values."""
        values = {k: float(v) for k, v in self.summary.get("metrics", {}).items()}
        if self.cka is not None:
            values.update({f"cka/{k}": v for k, v in self.cka.last().items()})
        if self.probe is not None:
            values.update({f"linear_probe/{k}": v for k, v in self.probe.last().items() if not k.startswith("exp")})
        return values


def _primary_score(path: Path) -> str:
    """The run's primary score: the first of ``summary.json``'s ``scores`` (``acc`` for older runs)."""
    try:
        scores = json.loads((path / "summary.json").read_text()).get("scores") or [ACCURACY]
    except (OSError, ValueError):
        scores = [ACCURACY]
    return str(scores[0])


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / f"{matrix_file(_primary_score(path))}.csv").is_file()


def find_runs(target: str | Path) -> list[Path]:
    """The run folders of ``target``: itself if it is a run, else the runs up to two levels below (sorted).

    Raises:
        DataError: ``target`` does not exist or holds no run folder.

    """
    path = Path(target)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; pass a run folder (runs/<experiment>/<run>) or an experiment folder")
    if _is_run(path):
        return [path]
    runs = sorted({p.parent for p in path.glob("config.yaml")} | {p.parent for p in path.glob("*/config.yaml")})
    runs += sorted(p.parent for p in path.glob("*/*/config.yaml"))
    runs = [run for run in dict.fromkeys(runs) if _is_run(run)]
    if not runs:
        raise DataError(
            f"{path} holds no run folder (a folder with config.yaml and a score matrix such as accuracy_matrix.csv, "
            "as `lifelong run` writes)"
        )
    return runs


def read_table(path: Path) -> Table:
    """Read a CSV written by an analysis or ``AccuracyMatrix.to_csv``."""
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    if not lines:
        raise DataError(f"{path} is empty")
    rows = [
        (line[0], [math.nan if c.strip() in ("", "nan", "NaN") else float(c) for c in line[1:]]) for line in lines[1:]
    ]
    return Table(lines[0], rows)


def load_run(run_dir: str | Path) -> RunRecord:
    """Read one run folder (``config.yaml`` and the primary score's matrix, e.g. ``accuracy_matrix.csv``)."""
    path = Path(run_dir)
    if not _is_run(path):
        raise DataError(f"{path} is not a run folder: it needs config.yaml and a score matrix (accuracy_matrix.csv)")
    config_text = (path / "config.yaml").read_text()
    config = yaml.safe_load(config_text) or {}
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    primary = _primary_score(path)
    matrix = AccuracyMatrix.from_csv(path / f"{matrix_file(primary)}.csv")
    name = summary.get("run_name") or path.name
    record = RunRecord(path, name, config_text, config, summary, matrix, primary=primary)
    for png in sorted(path.glob("*.png")):
        record.figures[png.name] = png.read_bytes()
    if (path / "cka.csv").is_file():
        record.cka = read_table(path / "cka.csv")
    if (path / "linear_probe.csv").is_file():
        record.probe = read_table(path / "linear_probe.csv")
    return record


def matrix_curves(matrix: AccuracyMatrix) -> dict[str, list[float]]:
    """Metric curves after each filled experience, from the leading blocks ``R[:k+1, :k+1]``.

    Keys: ``avg_acc`` (accuracy on the experiences seen so far), ``avg_inc_acc``, ``acc_new``
    (``R[k, k]``, the experience just learnt), ``forgetting`` (Chaudhry's max form), ``bwt`` and,
    when the initial row is set, ``fwt``.

    Example:
        >>> m = AccuracyMatrix(2)
        >>> m.set_row(0, [0.9, 0.1])
        >>> m.set_row(1, [0.5, 0.8])
        >>> curves = matrix_curves(m)
        >>> curves["avg_acc"], curves["acc_new"], curves["forgetting"], [round(v, 3) for v in curves["avg_inc_acc"]]
        ([0.9, 0.65], [0.9, 0.8], [0.0, 0.4], [0.9, 0.775])

    """
    full = matrix.as_tensor()
    initial = matrix.initial
    curves: dict[str, list[float]] = {}
    for k in range(matrix.rows_filled):
        block = full[: k + 1, : k + 1]
        values = functional.stream_metrics(block, initial[: k + 1] if initial is not None else None)
        values["acc_new"] = float(block[k, k])
        for key in ("avg_acc", "avg_inc_acc", "acc_new", "forgetting", "bwt", "fwt"):
            if key in values:
                curves.setdefault(key, []).append(values[key])
    return curves


def _img(png: bytes, element_id: str, css_class: str, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="{element_id}" class="{css_class}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and "±" in value)


def _html_table(element_id: str, css_class: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    head = f"<tr>{head}</tr>" if head else ""  # no header row for a key-value table
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{_number(c)}</td>' if _numeric(c) else f"<td>{_number(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f'<table id="{element_id}" class="{css_class}">{head}{body}</table>'


def _stream_facts(run: RunRecord) -> list[tuple[str, Any]]:
    cfg, summary = run.config, run.summary
    stream, model, strategy = cfg.get("stream", {}), cfg.get("model", {}), cfg.get("strategy", {})
    online = (stream.get("online") or {}).get("batch_size")
    train = cfg.get("train", {})
    scenario = summary.get("scenario") or stream.get("scenario", "?")  # the stream's own (audio-video streams too)
    size = run.matrix.n_experiences if run.matrix is not None else stream.get("n_experiences", "?")
    optim = {k: v for k, v in (cfg.get("optim") or {}).items() if not (k == "schedule" and not (v or {}).get("name"))}
    labelled = scenario != "audio_video"
    facts = [
        ("stream", f"{stream.get('dataset', '?')} · {scenario}"),
        ("experiences", f"{summary.get('experiences_evaluated', '?')} of {size} evaluated"),
        (
            "training",
            f"online, batches of {online}"
            if online
            else f"{train.get('epochs')} epoch(s), batch {train.get('batch_size')}",
        ),
        (
            "samples per class",
            f"train {stream.get('train_per_class') or 'all'}, test {stream.get('test_per_class') or 'all'}"
            if labelled
            else f"the dataset's own tasks {json.dumps(stream.get('params') or {})}",
        ),
        (
            "model",
            f"{model.get('backbone', '?')} + {model.get('head', '?')} head" if labelled else model.get("backbone"),
        ),
        ("strategy", f"{strategy.get('name', '?')} {json.dumps(strategy.get('params') or {})}"),
        ("optimizer", ", ".join(f"{k} {v}" for k, v in optim.items())),
        ("seed", str(cfg.get("seed", "?"))),
        ("status", summary.get("status", "?")),
        ("time", f"{summary.get('seconds', '?')} s, {summary.get('train_samples_per_second', '?')} train samples/s"),
    ]
    return facts


def _curves_png(series: dict[str, list[float]], x_labels: list[str], title: str, ylim: Any = (0.0, 1.0)) -> bytes:
    from lifelong.plots import curves_figure, figure_png

    return figure_png(curves_figure(series, x_labels, title=title, ylim=ylim))


def _run_section(run: RunRecord, prefix: str) -> str:
    parts = [f'<section class="run" id="{prefix}"><h2>{html.escape(run.name)}</h2>']
    parts.append(f'<div class="meta">{html.escape(str(run.path))}</div>')
    parts.append("<h3>Stream summary</h3>")
    parts.append(_html_table(f"{prefix}-stream-summary", "stream-summary", [], _stream_facts(run)))
    final = run.final_metrics()
    parts.append("<h3>Final metrics</h3>")
    parts.append(_html_table(f"{prefix}-metrics-table", "metrics-table", ["metric", "value"], sorted(final.items())))
    title = "Accuracy" if run.primary == ACCURACY else run.primary
    parts.append(f"<h3>{html.escape(title)} matrix</h3>")
    heatmap = run.figures.get(f"{matrix_file(run.primary)}.png")
    if heatmap is None and run.matrix is not None:
        from lifelong.plots import figure_png, heatmap_figure

        heatmap = figure_png(heatmap_figure(run.matrix, title=f"{title}: {run.name}"))
    if heatmap is not None:
        parts.append(_img(heatmap, f"{prefix}-accuracy-heatmap", "accuracy-heatmap", "accuracy matrix heatmap"))
    if run.matrix is not None and run.matrix.rows_filled:
        curves = matrix_curves(run.matrix)
        labels = [f"after {k}" for k in range(run.matrix.rows_filled)]
        parts.append("<h3>Metrics per experience</h3>")
        score = "accuracy" if run.primary == ACCURACY else run.primary
        plotted = {CURVE_NAMES[k].format(score=score): v for k, v in curves.items() if k in CURVE_NAMES}
        png = _curves_png(plotted, labels, f"Stream metrics of {score} after each experience")
        parts.append(_img(png, f"{prefix}-metric-curves", "metric-curves", "metric curves per experience"))
        rows = [[key, *values] for key, values in curves.items()]
        parts.append(_html_table(f"{prefix}-curves-table", "curves-table", ["metric", *labels], rows))
    if run.cka is not None:
        parts.append("<h3>Layer-wise CKA</h3>")
        if "cka.png" in run.figures:
            parts.append(_img(run.figures["cka.png"], f"{prefix}-cka-heatmap", "cka-heatmap", "layer-wise CKA heatmap"))
        parts.append(_html_table(f"{prefix}-cka-table", "cka-table", run.cka.header, _rows(run.cka)))
    if run.probe is not None:
        parts.append("<h3>Linear probe</h3>")
        if "linear_probe.png" in run.figures:
            png = run.figures["linear_probe.png"]
            parts.append(_img(png, f"{prefix}-linear-probe-curves", "linear-probe-curves", "linear probe curves"))
        parts.append(
            _html_table(f"{prefix}-linear-probe-table", "linear-probe-table", run.probe.header, _rows(run.probe))
        )
    others = [name for name in run.figures if name not in (*KNOWN_FIGURES, f"{matrix_file(run.primary)}.png")]
    if others:
        parts.append("<h3>Other figures</h3>")
        for i, name in enumerate(others):
            parts.append(f'<div class="meta">{html.escape(name)}</div>')
            parts.append(_img(run.figures[name], f"{prefix}-figure-{i}", "figure", name))
    parts.append("<h3>Config</h3>")
    parts.append(f'<pre id="{prefix}-config" class="config">{html.escape(run.config_text)}</pre>')
    parts.append("</section>")
    return "\n".join(parts)


def _rows(table: Table) -> list[list[Any]]:
    return [[label, *values] for label, values in table.rows]


def _resolved_params(path: Path, raw: dict[str, Any]) -> dict[str, str]:
    """The resolved params of a run's ``config.yaml``; a config this version cannot load is flattened as it is."""
    from lifelong import config as config_lib
    from lifelong.errors import ConfigError
    from lifelong.provenance import resolved_params

    try:
        return resolved_params(config_lib.load(path))
    except ConfigError:
        return config_lib.flatten_mapping(raw)


def _comparison(runs: list[RunRecord]) -> str:
    from lifelong.compare import RunRow, group_runs, mean_std
    from lifelong.digest import short_digest

    groups = group_runs([RunRow(run.name, run.params, run.final_metrics()) for run in runs])
    metrics = sorted({k for run in runs for k in run.final_metrics()})
    rows = [
        [group.label, short_digest(group.runs[0].params), str(len(group.runs)), group.seeds]
        + [mean_std(group.values(m), empty="–") for m in metrics]
        for group in groups
    ]
    parts = ['<section id="comparison"><h2>Comparison (mean ± std over the seeds of each config)</h2>']
    parts.append('<div class="wide">')
    header = ["setting", "config", "runs", "seeds", *metrics]
    parts.append(_html_table("summary-table", "summary-table", header, rows))
    parts.append("</div>")
    longest = max((r.matrix.rows_filled for r in runs if r.matrix is not None), default=0)
    if longest:
        series = {}
        for run in runs:
            if run.matrix is not None and run.matrix.rows_filled:
                values = matrix_curves(run.matrix)["avg_acc"]
                series[run.name] = values + [math.nan] * (longest - len(values))
        labels = [f"after {k}" for k in range(longest)]
        png = _curves_png(series, labels, "Accuracy on seen experiences, every run")
        parts.append(_img(png, "compare-curves", "compare-curves", "accuracy curves of every run"))
    parts.append("</section>")
    return "\n".join(parts)


def render_report(runs: list[RunRecord], title: str) -> str:
    """The HTML page for ``runs`` (one section per run; a comparison section when there are several)."""
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    body = [f'<h1 id="title">{html.escape(title)}</h1>']
    body.append(f'<div class="meta">{len(runs)} run(s) · generated {generated} by lifelong {__version__}</div>')
    if len(runs) > 1:
        body.append(_comparison(runs))
    sections = "\n".join(_run_section(run, f"run{i}") for i, run in enumerate(runs))
    body.append(f'<div class="runs" id="runs" style="--columns: {len(runs)}">{sections}</div>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(targets: str | Path | Sequence[str | Path], out_path: str | Path, title: str | None = None) -> Path:
    """Write one self-contained HTML report of the runs in ``targets``.

    Args:
        targets: a run folder, an experiment folder (its runs side by side), or several of them.
        out_path: the HTML file to write; parent folders are created.
        title: page title; default: the run's or experiment's folder name.

    Returns:
        The path written.

    Raises:
        DataError: a target is missing or holds no run folder.

    """
    items = _as_list(targets)
    runs = [load_run(run) for run in _run_dirs(items)]
    if title is None:
        title = " + ".join(Path(t).name for t in items) if len(items) > 1 else Path(items[0]).resolve().name
        title = f"lifelong report: {title}"
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(runs, title), encoding="utf-8")
    return out


def default_report_path(targets: str | Path | Sequence[str | Path]) -> Path:
    """Where the report goes by default: ``report.html`` inside the (first) target folder."""
    items = _as_list(targets)
    return Path(items[0]) / "report.html"


def log_report(
    targets: str | Path | Sequence[str | Path], out_path: str | Path | None = None, uri: str | None = None
) -> tuple[Path, list[str]]:
    """Write the report of ``targets`` and log it as an MLflow artifact of each tracked run in it.

    MLflow has no experiment-level artifacts, so an experiment's report goes to every run in it.

    Args:
        targets: a run or experiment folder, or several.
        out_path: the HTML file; default :func:`default_report_path`.
        uri: tracking URI; default: each run's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else
            the SQLite store of the run's output folder (``runs/mlflow.db`` for ``runs/<exp>/<run>``).

    Returns:
        The report's path and the ids of the runs it was logged to (runs without a run id, i.e.
        run with ``tracking.enabled=false``, are skipped).

    """
    from lifelong.tracking import client_for, resolve_uri

    out = write_report(targets, out_path if out_path is not None else default_report_path(targets))
    logged = []
    for run_dir in _run_dirs(targets):
        run = load_run(run_dir)
        run_id = run.summary.get("run_id")
        if not run_id:
            continue
        store = uri or (run.config.get("tracking") or {}).get("uri") or resolve_uri(None, run_dir.parent.parent)
        client_for(store).log_artifact(run_id, str(out))
        logged.append(run_id)
    return out, logged


def _as_list(targets: str | Path | Sequence[str | Path]) -> list[str | Path]:
    items = [targets] if isinstance(targets, str | Path) else list(targets)
    if not items:
        raise DataError("no run or experiment folder given")
    return items


def _run_dirs(targets: str | Path | Sequence[str | Path]) -> list[Path]:
    return list(dict.fromkeys(run for target in _as_list(targets) for run in find_runs(target)))
