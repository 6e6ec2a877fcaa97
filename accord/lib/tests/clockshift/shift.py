"""Start a moved clock (time-machine, ticking) from a shift such as '200d', '-3h' or '90m'; `watch` moves it again
while the process runs, each time a file's shift changes (a host whose wall clock jumps, for the fault tests).

time-machine moves the wall clock (time.time(), datetime.now()) only: time.monotonic() goes on as before, as it
does on a host whose clock is stepped."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_travel: Any = None
_coordinates: Any = None


def parse(text: str) -> dt.timedelta:
    """'200d' -> 200 days; a sign may lead ('-3h'); units s, m, h, d, w."""
    match = re.fullmatch(r"\s*([+-]?\d+)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"ACCORD_TEST_CLOCK_SHIFT={text!r}: expected a whole number and a unit, e.g. 200d or -3h")
    return dt.timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def start(text: str) -> dt.datetime:
    """Move this process's wall clock by the shift, ticking from there; returns the moved instant."""
    global _travel, _coordinates
    import time_machine

    if _travel is not None:
        _travel.stop()
    destination = dt.datetime.now(dt.UTC) + parse(text)
    _travel = time_machine.travel(destination, tick=True)
    _coordinates = _travel.start()
    return destination


_applied = dt.timedelta(0)  # the shift `watch` has applied so far (a forked child starts from its parent's)


def watch(path: str, every: float = 0.02) -> None:
    """Move this process's clock, from a thread, whenever the file at `path` holds a new shift (e.g. '-1h'):
    the clock is then that far from where `start` put it. An absent or empty file is no shift. A forked child
    (the gateway's workers) starts a thread of its own, as a fork copies no thread."""
    import os
    import threading
    import time

    def follow() -> None:
        global _applied
        while True:
            try:
                text = open(path).read().strip()  # noqa: SIM115 - read whole, closed by refcount
            except OSError:
                text = ""
            wanted = parse(text) if text else dt.timedelta(0)
            if wanted != _applied:
                _coordinates.shift(wanted - _applied)  # one step, as a stepped host clock moves
                _applied = wanted
            time.sleep(every)

    def begin() -> None:
        threading.Thread(target=follow, name="clock-watch", daemon=True).start()

    begin()
    os.register_at_fork(after_in_child=begin)
