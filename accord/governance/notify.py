"""Notifications of governance events: e-mail and signed webhooks, from an outbox, retried with backoff.

A webhook is a JSON POST with `X-Accord-Signature: sha256=<hex HMAC-SHA256 of the body>` (the same scheme
the desk's webhook channel accepts), `X-Accord-Event` and `X-Accord-Delivery` (the notification id, for
deduplication). Anything but a 2xx answer is retried: after 10 s, 20 s, 40 s ... up to `MAX_ATTEMPTS`.
Several senders at once never send one notification twice: each claims its row with a conditional update.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from .models import AuditEvent, Notification

MAX_ATTEMPTS = 8
BASE_DELAY = 10.0
TIMEOUT = 10.0
CLAIM_SECONDS = 120  # a claimed row is retried after this long if its sender died


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def enqueue(event: AuditEvent, emails: list[str], webhooks: list[dict[str, str]]) -> list[Notification]:
    """Queue one notification per e-mail address and webhook for an audit event."""
    payload = {"event": event.kind, "subject": event.subject, "actor": event.actor, "reason": event.reason,
               "values": event.values, "at": event.at.isoformat(), "policy": event.policy.name if event.policy else None}
    title = f"[Accord] {event.get_kind_display()}: {event.subject}"
    return enqueue_payload(title, payload, emails, webhooks, event)


def enqueue_payload(title: str, payload: dict[str, Any], emails: list[str], webhooks: list[dict[str, str]],
                    event: AuditEvent | None = None) -> list[Notification]:
    """Queue one notification per e-mail address and webhook for any payload (the other apps' alerts, e.g.
    billing's forecast alerts): `event` names the webhook's X-Accord-Event; the mail's body is `reason`, then
    `values` one per line, then `at` and `actor`."""
    title = title[:300]
    rows = [Notification(channel=Notification.Channel.EMAIL, target=e, subject=title, payload=payload, event=event)
            for e in emails]
    rows += [Notification(channel=Notification.Channel.WEBHOOK, target=h["url"], secret=h.get("secret", ""),
                          subject=title, payload=payload, event=event) for h in webhooks]
    return Notification.objects.bulk_create(rows) if rows else []


def _deliver(n: Notification) -> None:
    if n.channel == Notification.Channel.EMAIL:
        lines = [n.payload.get("reason", ""), ""]
        lines += [f"{k}: {v}" for k, v in (n.payload.get("values") or {}).items()]
        lines += ["", f"at {n.payload.get('at')} by {n.payload.get('actor')}"]
        send_mail(n.subject, "\n".join(lines), None, [n.target])
        return
    body = json.dumps(n.payload, sort_keys=True).encode()
    request = urllib.request.Request(n.target, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Accord-Event": str(n.payload.get("event", "")),
        "X-Accord-Delivery": str(n.pk), "X-Accord-Signature": sign(n.secret, body), "User-Agent": "accord-governor",
    })
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(n.target, response.status, "not a 2xx answer", response.headers, None)


def deliver_due(now: dt.datetime | None = None, limit: int = 100, only: list[int] | None = None) -> dict[str, int]:
    """Send what is due (of the notifications `only` names, if given); returns counts of sent, retried and failed."""
    now = now or timezone.now()
    counts = {"sent": 0, "retried": 0, "failed": 0}
    due = Notification.objects.filter(sent_at__isnull=True, failed_at__isnull=True, next_attempt_at__lte=now)
    if only is not None:
        due = due.filter(pk__in=only)
    for n in list(due.order_by("next_attempt_at", "id")[:limit]):
        # claim: only the sender whose update matched sends it
        claimed = Notification.objects.filter(
            Q(pk=n.pk, attempts=n.attempts, sent_at__isnull=True, next_attempt_at__lte=now)
        ).update(attempts=n.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=CLAIM_SECONDS))
        if not claimed:
            continue
        n.attempts += 1
        try:
            _deliver(n)
        except Exception as e:  # network, SMTP, HTTP errors: retry later
            n.last_error = f"{type(e).__name__}: {e}"[:500]
            if n.attempts >= MAX_ATTEMPTS:
                n.failed_at = now
                counts["failed"] += 1
            else:
                n.next_attempt_at = now + dt.timedelta(seconds=BASE_DELAY * 2 ** (n.attempts - 1))
                counts["retried"] += 1
            n.save(update_fields=["last_error", "failed_at", "next_attempt_at"])
        else:
            n.sent_at = timezone.now()
            n.save(update_fields=["sent_at"])
            counts["sent"] += 1
    return counts


def webhook_list(value: Any) -> list[dict[str, str]]:
    """Validate a list of webhooks ({url, secret}); raises ValueError naming the bad entry."""
    if not isinstance(value, list):
        raise ValueError("must be a list of {url, secret}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise ValueError(f"[{i}] must be an object with a url")
        if not item["url"].startswith(("http://", "https://")):
            raise ValueError(f"[{i}].url must start with http:// or https://")
        unknown = set(item) - {"url", "secret"}
        if unknown:
            raise ValueError(f"[{i}] has unknown keys: {', '.join(sorted(unknown))}")
        out.append({"url": item["url"], "secret": str(item.get("secret", ""))})
    return out
