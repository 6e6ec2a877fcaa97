"""What `accord doctor` and `/healthz/details` ask of the gateway: its measurements reach the database.

Registered with `accord.ops.checks` from `GatewayConfig.ready()`: ops sits below the gateway and never imports it.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from accord.ops.checks import OK, ROLLUPS_STALE_MINUTES, WARN, Finding, register


@register
def rollups() -> list[Finding]:
    """The gateway's measurements reach the database: the newest rollup is recent while a gateway runs."""
    from accord.ops.models import Heartbeat

    from .models import Rollup

    now = timezone.now()
    gateways = [r for r in Heartbeat.objects.filter(kind="gateway", stopped_at=None) if r.stale_at() >= now]
    newest = Rollup.objects.order_by("-updated_at").values_list("updated_at", flat=True).first()
    if not gateways:
        return [Finding("rollups", OK, "no gateway running: nothing to measure"
                        + (f" (last measurement {newest:%Y-%m-%d %H:%M} UTC)" if newest else ""))]
    started = min(r.started_at for r in gateways)
    limit = dt.timedelta(minutes=ROLLUPS_STALE_MINUTES)
    if now - started < limit:
        return [Finding("rollups", OK, "a gateway started recently; its first flushes are due")]
    if newest is None or now - newest > limit:
        age = "never written" if newest is None else f"last written {(now - newest).total_seconds() / 60:,.0f} min ago"
        return [Finding("rollups", WARN, f"a gateway runs but its measurements are stale: {age}",
                        "quiet traffic explains it; otherwise read the gateway's log for flush failures and its "
                        "/metrics (accord_gateway_flush_failures_total, accord_gateway_dropped_total)")]
    return [Finding("rollups", OK, f"last written {(now - newest).total_seconds():,.0f} s ago")]
