"""Fault points: named places where a test can make a process die as `kill -9` would, at an exact instant.

A random SIGKILL finds a missing transaction only when it lands in a window of a few milliseconds; a fault point
lands there every time. `point("governor.switch")` does nothing unless the process was started with that name in
ACCORD_FAULTS (comma-separated), in which case the process ends at once with exit status 137, without unwinding,
committing or flushing anything, like a SIGKILL (FreeBSD's fail(9) and TiKV's fail-rs do the same for their tests).
The set is read once at import: a point costs one set lookup.
"""

from __future__ import annotations

import os

ACTIVE = frozenset(n.strip() for n in os.environ.get("ACCORD_FAULTS", "").split(",") if n.strip())
KILLED = 137  # the exit status of a process killed by SIGKILL, as a shell reports it


def point(name: str) -> None:
    """Die here, at once, if a test asked for this fault."""
    if name in ACTIVE:
        os._exit(KILLED)
