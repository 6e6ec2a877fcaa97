"""What Accord's own processes say about themselves: a heartbeat row per running process."""

from __future__ import annotations

import datetime as dt

from django.db import models


class Heartbeat(models.Model):
    """One background process (the SLA worker, the governor, a gateway, the mail poller) saying it is alive.

    A row per process (kind, host, pid), written every `interval` seconds while it runs and marked stopped when
    it ends cleanly. A process that was killed leaves its row behind: its last beat grows old, and that is how a
    missing process is told from one that stopped on purpose.
    """

    kind = models.CharField(max_length=40)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    interval = models.FloatField(help_text="seconds between beats; the process is missing after three missed beats")
    stopped_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "host", "pid"], name="ops_heartbeat_once")]
        ordering = ["kind", "host", "pid"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.host} (pid {self.pid})"

    def stale_at(self) -> dt.datetime:
        """The instant after which this process counts as missing: three beats late."""
        return self.beat_at + dt.timedelta(seconds=3 * self.interval)
