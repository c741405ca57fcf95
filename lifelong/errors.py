"""Errors raised on bad user input.

A leaf module: every layer may raise these without importing the config layer.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key, the value and what is allowed."""


class DataError(RuntimeError):
    """A dataset is missing or unreadable; the message names the file and how to get it."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the experience and step."""


class TrackingError(RuntimeError):
    """The tracking server cannot be used; the message names the URI and how to fix it."""


class RunInterrupted(Exception):
    """A run stopped early on SIGINT or SIGTERM; it can be resumed from its last checkpoint.

    Deliberately not a ``KeyboardInterrupt``: Lightning turns those into ``sys.exit(1)`` mid-fit.

    Attributes:
        signal_name: ``SIGINT`` or ``SIGTERM`` (or a description of what stopped the run).
        exit_code: the conventional shell exit status, 128 + the signal number.

    """

    def __init__(self, signal_name: str = "SIGINT", exit_code: int = 130) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = exit_code


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest allowed name, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(key: str, value: object, allowed: Iterable[str]) -> ConfigError:
    """Build the error for ``key=value`` when ``value`` is not one of ``allowed``."""
    allowed = sorted(allowed)
    return ConfigError(
        f"{key}={value!r} is not allowed{did_you_mean(str(value), allowed)}; choose one of: {', '.join(allowed)}"
    )


def check_required_head(strategy_name: str, required: str | None, head_name: str) -> None:
    """Raise ``ConfigError`` when the strategy needs ``model.head=required`` and the config sets ``head_name``."""
    if required is not None and head_name != required:
        raise ConfigError(
            f"strategy.name={strategy_name!r} needs model.head={required!r}; got {head_name!r} "
            f"(set model.head={required})"
        )
