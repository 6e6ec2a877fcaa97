"""Signed webhooks and e-mail for governance events, retried against a real HTTP server on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from accord.governance.models import AuditEvent, Notification
from accord.governance.notify import MAX_ATTEMPTS, deliver_due, enqueue

pytestmark = pytest.mark.django_db


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers: list[int] = []
        self.received: list[tuple[dict[str, str], bytes]] = []


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def event() -> AuditEvent:
    return AuditEvent.objects.create(kind="activated", subject="platinum-standby", actor="governor",
                                     reason="pool(booking, primary).utilisation > 0.8 held for 5s",
                                     values={"signals": {"pool(booking, primary).utilisation": 0.93}})


def test_a_webhook_is_signed_retried_after_a_failure_and_sent_once(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.server_port}/hooks"
    receiver.answers = [503]
    enqueue(event(), ["ops@example.com"], [{"url": url, "secret": "s3cret"}])
    first = deliver_due()
    assert first == {"sent": 1, "retried": 1, "failed": 0}  # the mail went, the webhook got a 503
    assert len(mail.outbox) == 1 and "platinum-standby" in mail.outbox[0].subject
    assert "held for 5s" in mail.outbox[0].body
    hook = Notification.objects.get(channel="webhook")
    assert hook.attempts == 1 and "503" in hook.last_error and hook.sent_at is None
    assert deliver_due() == {"sent": 0, "retried": 0, "failed": 0}  # not due yet: backoff
    later = timezone.now() + dt.timedelta(seconds=11)
    assert deliver_due(later)["sent"] == 1
    assert deliver_due(later + dt.timedelta(hours=1)) == {"sent": 0, "retried": 0, "failed": 0}
    assert len(receiver.received) == 2
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-accord-signature"] == expected
    assert headers["x-accord-event"] == "activated" and headers["x-accord-delivery"] == str(hook.pk)
    payload = json.loads(body)
    assert payload["subject"] == "platinum-standby" and payload["values"]["signals"]


def test_an_unreachable_webhook_gives_up_after_its_attempts(receiver: Receiver) -> None:
    port = receiver.server_port
    receiver.shutdown()
    receiver.server_close()
    enqueue(event(), [], [{"url": f"http://127.0.0.1:{port}/gone", "secret": ""}])
    when = timezone.now()
    for _ in range(MAX_ATTEMPTS):
        deliver_due(when)
        when += dt.timedelta(days=1)
    n = Notification.objects.get()
    assert n.attempts == MAX_ATTEMPTS and n.failed_at is not None and n.sent_at is None
    assert "Connection refused" in n.last_error or "URLError" in n.last_error
    assert deliver_due(when + dt.timedelta(days=1)) == {"sent": 0, "retried": 0, "failed": 0}
