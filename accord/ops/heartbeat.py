"""Heartbeats: each background process records that it is alive; `missing()` says which kinds have gone silent.

A process calls `Beat(kind, interval)` once and `beat()` from its loop; a beat writes at most once per interval,
and a database that is down for a while costs a skipped beat, never the process (the caller's own work decides
how to ride out the outage). A clean stop marks the row stopped, so only a process that died without saying so,
or hangs, is reported missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from .models import Heartbeat

log = logging.getLogger(__name__)

# How long a kind that has beaten is still expected after its last process went silent: a process that was
# deployed and is gone is news; one that stopped cleanly, or was last seen a day ago, is not.
REMEMBER = dt.timedelta(hours=24)


class Beat:
    """The heartbeat of one process."""

    def __init__(self, kind: str, interval: float = 10.0, detail: str = "") -> None:
        self.kind, self.interval, self.detail = kind, max(0.05, float(interval)), detail
        self.host, self.pid = socket.gethostname()[:255], os.getpid()
        self.started_at = timezone.now()
        self._last = float("-inf")

    def beat(self, detail: str | None = None, force: bool = False) -> bool:
        """Record that the process is alive (at most once per interval unless forced); False if it could not."""
        if detail is not None:
            self.detail = detail
        if not force and time.monotonic() - self._last < self.interval:
            return True
        try:
            Heartbeat.objects.update_or_create(
                kind=self.kind, host=self.host, pid=self.pid,
                defaults={"started_at": self.started_at, "beat_at": timezone.now(), "interval": self.interval,
                          "stopped_at": None, "detail": self.detail[:300]},
            )
        except DatabaseError as e:
            log.warning("heartbeat of %s not recorded: %s", self.kind, e)
            return False
        self._last = time.monotonic()
        return True

    def stop(self) -> None:
        """Mark this process stopped on purpose (a clean exit is not a missing process)."""
        try:
            Heartbeat.objects.filter(kind=self.kind, host=self.host, pid=self.pid).update(stopped_at=timezone.now())
        except DatabaseError as e:
            log.warning("heartbeat of %s not marked stopped: %s", self.kind, e)


@dataclass(frozen=True)
class Missing:
    kind: str
    last_seen: dt.datetime | None  # None: expected by configuration, never seen

    def __str__(self) -> str:
        if self.last_seen is None:
            return f"{self.kind}: never started"
        return f"{self.kind}: no heartbeat since {self.last_seen:%Y-%m-%d %H:%M:%S %Z}"


def missing(now: dt.datetime | None = None) -> list[Missing]:
    """The kinds of process that should be running and are not.

    Expected are the kinds in `settings.ACCORD_EXPECTED_PROCESSES` and every kind that beat within the last day
    without stopping cleanly. A kind is missing when none of its processes has beaten within three of its
    intervals.
    """
    now = now or timezone.now()
    rows = list(Heartbeat.objects.filter(beat_at__gte=now - REMEMBER))
    alive = {r.kind for r in rows if r.stopped_at is None and r.stale_at() >= now}
    expected = set(getattr(settings, "ACCORD_EXPECTED_PROCESSES", ()))
    expected |= {r.kind for r in rows if r.stopped_at is None}
    last: dict[str, dt.datetime] = {}
    for r in rows:
        last[r.kind] = max(last.get(r.kind, r.beat_at), r.beat_at)
    return [Missing(kind, last.get(kind)) for kind in sorted(expected - alive)]
