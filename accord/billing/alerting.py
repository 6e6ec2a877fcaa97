"""Forecast alerts sent: each alert `accord forecast` raises is recorded (`ForecastAlert`) and sent once, by e-mail
and signed webhook, through governance's notification outbox (`accord.governance.notify`); docs/billing.md.

- **Once**: an alert is one open row per series (subject and meter) and kind. A run that raises it again only
  notes it was seen (and its latest wording); a run that computed the series without raising it clears it, and
  the next time it is raised it opens (and is sent) again. Series a run did not compute (`--account`, `--meter`)
  are left as they are.
- **To whom**: an account's alert to its manager (the account's owner, if it has an e-mail address) and to
  `ACCORD_BILLING_ALERT_EMAILS`; a service's alert to `ACCORD_BILLING_ALERT_EMAILS`; both to each of
  `ACCORD_BILLING_ALERT_WEBHOOKS` ([{url, secret}], a JSON POST signed as governance's are).
- **Retried next run**: a delivery that failed (SMTP refused, webhook unreachable or not 2xx) is tried again by
  the next run (and by the governor's outbox loop, if one runs, after its backoff), up to governance's
  `MAX_ATTEMPTS`, and shown (`undelivered`) with its last error until it goes through or gives up.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accord.customers.models import Account
from accord.governance.models import Notification
from accord.governance.notify import deliver_due, enqueue_payload, webhook_list

from .forecasting import Alert, Outlook
from .models import ForecastAlert

EVENT = "billing.forecast_alert"
SHOW_GIVEN_UP_DAYS = 7  # a delivery given up is listed by the runs of the week after


@dataclass
class Delivery:
    """What one run did with its alerts."""

    opened: list[ForecastAlert] = field(default_factory=list)
    still_open: int = 0
    cleared: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "retried": 0, "failed": 0})
    undelivered: list[Notification] = field(default_factory=list)  # after this run: waiting to be retried, or given up

    def line(self) -> str:
        c = self.counts
        return (f"alerts sent: {len(self.opened)} new, {self.still_open} still open (not sent again), "
                f"{self.cleared} cleared; deliveries {c['sent']} sent, {c['retried']} failed (retried next run), "
                f"{c['failed']} given up")

    def as_dict(self) -> dict[str, object]:
        return {"new": [{"subject": a.subject, "meter": a.meter, "kind": a.kind} for a in self.opened],
                "still_open": self.still_open, "cleared": self.cleared, **self.counts,
                "undelivered": [undelivered(n) for n in self.undelivered]}


def undelivered(n: Notification) -> dict[str, object]:
    return {"channel": n.channel, "target": n.target, "subject": n.subject, "attempts": n.attempts,
            "error": n.last_error, "given_up": n.failed_at is not None}


def recipients(account: Account | None) -> tuple[list[str], list[dict[str, str]]]:
    emails: list[str] = []
    if account is not None and account.owner is not None and account.owner.email:
        emails.append(account.owner.email)
    for e in getattr(settings, "ACCORD_BILLING_ALERT_EMAILS", []):
        if e and e not in emails:
            emails.append(e)
    try:
        hooks = webhook_list(getattr(settings, "ACCORD_BILLING_ALERT_WEBHOOKS", []))
    except ValueError as e:
        raise ValueError(f"ACCORD_BILLING_ALERT_WEBHOOKS{e}") from e
    return emails, hooks


def _payload(row: ForecastAlert, account: Account | None, alerts: list[Alert], now: dt.datetime) -> dict[str, object]:
    values = {"account": f"{account.name} ({account.external_id or account.pk})" if account else "",
              "series": row.subject, "meter": row.meter, "kind": row.kind,
              "on": row.on.isoformat() if row.on else ""}
    return {"event": EVENT, "kind": row.kind, "subject": row.subject, "meter": row.meter,
            "account": (account.external_id or str(account.pk)) if account else None,
            "alerts": [a.as_dict() for a in alerts], "reason": row.message,
            "values": {k: v for k, v in values.items() if v}, "at": now.isoformat(), "actor": "accord forecast"}


def record(outlooks: Iterable[Outlook], now: dt.datetime | None = None) -> Delivery:
    """Open, note or clear the alerts of the series computed, and queue the sending of the new ones."""
    now = now or timezone.now()
    result = Delivery()
    outlooks = list(outlooks)
    open_rows = {(a.subject, a.meter, a.kind): a for a in ForecastAlert.objects.filter(cleared_at__isnull=True)}
    open_kinds: dict[tuple[str, str], list[ForecastAlert]] = defaultdict(list)
    for (subject, meter, _kind), row in open_rows.items():
        open_kinds[(subject, meter)].append(row)
    owners = {a.pk: a for a in Account.objects.filter(
        pk__in={o.account_id for o in outlooks if o.account_id is not None and o.alerts}).select_related("owner")}
    with transaction.atomic():
        for o in outlooks:
            raised: dict[str, list[Alert]] = defaultdict(list)
            for alert in o.alerts:
                raised[alert.kind].append(alert)
            for row in open_kinds.get((o.subject, o.meter), []):
                if row.kind not in raised:
                    ForecastAlert.objects.filter(pk=row.pk).update(cleared_at=now)
                    result.cleared += 1
            for kind, alerts in raised.items():
                message = "; ".join(a.message for a in alerts)[:500]
                seen = open_rows.get((o.subject, o.meter, kind))
                if seen is not None:
                    ForecastAlert.objects.filter(pk=seen.pk).update(seen_at=now, message=message)
                    result.still_open += 1
                    continue
                account = owners.get(o.account_id) if o.account_id is not None else None
                row = ForecastAlert.objects.create(subject=o.subject, meter=o.meter, kind=kind, account=account,
                                                   message=message, on=alerts[0].on, opened_at=now, seen_at=now)
                emails, hooks = recipients(account)
                title = f"[Accord] forecast alert ({kind}): {o.subject} {o.meter}"
                row.notifications.set(enqueue_payload(title, _payload(row, account, alerts, now), emails, hooks))
                result.opened.append(row)
    return result


def pending() -> list[int]:
    """The forecast alerts' notifications not delivered yet (and not given up)."""
    return list(ForecastAlert.notifications.through.objects.filter(
        notification__sent_at__isnull=True, notification__failed_at__isnull=True).values_list("notification_id", flat=True))


def send(outlooks: Iterable[Outlook], now: dt.datetime | None = None) -> Delivery:
    """Record the run's alerts, then deliver every forecast-alert notification still due, the earlier runs'
    failures included (a run is the retry: their backoff is cut short)."""
    result = record(outlooks, now)
    ids = pending()
    if ids:
        Notification.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
        result.counts = deliver_due(limit=len(ids), only=ids)
    recently = timezone.now() - dt.timedelta(days=SHOW_GIVEN_UP_DAYS)
    result.undelivered = list(Notification.objects.filter(
        Q(failed_at__isnull=True) | Q(failed_at__gte=recently),
        pk__in=ForecastAlert.notifications.through.objects.values("notification_id"), sent_at__isnull=True,
    ).order_by("created_at", "channel", "id"))
    return result
