"""A live progress bar for an interactive terminal: experience i/T, step, loss, samples/s and ETA.

The bar is one line rewritten in place (carriage return) on stdout while an experience trains, and erased before
the run's own lines are written. It is shown only when stdout is a terminal: output written to a pipe or
a file keeps the plain per-experience lines (:func:`wanted`).
"""

from __future__ import annotations

import math
import os
import sys
import time

ERASE = "\r\x1b[K"


def wanted() -> bool:
    """Whether stdout is an interactive terminal that can redraw a line."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an ETA."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LiveBar:
    """The bar of the experience being trained; :meth:`on_fit_start` starts one, :meth:`clear` erases it.

    Args:
        width: characters of the bar itself.
        interval: least seconds between two redraws.

    """

    def __init__(self, width: int = 20, interval: float = 0.1) -> None:
        self.width = width
        self.interval = interval
        self.experience, self.n_experiences, self.steps = 0, 0, 0
        self.batch_size: int | None = None
        self.step, self.loss, self.started, self.drawn_at = 0, math.nan, 0.0, 0.0
        self.visible = False
        self.label: str | None = None  # names the fit instead of "exp i/T" (the init stage before the stream)

    def on_fit_start(self, experience: int, n_experiences: int, steps: int, batch_size: int | None) -> None:
        """A fit begins: ``steps`` optimizer steps of ``batch_size`` samples on experience ``experience``."""
        self.experience, self.n_experiences, self.steps, self.batch_size = experience, n_experiences, steps, batch_size
        self.step, self.started, self.drawn_at = 0, time.monotonic(), 0.0
        self.draw()

    def on_step(self) -> None:
        """One optimizer step done; redrawn at most every ``interval`` seconds (and at the last step)."""
        self.step += 1
        now = time.monotonic()
        if now - self.drawn_at >= self.interval or self.step == self.steps:
            self.draw(now)

    def on_loss(self, loss: float) -> None:
        self.loss = loss

    def render(self, now: float) -> str:
        """The bar's text at time ``now``."""
        where = self.label or f"exp {self.experience + 1}/{self.n_experiences}"
        fraction = self.step / self.steps if self.steps else 0.0
        filled = int(fraction * self.width)
        parts = [f"{where} [{'#' * filled}{'.' * (self.width - filled)}] step {self.step}/{self.steps}"]
        if not math.isnan(self.loss):
            parts.append(f"loss {self.loss:.3f}")
        elapsed = now - self.started
        if self.step and elapsed > 0:
            per_second = self.step / elapsed
            rate = per_second * self.batch_size if self.batch_size else per_second
            parts.append(f"{rate:.0f} {'samples' if self.batch_size else 'steps'}/s")
            parts.append(f"ETA {clock((self.steps - self.step) / per_second)}")
        return " | ".join(parts)

    def draw(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        sys.stdout.write(ERASE + self.render(now))
        sys.stdout.flush()
        self.drawn_at, self.visible = now, True

    def clear(self) -> None:
        """Erase the bar (before a line of the run is written)."""
        if self.visible:
            sys.stdout.write(ERASE)
            sys.stdout.flush()
            self.visible = False
