"""SIGINT/SIGTERM as a request to stop at the next training step, so a killed run ends cleanly.

Python turns SIGINT into a ``KeyboardInterrupt`` wherever the main thread happens to be, and
Lightning turns that into ``sys.exit(1)`` in the middle of ``fit``; its SIGTERM handler does the
same one step later. Instead, :class:`StopRequest` only records the signal; the module checks it
after every optimizer step (agreeing across DDP ranks) and raises
:class:`~lifelong.errors.RunInterrupted`, the run is marked KILLED and stays resumable from its
last checkpoint. A second signal stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

from lifelong.errors import RunInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Records SIGINT/SIGTERM while installed (a context manager); ``requested`` says whether one came."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signum is not None

    def agree(self, reduce_max: Callable[[int], int]) -> bool:
        """Whether any process was asked to stop, taking the signal it got (``reduce_max``: max over the ranks).

        Every rank then reports the signal that was really sent (SIGTERM to rank 1 is SIGTERM on rank 0 too).
        """
        signum = int(reduce_max(self.signum or 0))
        if signum and self.signum is None:
            self.signum = signum
        return bool(signum)

    def interrupted(self) -> RunInterrupted:
        """The exception that ends the run (exit status 128 + the signal number)."""
        signum = self.signum if self.signum is not None else signal.SIGINT
        return RunInterrupted(signal.Signals(signum).name, 128 + int(signum))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nreceived {signal.Signals(signum).name}: stopping after the current step; the run stays resumable "
            "from its last checkpoint (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (only possible in the main thread; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if signum not in self._previous:
                self._previous[signum] = current
            signal.signal(signum, self._handle)

    def arm(self) -> None:
        """Re-install the handlers if something replaced them (Lightning installs its own SIGTERM handler per fit)."""
        if self._previous:
            self.install()

    def restore(self) -> None:
        """Put back the handlers that were there before ``install``."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Hold off SIGINT and SIGTERM while the stopped run's records are written (a second or two).

        A signal then would leave the summary, the plots and the MLflow status half-written; it is reported
        and ignored instead.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            signal.signal(signum, _hold)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def __enter__(self) -> StopRequest:
        self.install()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.restore()


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: the run has stopped and its records are written; the process only exits.

    Without it a signal sent while the process exits (e.g. a second Ctrl+C that lands after the first one has
    already stopped the run) would end it by the signal instead of with the documented exit status.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def _hold(signum: int, frame: FrameType | None) -> None:
    print(
        f"\nreceived {signal.Signals(signum).name} while the run's records are written: it ends in a moment",
        file=sys.stderr,
        flush=True,
    )
