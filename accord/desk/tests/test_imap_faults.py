"""The IMAP poller under faults, against a real Dovecot: the connection cut mid-fetch, the poller killed between
storing a message and marking it seen. Nothing is lost, nothing becomes a ticket twice, no acknowledgement goes
twice, and the polling process recovers by itself. Figures printed with -s are in docs/benchmarks.md, "Faults".
"""

from __future__ import annotations

import collections
import imaplib
import signal
import subprocess
import time
from typing import Any

import pytest

from accord.desk.models import Mailbox, Message, Ticket
from accord.lib.cutproxy import CutProxy
from accord.lib.smtp import SmtpSink
from accord.lib.testing import accord_command, subprocess_env
from accord.ops.models import Heartbeat

from .conftest import Desk, Imap
from .test_imap import seen_flags
from .test_mail import email

pytestmark = pytest.mark.django_db(transaction=True)
COUNT = 60
BODY = "All our bookings failed again today. " * 5000  # ~190 KB each, so a poll of them all takes a while


def fill(server: Imap, count: int) -> list[str]:
    conn = imaplib.IMAP4(server.host, server.port, timeout=30)
    conn.login(server.user, server.password)
    ids = []
    for n in range(count):
        ids.append(f"<cut{n}@globetrotter.example>")
        typ, _ = conn.append("INBOX", "", imaplib.Time2Internaldate(time.time()),
                             email(subject=f"Booking {n} failed", body=BODY, message_id=ids[-1]))
        assert typ == "OK"
    conn.logout()
    return ids


def poller(sink: SmtpSink, fault: str = "", loop: str = "0.2") -> subprocess.Popen[bytes]:
    env = subprocess_env(ACCORD_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                         ACCORD_SMTP_HOST=sink.host, ACCORD_SMTP_PORT=str(sink.port), ACCORD_FAULTS=fault)
    return subprocess.Popen([*accord_command(), "desk", "poll-imap", "--loop", loop], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(condition: Any, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def check_each_once(ids: list[str], sink: SmtpSink) -> None:
    inbound = Message.objects.filter(kind="inbound")
    assert sorted(inbound.values_list("message_id", flat=True)) == sorted(ids)  # none lost, none twice
    assert Ticket.objects.count() == len(ids)
    acks = collections.Counter(str(m["In-Reply-To"]) for _s, _t, m in sink.messages)
    assert acks == dict.fromkeys(ids, 1)  # each new ticket acknowledged exactly once


def test_an_imap_connection_cut_mid_fetch_loses_nothing_and_the_poller_recovers_by_itself(
    desk: Desk, dovecot: Imap
) -> None:
    ids = fill(dovecot, COUNT)
    inbound = Message.objects.filter(kind="inbound")
    with SmtpSink() as sink, CutProxy(dovecot.host, dovecot.port) as proxy:
        box = Mailbox.objects.create(name="support", host=proxy.host, port=proxy.port, security="none",
                                     username=dovecot.user, password=dovecot.password)
        process = poller(sink)
        try:
            wait_until(lambda: inbound.count() >= 5)
            proxy.cut()  # mid-fetch: the connection drops and new ones are refused
            cut_at = inbound.count()
            wait_until(lambda: Mailbox.objects.get(pk=box.pk).last_error != "")
            time.sleep(0.5)
            assert inbound.count() < COUNT, f"the poll ended before the cut ({cut_at} stored); raise COUNT or BODY"
            stalled = inbound.count()
            proxy.restore()
            back = time.monotonic()
            wait_until(lambda: inbound.count() > stalled)
            resumed = time.monotonic() - back
            wait_until(lambda: inbound.count() == COUNT and Mailbox.objects.get(pk=box.pk).last_error == "")
            caught_up = time.monotonic() - back
            wait_until(lambda: len(sink.messages) >= COUNT)
            time.sleep(0.5)  # further polls: nothing new may appear
            error = Mailbox.objects.get(pk=box.pk).last_error
            assert Heartbeat.objects.get(kind="mail-poller", pid=process.pid).stopped_at is None  # alive, it says so
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    check_each_once(ids, sink)
    assert error == "" and all(seen_flags(dovecot))
    print(f"\nFAULTS imap-cut: cut after {cut_at} of {COUNT} messages; storing resumed {resumed:.2f} s after the server "
          f"came back (poll interval 0.2 s), all {COUNT} stored once {caught_up:.2f} s after it")


def test_a_poller_killed_between_storing_and_marking_seen_stores_each_message_once(desk: Desk, dovecot: Imap) -> None:
    ids = fill(dovecot, 5)
    with SmtpSink() as sink:
        Mailbox.objects.create(name="support", host=dovecot.host, port=dovecot.port, security="none",
                               username=dovecot.user, password=dovecot.password)
        victim = poller(sink, fault="imap.stored")
        assert victim.wait(60) == 137
        assert Message.objects.filter(kind="inbound").count() == 1 and seen_flags(dovecot) == [False] * 5
        wait_until(lambda: len(sink.messages) >= 1)
        process = poller(sink)
        try:
            wait_until(lambda: all(seen_flags(dovecot)))
            wait_until(lambda: len(sink.messages) >= 5)
            time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    check_each_once(ids, sink)
