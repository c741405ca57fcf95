"""The loop listener of ``lifelong run``: prints progress, forwards metrics to MLflow, writes analysis artifacts.

On an interactive terminal it also holds the live bar (``lifelong.progress``) that the module draws while training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifelong.analysis import Analysis
from lifelong.data.types import Experience
from lifelong.logs import LOG
from lifelong.metrics.score_matrices import ScoreMatrices, metric_name
from lifelong.progress import LiveBar
from lifelong.tracking import MlflowTracker


class RunListener:
    """Prints progress and forwards metrics to the tracker."""

    def __init__(
        self,
        tracker: MlflowTracker | None,
        quiet: bool = False,
        run_dir: Path | None = None,
        analyses: dict[str, Analysis] | None = None,
        on_model: Callable[[int], object] | None = None,
        bar: LiveBar | None = None,
    ) -> None:
        self.tracker = tracker
        self.on_model = on_model  # logs the model after an experience (lifelong.model_io.ModelLogger)
        self.quiet = quiet
        self.run_dir = run_dir
        self.analyses = analyses or {}
        self.train_seconds = 0.0
        self.train_samples = 0
        self.last_loss = float("nan")
        self.matrix: ScoreMatrices | None = None
        self.global_step = 0
        self._line = ""
        self.bar = bar  # the live bar of an interactive terminal (the module draws it), erased before each line

    def on_train_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.last_loss = metrics.get("train/loss", self.last_loss)
        self.global_step = step
        if self.bar is not None:
            self.bar.on_loss(self.last_loss)
        if self.tracker:
            self.tracker.log_metrics(metrics, step)

    def _say(self, line: str) -> None:
        """Write a line of the run (after erasing the live bar)."""
        if self.bar is not None:
            self.bar.clear()
        LOG.info(line)

    def on_experience_end(self, experience: Experience, seconds: float, samples: int) -> None:
        self.train_seconds += seconds
        self.train_samples += samples
        self._line = (
            f"exp {experience.index}: classes {experience.classes} | {samples} samples in {seconds:.1f}s "
            f"({samples / max(seconds, 1e-9):.0f}/s) | loss {self.last_loss:.3f}"
        )

    def on_evaluated(self, after: int, scores: dict[str, list[float]], matrices: ScoreMatrices) -> None:
        """Log ``eval/<score>/exp<j>`` (``eval/init_<score>/exp<j>`` before training) and ``stream/*`` at ``after``."""
        self.matrix = matrices
        metrics = matrices.metrics_so_far() if after >= 0 else {}
        if self.tracker:
            prefix = "eval/init_" if after < 0 else "eval/"
            values = {f"{prefix}{name}/exp{j}": v for name, row in scores.items() for j, v in enumerate(row)}
            values.update({f"stream/{k}": v for k, v in metrics.items()})
            self.tracker.log_metrics(values, max(after, 0))
        if self.on_model is not None and after >= 0:
            self.on_model(after)
        if not self.quiet and after >= 0:
            primary = matrices.names[0]
            seen = scores[primary][: after + 1]
            average = metric_name(primary, "avg_acc")
            self._say(
                f"{self._line} | {primary} on seen {sum(seen) / len(seen):.3f} | {average} {metrics[average]:.3f}"
            )

    def on_analysis(self, after: int, metrics: dict[str, float]) -> None:
        if self.tracker and metrics:
            self.tracker.log_metrics(metrics, max(after, 0))
        if self.run_dir is not None:
            for analysis in self.analyses.values():
                analysis.write_artifacts(self.run_dir)
        if not self.quiet and metrics and after >= 0:
            self._say("  " + " | ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))

    def on_resumed(self, completed: int, matrices: ScoreMatrices, steps: int | None = None) -> None:
        """``steps``: the run resumes inside experience ``completed + 1``, after that many of its steps."""
        self.matrix = matrices
        if not self.quiet:
            inside = f", inside experience {completed + 1} after {steps} of its steps" if steps else ""
            self._say(f"resumed after experience {completed}{inside} (global step {self.global_step})")

    def state_dict(self) -> dict[str, Any]:
        """The counters a resumed run continues from."""
        loss = self.last_loss if math.isfinite(self.last_loss) else None
        return {
            "train_seconds": self.train_seconds,
            "train_samples": self.train_samples,
            "last_loss": loss,
            "global_step": self.global_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds = float(state["train_seconds"])
        self.train_samples = int(state["train_samples"])
        self.last_loss = float("nan") if state["last_loss"] is None else float(state["last_loss"])
        self.global_step = int(state.get("global_step", 0))
