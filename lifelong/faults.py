"""Crash points for testing what survives a hard kill (``LIFELONG_CRASH_AT=<point>[@<n>]``).

When the variable names a point, the process sends itself SIGKILL the n-th time (default: the
first) it reaches that point: no handler, no ``finally``, no flush runs, exactly as with the OOM
killer or a node that loses power. Unset (always, outside tests) a crash point costs one lookup.
Points: ``journal.synced`` (metrics fsynced, no checkpoint file written yet), ``checkpoint.files``
(a rank's files written), ``checkpoint.state`` (the generation complete, ``LATEST`` not switched)
and ``checkpoint.pointer`` (committed, older generations not yet removed, nothing sent to MLflow).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LIFELONG_CRASH_AT"
_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``LIFELONG_CRASH_AT`` names ``name`` and this is its n-th hit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
