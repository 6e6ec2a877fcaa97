"""IMAP polling: fetch unseen messages, store each safely, and only then mark it seen.

A connection cut (or a poller killed) at any instant loses nothing: a message not yet committed is still unseen
and is fetched by the next poll; one committed but not yet marked seen is fetched again and recognised by its
Message-ID (a digest of its bytes when it has none) as a duplicate: no second ticket, no second
acknowledgement. An error is recorded on the mailbox (`last_error`) and cleared by the next good poll; the
`poll-imap --loop` process carries on (accord/desk/tests/test_imap_faults.py).
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from accord.lib.faults import point

from . import mail, outbound
from .models import Mailbox


@dataclass
class PollResult:
    """What one poll of a mailbox did."""

    stored: int = 0
    duplicates: int = 0
    flagged: int = 0
    acknowledged: int = 0  # acknowledgements sent
    not_acknowledged: int = 0  # acknowledgements that could not be sent (flagged on their tickets)
    intercepted: int = 0  # taken by a handler above the desk (bounces of campaign mail), no ticket
    error: str = ""


# Handlers of the apps above the desk take the mail meant for them before it becomes a ticket (outreach: delivery
# status notifications about campaign mail). Each gets the raw bytes and returns True when it took the message.
# They register from their AppConfig.ready(), so the desk imports no higher app (as `accord doctor`'s checks do).
INTERCEPTORS: list[Callable[[bytes], bool]] = []


def intercept(handler: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    if handler not in INTERCEPTORS:
        INTERCEPTORS.append(handler)
    return handler


def _connect(box: Mailbox) -> imaplib.IMAP4:
    if box.security == Mailbox.Security.SSL:
        return imaplib.IMAP4_SSL(box.host, box.port, ssl_context=ssl.create_default_context(), timeout=30)
    conn = imaplib.IMAP4(box.host, box.port, timeout=30)
    if box.security == Mailbox.Security.STARTTLS:
        conn.starttls(ssl_context=ssl.create_default_context())
    return conn


def poll(box: Mailbox, limit: int = 500) -> PollResult:
    """Store up to `limit` unseen messages of a mailbox; a message is marked seen only after its commit.

    This is mail arriving now: a message that opens a ticket is acknowledged (sent once it has committed).
    """
    result = PollResult()
    try:
        conn = _connect(box)
        try:
            conn.login(box.username, box.password)
            typ, _ = conn.select(f'"{box.folder}"')
            if typ != "OK":
                raise imaplib.IMAP4.error(f"cannot select folder {box.folder!r}")
            typ, data = conn.uid("SEARCH", "UNSEEN")
            uids = data[0].split()[:limit] if typ == "OK" and data and data[0] else []
            for uid in uids:
                typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple) and len(p) > 1), None) if typ == "OK" else None
                if raw is None:
                    continue
                if any(take(bytes(raw)) for take in INTERCEPTORS):
                    # Handled (and committed) by its handler; a poller killed before the flag hands it over again.
                    conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
                    result.intercepted += 1
                    continue
                outcome = mail.store(bytes(raw), source=f"imap:{box.name}/{box.folder}#{uid.decode()}", acknowledge=True)
                point("imap.stored")  # tests: die with the message stored and not yet marked seen
                # Stored and committed (or already there): now it is safe to mark it seen.
                conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
                if outcome.duplicate:
                    result.duplicates += 1
                else:
                    result.stored += 1
                    result.flagged += int(outcome.flagged)
                    if outcome.acknowledgement is not None:
                        if outbound.was_sent(outcome.acknowledgement):
                            result.acknowledged += 1
                        else:
                            result.not_acknowledged += 1
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
        result.error = f"{type(e).__name__}: {e}"[:500]
    Mailbox.objects.filter(pk=box.pk).update(last_polled_at=timezone.now(), last_error=result.error)
    return result
