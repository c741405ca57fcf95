"""An MLflow logger for Avalanche's EvaluationPlugin, with lifelong's metric names (DESIGN §6).

Avalanche ships loggers for text, CSV, TensorBoard and W&B, but none for MLflow. ``MlflowLogger``
receives the EvaluationPlugin's metric values and logs them so that a run driven by Avalanche
looks like a ``lifelong run`` in the MLflow UI:

==================================================  ====================================  ==================
Avalanche metric                                    MLflow metric                         step
==================================================  ====================================  ==================
``Top1_Acc_Exp/eval_phase/<stream>/TaskT/ExpJ``     ``eval/acc/exp<J>``                   experience index i
  (before the first experience is trained)          ``eval/init_acc/exp<J>``              0
``Loss_Exp/eval_phase/<stream>/TaskT/ExpJ``         ``eval/loss/exp<J>``                  i
``Top1_Acc_Stream/eval_phase/<stream>/...``         ``eval/acc_stream``                   i
``StreamForgetting/eval_phase/<stream>``            ``eval/forgetting_avalanche``         i
``Loss_MB/train_phase/...``, ``Top1_Acc_MB/...``    ``train/loss``, ``train/acc``         training iteration
``Loss_Epoch/...``, ``Top1_Acc_Epoch/...``          ``train/loss_epoch``, ``train/acc_epoch``  training iteration
anything else (scalar)                              ``avalanche/<its name>``              Avalanche's x
==================================================  ====================================  ==================

When every evaluation covers the whole test stream, the logger also fills an accuracy matrix
from the per-experience accuracies and logs lifelong's ``stream/*`` metrics (average accuracy,
forgetting, BWT, FWT, ...; ``lifelong.metrics.stream_metrics``) at step i, and ``close`` writes the
matrix as ``accuracy_matrix.csv`` + ``.png`` artifacts. Enable ``accuracy_metrics(experience=True)``
in the EvaluationPlugin for that.

Create the logger on rank 0 only (Avalanche's rule for every logger): its base class raises on
other ranks.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

from avalanche.logging import BaseLogger

from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.tracking import MlflowTracker, resolve_uri

__all__ = ["MlflowLogger", "lifelong_metric_name"]

_EXPERIENCE = re.compile(r"/Exp(\d+)$")
_TRAIN_NAMES = {
    "Loss_MB": "train/loss",
    "Top1_Acc_MB": "train/acc",
    "Loss_Epoch": "train/loss_epoch",
    "Top1_Acc_Epoch": "train/acc_epoch",
}
_EVAL_STREAM_NAMES = {"Top1_Acc_Stream": "eval/acc_stream", "StreamForgetting": "eval/forgetting_avalanche"}


def lifelong_metric_name(name: str, initial: bool = False) -> tuple[str, bool]:
    """Map an Avalanche metric name to lifelong's; returns (name, whether it is indexed by experience).

    >>> lifelong_metric_name("Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp002")
    ('eval/acc/exp2', True)
    >>> lifelong_metric_name("Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp002", initial=True)
    ('eval/init_acc/exp2', True)
    >>> lifelong_metric_name("Loss_MB/train_phase/train_stream/Task000")
    ('train/loss', False)
    >>> lifelong_metric_name("CPUUsage_Epoch/train_phase/train_stream/Task000")
    ('avalanche/CPUUsage_Epoch/train_phase/train_stream/Task000', False)
    """
    base = name.split("/", 1)[0]
    experience = _EXPERIENCE.search(name)
    if "/eval_phase/" in name and experience and base in ("Top1_Acc_Exp", "Loss_Exp"):
        kind = "acc" if base == "Top1_Acc_Exp" else "loss"
        prefix = f"eval/init_{kind}" if initial else f"eval/{kind}"
        return f"{prefix}/exp{int(experience.group(1))}", True
    if "/eval_phase/" in name and base in _EVAL_STREAM_NAMES:
        return _EVAL_STREAM_NAMES[base], True
    if "/train_phase/" in name and base in _TRAIN_NAMES:
        return _TRAIN_NAMES[base], False
    return "avalanche/" + re.sub(r"[^\w\-./ ]", "_", name), False


class MlflowLogger(BaseLogger):
    """Log an Avalanche run to MLflow with lifelong's names (see the module docstring).

    Args:
        experiment: the MLflow experiment.
        run_name: the run's name, e.g. ``<strategy>-<benchmark>-s<seed>``.
        uri: the tracking URI; default ``sqlite:///<cwd>/runs/mlflow.db`` (or ``MLFLOW_TRACKING_URI``).
        params: logged as the run's parameters (e.g. the strategy's settings).
        tags: extra run tags.

    """

    def __init__(
        self,
        experiment: str,
        run_name: str,
        uri: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        uri = resolve_uri(uri)
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts" if uri.startswith("sqlite:///") else None
        self.tracker = MlflowTracker(uri, experiment, run_name, artifact_root=artifacts)
        self.run_id = self.tracker.start(
            {k: str(v) for k, v in (params or {}).items()}, {"driver": "avalanche", **(tags or {})}
        )
        self.after = -1  # the last trained experience when an evaluation starts
        self.matrix: AccuracyMatrix | None = None
        self._row: dict[int, float] = {}
        self._closed = False

    # ------------------------------------------------------------- Avalanche's logger API
    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(float(value)):
            return  # images, tensors, histograms: not MLflow metrics
        mapped, per_experience = lifelong_metric_name(name, initial=self.after < 0)
        step = max(self.after, 0) if per_experience else int(x_plot)
        self.tracker.log_metrics({mapped: float(value)}, step)
        if mapped.startswith(("eval/acc/exp", "eval/init_acc/exp")):
            self._row[int(mapped.rsplit("exp", 1)[1])] = float(value)

    def before_eval(self, strategy: Any, metric_values: Any) -> None:
        self.after = int(strategy.clock.train_exp_counter) - 1
        self._row = {}

    def after_eval(self, strategy: Any, metric_values: Any) -> None:
        """Fill the accuracy matrix and log lifelong's stream metrics when the whole stream was evaluated."""
        n = len(self._row)
        if n == 0 or sorted(self._row) != list(range(n)):
            return
        if self.matrix is None or self.matrix.n_experiences != n:
            self.matrix = AccuracyMatrix(n)
        accuracies = [self._row[j] for j in range(n)]
        if self.after < 0:
            self.matrix.set_initial(accuracies)
        elif self.after < n:
            self.matrix.set_row(self.after, accuracies)
            metrics = self.matrix.metrics_so_far()
            self.tracker.log_metrics({f"stream/{k}": v for k, v in metrics.items()}, self.after)
        self.tracker.flush()

    def close(self, status: str = "FINISHED") -> None:
        """Write the accuracy matrix artifacts (when there is one) and end the MLflow run."""
        if self._closed:
            return
        self._closed = True
        if self.matrix is not None and self.matrix.rows_filled:
            from lifelong.plots import matrix_heatmap

            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                self.matrix.to_csv(folder / "accuracy_matrix.csv")
                matrix_heatmap(self.matrix, folder / "accuracy_matrix.png", title="Accuracy (Avalanche driver)")
                for path in sorted(folder.iterdir()):
                    self.tracker.log_artifact(path)
        self.tracker.end(status)
