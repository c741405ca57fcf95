"""The HTML run report: built from a real run's folder, self-contained, and rendered by headless Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.errors import DataError
from lifelong.metrics import AccuracyMatrix
from lifelong.plots import curves_figure, figure_png
from lifelong.report import log_report, matrix_curves, write_report
from lifelong.run import run
from lifelong.tracking import MlflowTracker

CHROMIUM = Path("/usr/bin/chromium")
RUN_SECTIONS = [
    "stream-summary",
    "metrics-table",
    "accuracy-heatmap",
    "metric-curves",
    "curves-table",
    "cka-heatmap",
    "cka-table",
    "linear-probe-curves",
    "linear-probe-table",
    "config",
]


class Elements(HTMLParser):
    """Every element's id, every img's src and every external reference of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}  # id -> tag
        self.images: dict[str, str] = {}  # img id -> src
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = tag
        if tag == "img":
            self.images[attrs.get("id", "")] = attrs.get("src", "")
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag in ("script", "link"):
            self.external.append(tag)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real (small) run: the quickstart (5 experiences) for 1 epoch, with both analyses enabled."""
    out = tmp_path_factory.mktemp("runs")
    overrides = [
        f"output_dir={out}",
        "tracking.enabled=false",
        "train.epochs=1",
        "analysis.cka={probe_size: 100, batch_size: 50}",
        "analysis.linear_probe={train_per_class: 20, max_iter: 30}",
    ]
    return run(config.load("experiments/quickstart.yaml", overrides), quiet=True).run_dir


def test_run_report_holds_every_section_inline(run_dir, tmp_path):
    page = write_report(run_dir, tmp_path / "report.html")
    elements = Elements(page.read_text())
    assert {f"run0-{name}" for name in RUN_SECTIONS} <= set(elements.ids)
    assert elements.ids["run0-config"] == "pre"
    assert elements.external == []  # self-contained: no external file, script or style sheet
    for element_id in ("accuracy-heatmap", "metric-curves", "cka-heatmap", "linear-probe-curves"):
        src = elements.images[f"run0-{element_id}"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # the inlined heatmap is the run's own file
    assert (
        base64.b64decode(elements.images["run0-accuracy-heatmap"].split(",", 1)[1])
        == (run_dir / "accuracy_matrix.png").read_bytes()
    )
    # curves from the matrix end at the run's final metrics
    summary = json.loads((run_dir / "summary.json").read_text())
    curves = {row[0]: row[1:] for row in elements.tables["run0-curves-table"][1:]}
    assert float(curves["avg_acc"][-1]) == pytest.approx(summary["metrics"]["avg_acc"], abs=1e-4)
    assert len(curves["avg_acc"]) == 5
    metrics = dict(elements.tables["run0-metrics-table"][1:])
    assert {"avg_acc", "cka/backbone.net.2", "linear_probe/acc_first", "linear_probe/acc_later"} <= set(metrics)
    assert "name: quickstart" in page.read_text()


def test_cli_report_writes_the_page_beside_the_run(run_dir, capsys):
    from lifelong.cli import main

    assert main(["report", str(run_dir)]) == 0
    page = run_dir / "report.html"
    assert page.as_uri() in capsys.readouterr().out
    assert "run0-accuracy-heatmap" in page.read_text()
    assert main(["report", str(run_dir / "no-such-run")]) == 2  # a DataError, printed without a traceback


def test_matrix_curves_by_hand():
    matrix = AccuracyMatrix(3)
    matrix.set_initial([0.1, 0.2, 0.0])
    matrix.set_row(0, [0.8, 0.3, 0.1])
    matrix.set_row(1, [0.6, 0.9, 0.2])
    curves = matrix_curves(matrix)
    assert curves["avg_acc"] == pytest.approx([0.8, 0.75])
    assert curves["acc_new"] == pytest.approx([0.8, 0.9])
    assert curves["forgetting"] == pytest.approx([0.0, 0.2])
    assert curves["bwt"] == pytest.approx([0.0, -0.2])
    assert curves["fwt"][1] == pytest.approx(0.3 - 0.2)  # R[0, 1] - b_1


def test_curves_figure_draws_every_curve_and_checks_lengths():
    fig = curves_figure({"a": [0.1, 0.5, float("nan")], "b": [0.2, 0.3, 0.4]}, ["init", "after 0", "after 1"])
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["init", "after 0", "after 1"]
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="curve 'a' has 2 values for 3 x labels"):
        curves_figure({"a": [0.1, 0.2]}, ["init", "after 0", "after 1"])


def copy_run(source: Path, target: Path, name: str, avg_acc: float, overrides: list[str] | None = None) -> Path:
    """A copy of a run folder with another name, final accuracy and (with ``overrides``) config."""
    shutil.copytree(source, target)
    summary = json.loads((target / "summary.json").read_text())
    summary["run_name"] = name
    summary["metrics"]["avg_acc"] = avg_acc
    (target / "summary.json").write_text(json.dumps(summary))
    if overrides:
        cfg = config.load(target / "config.yaml", overrides)
        (target / "config.yaml").write_text(config.to_yaml(cfg))
    return target


def test_experiment_report_groups_runs_by_config_with_mean_and_std(run_dir, tmp_path):
    experiment = tmp_path / "quickstart"
    copy_run(run_dir, experiment / "a", "er-digits-s0", 0.5)
    copy_run(run_dir, experiment / "b", "er-digits-s1", 0.7, ["seed=1", "output_dir=elsewhere"])
    copy_run(run_dir, experiment / "c", "er-digits-s0-again", 0.3, ["strategy.params.memory_size=10"])
    copy_run(run_dir, experiment / "d", "finetune-digits-s0", 0.2, ["strategy.name=finetune"])
    (experiment / "d" / "cka.csv").unlink()
    (experiment / "d" / "cka.png").unlink()
    elements = Elements(write_report(experiment, tmp_path / "experiment.html").read_text())
    assert {"run0", "run1", "run3", "summary-table", "compare-curves"} <= set(elements.ids)
    assert "run3-cka-heatmap" not in elements.ids
    assert "run3-linear-probe-curves" in elements.ids
    table = elements.tables["summary-table"]
    rows = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    # two memory sizes: two rows, each naming the key in which the settings differ
    assert set(rows) == {"er (memory_size=200)", "er (memory_size=10)", "finetune"}
    assert rows["er (memory_size=200)"]["runs"] == "2"
    assert rows["er (memory_size=200)"]["seeds"] == "0,1"
    assert rows["er (memory_size=200)"]["avg_acc"] == "0.6000 ± 0.1414"  # mean and sample std of 0.5, 0.7
    assert rows["er (memory_size=10)"]["avg_acc"] == "0.3000 ± 0.0000"
    assert rows["finetune"]["avg_acc"] == "0.2000 ± 0.0000"
    assert rows["er (memory_size=10)"]["config"] != rows["er (memory_size=200)"]["config"]


def test_missing_target_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        write_report(tmp_path / "nope", tmp_path / "r.html")
    with pytest.raises(DataError, match="holds no run folder"):
        write_report(tmp_path, tmp_path / "r.html")


def test_log_report_attaches_it_to_the_mlflow_run(run_dir, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri, "quickstart", "er-digits-s0")
    run_id = tracker.start({}, {})
    tracker.end()
    tracked = shutil.copytree(run_dir, tmp_path / "quickstart" / "tracked")
    summary = json.loads((tracked / "summary.json").read_text())
    (tracked / "summary.json").write_text(json.dumps({**summary, "run_id": run_id}))
    page, logged = log_report(tracked, uri=uri)
    assert page == tracked / "report.html"
    assert logged == [run_id]
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id)] == ["report.html"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    page = write_report(run_dir, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    # one browser start: the screenshot, and the DOM as the browser parsed it on stdout
    dom = chromium(f"--screenshot={shot}", "--dump-dom", "--window-size=1000,2400", page.resolve().as_uri()).stdout
    image = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    assert image.shape[:2] == (2400, 1000)
    # The page's own style is greyscale; coloured pixels can only come from the decoded plots.
    colourful = (image.max(axis=2) - image.min(axis=2)) > 0.2
    assert colourful.mean() > 0.02, "no plot was drawn"
    rgb = (image * 255).astype(np.int64)
    assert np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).size > 100  # distinct colours
    parsed = Elements(dom)
    assert {f"run0-{name}" for name in RUN_SECTIONS} <= set(parsed.ids)
    assert all(parsed.images[f"run0-{i}"].startswith("data:image/png") for i in ("accuracy-heatmap", "cka-heatmap"))
