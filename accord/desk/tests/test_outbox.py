"""The outbox under faults: an SMTP server that refuses for a while, refuses for good, or a sender killed mid-send.

Real parts: aiosmtpd on loopback (accord.lib.smtp.SmtpSink) behind a cuttable proxy (accord.lib.cutproxy), and
`accord desk send-mail --loop` as a separate process killed with SIGKILL. The figures printed (run with -s) are
the ones in docs/benchmarks.md, "Faults".
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client

from accord.desk import actions, outbound, outbox
from accord.desk.actions import Inbound
from accord.desk.models import Message, OutgoingMail, Ticket
from accord.lib.cutproxy import CutProxy
from accord.lib.smtp import SmtpSink
from accord.lib.testing import accord_command, subprocess_env
from accord.ops.models import Heartbeat

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def web_ticket(address: str) -> Ticket:
    return actions.do_open_ticket(Inbound(channel="web", subject=f"Refund for {address}", body_text="Hotel cancelled",
                                          from_address=address, from_name="Traveller"))


def acknowledged(address: str) -> Message:
    """A web-form ticket and its auto-acknowledgement, in one transaction as the form does it."""
    with transaction.atomic():
        ticket = web_ticket(address)
        ack = outbound.queue_acknowledgement(ticket, ticket.first_message)  # type: ignore[attr-defined]
    assert ack is not None
    return ack


def replied(desk: Desk, address: str) -> Message:
    return actions.do_reply(web_ticket(address), desk.agent, f"Your refund to {address} left today.")


def use(settings: Any, host: str, port: int) -> None:
    settings.EMAIL_BACKEND = SMTP_BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = host, port
    settings.ACCORD_OUTBOX_BACKOFF, settings.ACCORD_OUTBOX_BACKOFF_MAX = 0.2, 1.0


def sender(host: str, port: int, **extra: str) -> subprocess.Popen[bytes]:
    env = subprocess_env(ACCORD_EMAIL_BACKEND=SMTP_BACKEND, ACCORD_SMTP_HOST=host, ACCORD_SMTP_PORT=str(port),
                         ACCORD_OUTBOX_BACKOFF="0.2", ACCORD_OUTBOX_BACKOFF_MAX="1", **extra)
    return subprocess.Popen([*accord_command(), "desk", "send-mail", "--loop", "0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(30)


def received(sink: SmtpSink) -> collections.Counter[str]:
    """How many times each Message-ID reached the server."""
    return collections.Counter(str(msg["Message-ID"]) for _sender, _to, msg in sink.messages)


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_backoff_doubles_is_capped_and_jittered(settings: Any) -> None:
    settings.ACCORD_OUTBOX_BACKOFF, settings.ACCORD_OUTBOX_BACKOFF_MAX = 1.0, 8.0
    rng = random.Random(22)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]:
        delays = [outbox.backoff(attempts, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one fixed delay


def test_mail_refused_for_a_while_is_retried_with_backoff_and_delivered_exactly_once(
    desk: Desk, settings: Any, sink: SmtpSink
) -> None:
    with CutProxy(sink.host, sink.port) as proxy:
        use(settings, proxy.host, proxy.port)
        proxy.cut()  # the server is down: connections refused
        queued = [acknowledged(f"ack{n}@example.org") for n in range(4)] + [replied(desk, f"re{n}@example.org")
                                                                           for n in range(4)]
        rows = OutgoingMail.objects.filter(message__in=queued)
        # Each was tried once right after its commit, refused, flagged on its ticket, and kept to be retried.
        assert sorted(rows.values_list("status", "attempts")) == [("pending", 1)] * 8
        assert all("ConnectionRefusedError" in r.last_error for r in rows)
        assert Message.objects.filter(pk__in=[m.pk for m in queued], flagged=True).count() == 8
        # Staff see each one waiting on the outbox page, with why it is not sent yet.
        client = Client()
        client.force_login(desk.agent)
        page = client.get("/desk/outbox/").content.decode()
        assert all(f'data-mail="{r.pk}" data-status="pending"' in page for r in rows)
        assert page.count("ConnectionRefusedError") == 8
        process = sender(proxy.host, proxy.port)
        try:
            time.sleep(1.5)
            proxy.restore()  # up again, but it answers 451 to every message for a while
            sink.refuse("451 4.3.0 Try again later")
            wait_until(lambda: sink.refused >= 4)
            wait_until(lambda: "SMTP 451 4.3.0 Try again later" in client.get("/desk/outbox/").content.decode())
            time.sleep(1.0)
            sink.refuse(None)
            back = time.monotonic()
            wait_until(lambda: rows.filter(status="sent").count() == 8)
            delay = time.monotonic() - back
            assert Heartbeat.objects.get(kind="mail-sender", pid=process.pid).stopped_at is None  # alive, it says so
            time.sleep(0.5)  # a sender that would send anything twice has had the time to
        finally:
            stop(process)
    assert Heartbeat.objects.get(kind="mail-sender", pid=process.pid).stopped_at is not None  # stopped cleanly
    counts = received(sink)
    assert counts == {m.message_id: 1 for m in queued}  # none lost, none twice
    attempts = list(rows.values_list("attempts", flat=True))
    assert min(attempts) >= 3  # refused, then 451, then delivered
    assert not Message.objects.filter(pk__in=[m.pk for m in queued], flagged=True).exists()
    print(f"\nFAULTS smtp-refusing: {len(queued)} mails, {sum(attempts) - len(queued)} retries "
          f"({sink.refused} answered 451), all delivered {delay:.2f} s after the server accepted again")


@pytest.mark.parametrize("in_flight", ["reply", "acknowledgement"])
def test_a_sender_killed_mid_send_loses_nothing_and_never_sends_an_acknowledgement_twice(
    desk: Desk, settings: Any, sink: SmtpSink, in_flight: str
) -> None:
    use(settings, sink.host, sink.port)
    settings.ACCORD_OUTBOX_SEND_ON_COMMIT = False  # all sending is the sender process's
    first = replied(desk, "first@example.org") if in_flight == "reply" else acknowledged("first@example.org")
    others = [acknowledged("ack1@example.org"), replied(desk, "re1@example.org"), acknowledged("ack2@example.org"),
              replied(desk, "re2@example.org")]
    queued = [first, *others]
    # The server takes the first message and never answers: the sender is killed while waiting for the answer.
    sink.hold()
    victim = sender(sink.host, sink.port, ACCORD_OUTBOX_LEASE="1")
    try:
        held = sink.wait_for(1)
        assert [str(m["Message-ID"]) for _s, _t, m in held] == [first.message_id]
        assert OutgoingMail.objects.get(message=first).status == "sending"
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL
    finally:
        sink.release()
    restarted = sender(sink.host, sink.port, ACCORD_OUTBOX_LEASE="1")
    try:
        wait_until(lambda: not OutgoingMail.objects.filter(status__in=["pending", "sending"]).exists())
        time.sleep(0.5)  # more passes: nothing else may go out
    finally:
        stop(restarted)
    counts = received(sink)
    assert {m.message_id for m in queued} <= set(counts)  # nothing lost
    assert all(counts[m.message_id] == 1 for m in others)
    for ack in [m for m in queued if m.auto_generated]:
        assert counts[ack.message_id] == 1  # an acknowledgement is never sent twice
    row = OutgoingMail.objects.get(message=first)
    if in_flight == "reply":
        # The one mail in flight went again, with its Message-ID: a duplicate a mail client recognises.
        assert counts[first.message_id] == 2 and row.status == "sent" and row.attempts == 2
    else:
        assert counts[first.message_id] == 1 and row.status == "failed" and "interrupted" in row.last_error
        assert row.attempts == 1


def test_a_permanent_refusal_fails_at_once_and_staff_see_it_and_retry_it(
    desk: Desk, settings: Any, sink: SmtpSink
) -> None:
    use(settings, sink.host, sink.port)
    sink.refuse_recipient("gone@example.org", "550 5.1.1 No such user")
    reply = replied(desk, "gone@example.org")
    fine = replied(desk, "here@example.org")
    row = OutgoingMail.objects.get(message=reply)
    assert (row.status, row.attempts) == ("failed", 1) and "550 5.1.1 No such user" in row.last_error
    for _ in range(3):  # no retry loop: the sender leaves it alone
        outbox.send_due()
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 1)
    assert OutgoingMail.objects.get(message=fine).status == "sent"
    client = Client()
    client.force_login(desk.agent)
    assert 'href="/desk/outbox/"' in client.get("/desk/").content.decode()
    page = client.get("/desk/outbox/").content.decode()
    assert "<caption>Outgoing mail not yet delivered</caption>" in page and '<th scope="col">Last error</th>' in page
    assert f'data-mail="{row.pk}" data-status="failed"' in page and "550 5.1.1 No such user" in page
    assert f'data-mail="{OutgoingMail.objects.get(message=fine).pk}"' not in page  # sent: not listed
    assert client.post("/desk/outbox/retry/", {}).status_code == 302  # nothing chosen: nothing done
    row.refresh_from_db()
    assert row.attempts == 1
    sink.refuse_recipient("gone@example.org", "")  # the address exists again (an empty line: accepted)
    answer = client.post("/desk/outbox/retry/", {"mail": [str(row.pk)]})
    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
    assert received(sink) == {fine.message_id: 1, reply.message_id: 1}
    assert "Nothing waiting" in client.get("/desk/outbox/").content.decode()
    anonymous = Client().get("/desk/outbox/")
    assert anonymous.status_code == 302  # staff only


def test_one_pass_of_send_mail_sends_what_is_due_and_exits_non_zero_on_a_permanent_refusal(
    desk: Desk, settings: Any, sink: SmtpSink
) -> None:
    use(settings, sink.host, sink.port)
    settings.ACCORD_OUTBOX_SEND_ON_COMMIT = False
    sink.refuse_recipient("gone@example.org", "550 5.1.1 No such user")
    fine, gone = replied(desk, "here@example.org"), replied(desk, "gone@example.org")
    out = StringIO()
    with pytest.raises(CommandError, match="1 message"):
        call_command("desk", "send-mail", stdout=out)
    assert "sent 1, to retry 0, failed 1" in out.getvalue()
    assert received(sink) == {fine.message_id: 1}
    assert OutgoingMail.objects.get(message=gone).status == "failed"
    out = StringIO()
    call_command("desk", "send-mail", stdout=out)  # nothing due: the failed one is not retried
    assert "sent 0, to retry 0, failed 0" in out.getvalue() and received(sink) == {fine.message_id: 1}


def test_a_webhook_reply_goes_through_the_outbox_retried_until_the_endpoint_recovers_and_posted_once(
    desk: Desk, settings: Any
) -> None:
    """A social channel's reply endpoint (a real loopback HTTP server) is unreachable (behind a cut proxy), then
    answers 503, then 200: the reply waits in the outbox with its last error on /desk/outbox/, is retried with
    backoff, and is accepted exactly once; later passes of the sender post nothing more."""
    from accord.desk.models import WebhookChannel

    from .test_replies import Receiver, post_webhook

    settings.ACCORD_OUTBOX_BACKOFF, settings.ACCORD_OUTBOX_BACKOFF_MAX = 0.2, 1.0
    with Receiver(503, 503, 503, 503, 200) as receiver:
        host, port = receiver.server.server_address[:2]
        with CutProxy(str(host), int(port)) as proxy:
            channel = WebhookChannel.objects.create(name="x-social", secret="s3cret",
                                                    reply_url=receiver.url.replace(f":{port}/", f":{proxy.port}/"))
            assert post_webhook(channel, {"id": "m1", "from": "@globetrotter", "text": "Refund?"}).status_code == 201
            proxy.cut()
            reply = actions.do_reply(Ticket.objects.get(), desk.agent, "It left our account today.")
            row = OutgoingMail.objects.get(message=reply)
            # tried on commit: refused, waiting for the next attempt, on the staff page with its error
            assert (row.via, row.channel_id, row.status, row.attempts) == ("webhook", channel.pk, "pending", 1)
            assert "refused" in row.last_error.lower() and receiver.requests == []
            client = Client()
            client.force_login(desk.agent)
            page = client.get("/desk/outbox/").content.decode()
            assert f'data-mail="{row.pk}" data-status="pending"' in page and "via webhook x-social" in page
            reply.refresh_from_db()
            assert reply.flagged and reply.flag_reason.startswith("not sent:")
            proxy.restore()
            errors = set()
            deadline = time.monotonic() + 30
            while OutgoingMail.objects.get(pk=row.pk).status != "sent":
                assert time.monotonic() < deadline, OutgoingMail.objects.get(pk=row.pk).last_error
                outbox.send_due()
                errors.add(OutgoingMail.objects.get(pk=row.pk).last_error.split(" (")[0])
                time.sleep(0.05)
            for _ in range(3):
                outbox.send_due()
                time.sleep(0.3)
    row.refresh_from_db()
    assert row.status == "sent" and row.last_error == "" and row.attempts == 3  # refused; 3 x 503; 503 then 200
    assert any("HTTP 503" in e for e in errors), errors
    assert [r[0]["X-Accord-Event"] for r in receiver.requests] == ["reply"] * 5  # the 200 was the last request
    assert len({r[0]["X-Accord-Delivery"] for r in receiver.requests}) == 1  # one id on every attempt
    reply.refresh_from_db()
    assert not reply.flagged
    assert "Nothing waiting" in client.get("/desk/outbox/").content.decode()


def test_a_webhook_reply_refused_with_a_4xx_fails_at_once_and_is_not_retried(desk: Desk, settings: Any) -> None:
    from accord.desk.models import WebhookChannel

    from .test_replies import Receiver, post_webhook

    with Receiver(410) as receiver:
        channel = WebhookChannel.objects.create(name="x-social", secret="s3cret", reply_url=receiver.url)
        post_webhook(channel, {"id": "m1", "from": "@globetrotter", "text": "Refund?"})
        reply = actions.do_reply(Ticket.objects.get(), desk.agent, "It left our account today.")
        for _ in range(3):
            outbox.send_due()
    row = OutgoingMail.objects.get(message=reply)
    assert (row.status, row.attempts) == ("failed", 1) and "HTTP 410" in row.last_error
    assert len(receiver.requests) == 1


def test_the_admin_shows_the_outbox_read_only_and_retries_the_chosen(desk: Desk, settings: Any, sink: SmtpSink) -> None:
    from django.contrib.auth import get_user_model

    use(settings, sink.host, sink.port)
    sink.refuse_recipient("gone@example.org", "550 5.1.1 No such user")
    row = OutgoingMail.objects.get(message=replied(desk, "gone@example.org"))
    assert row.status == "failed"
    admin = get_user_model().objects.create_superuser("root", "root@accord.example", "root-password")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/desk/outgoingmail/")
    assert listing.status_code == 200 and "550 5.1.1 No such user" in listing.content.decode()
    change = client.get(f"/admin/desk/outgoingmail/{row.pk}/change/")
    assert change.status_code == 200 and 'name="status"' not in change.content.decode()  # read-only
    assert client.get("/admin/desk/outgoingmail/add/").status_code == 403  # mail enters with its message only
    done = client.post("/admin/desk/outgoingmail/", {"action": "retry_now", "_selected_action": [str(row.pk)]})
    assert done.status_code == 302
    row.refresh_from_db()
    assert row.status == "pending" and row.attempts == 1  # due now: the sender's next pass tries it
    sink.refuse_recipient("gone@example.org", "")
    outbox.send_due()
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
