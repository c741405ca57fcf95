"""Console output through Python ``logging``: the ``lifelong`` logger, ``-v``/``-q``, and third-party noise.

Messages of the suite go to the ``lifelong`` logger (``lifelong.logs.LOG`` or a child): information on stdout,
one line each and flushed (so a run written to a pipe or a file can be watched), warnings and errors on stderr
with a ``warning:``/``error:`` prefix. :func:`setup` installs the handlers and silences what other packages
print on every run (MLflow's table-creation lines, alembic's migrations, qpsolvers' "no QP solver" warning
pulled in by Avalanche); ``-v`` lets them through. Lightning's banners are silenced where a Trainer is built
(``lifelong.build.quiet_lightning``): Lightning resets its loggers when it is imported.
"""

from __future__ import annotations

import logging
import sys
import warnings

LOG = logging.getLogger("lifelong")
QUIET, NORMAL, VERBOSE = -1, 0, 1
# Loggers of other packages that print INFO lines on every run; shown again with -v.
NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.sql", "alembic", "alembic.runtime.migration")
# Warnings raised on import by packages the suite imports, which the user cannot act on.
NOISY_WARNINGS = ((r"no QP solver found", "qpsolvers"),)


class _Below(logging.Filter):
    """Pass records below ``level`` (information on stdout; warnings go to stderr)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _Prefixed(logging.Formatter):
    """``warning: message`` (the level in lower case, as the command's other messages)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class _Console(logging.StreamHandler):
    """A handler writing to ``sys.stdout`` or ``sys.stderr`` as they are when a record is written (not when set up)."""

    def __init__(self, name: str) -> None:
        self.stream_name = name
        super().__init__()
        self.set_name("lifelong")

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - StreamHandler.__init__ assigns it; the property decides
        pass


def _handler(name: str, level: int, formatter: logging.Formatter, below: int | None = None) -> logging.Handler:
    handler = _Console(name)
    handler.setLevel(level)
    handler.setFormatter(formatter)
    if below is not None:
        handler.addFilter(_Below(below))
    return handler


def setup(verbosity: int = NORMAL) -> None:
    """Install the console handlers of the ``lifelong`` logger and silence third-party noise (unless verbose).

    Args:
        verbosity: ``QUIET`` (warnings and errors only), ``NORMAL`` or ``VERBOSE`` (debug lines, and the
            other packages' messages that are silenced otherwise).

    """
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and not stream.line_buffering:
            stream.reconfigure(line_buffering=True)  # lines appear as they are written, also in a pipe or file
    for old in [h for h in LOG.handlers if h.get_name() == "lifelong"]:
        LOG.removeHandler(old)
    LOG.addHandler(_handler("stdout", logging.DEBUG, logging.Formatter(), below=logging.WARNING))
    LOG.addHandler(_handler("stderr", logging.WARNING, _Prefixed()))
    LOG.setLevel({QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG))
    LOG.propagate = False
    if verbosity < VERBOSE:
        silence_third_party()


def ensure_console() -> None:
    """Install the handlers unless the application configured the ``lifelong`` logger (or the root) itself."""
    if not LOG.handlers and not logging.getLogger().handlers:
        setup(NORMAL)


def silence_third_party() -> None:
    """Raise the level of the noisy loggers to WARNING and ignore the import-time warnings of NOISY_WARNINGS."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, module in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
