"""E-mail in: parse raw RFC 5322 bytes robustly, thread them onto tickets, store them idempotently.

Nothing is ever dropped: the raw bytes are stored first; whatever cannot be parsed or decoded is flagged
with the reason and kept with its raw source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import mailbox
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from .actions import Inbound, do_add_customer_message, do_open_ticket
from .models import REFERENCE_PREFIX, Attachment, Message, RawMessage, Ticket

MAX_BODY_CHARS = 1_000_000
REFERENCE_RE = re.compile(rf"\[{REFERENCE_PREFIX}-(\d{{1,12}})\]")
MSGID_RE = re.compile(r"<[^<>\s]+>")
_PARSER = BytesParser(policy=policy.default)


def max_message_bytes() -> int:
    return int(getattr(settings, "ACCORD_MAX_EMAIL_BYTES", 25 * 1024 * 1024))


@dataclass
class ParsedMail:
    """What we could read from one raw message, with every problem noted."""

    inbound: Inbound
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _header(msg: EmailMessage, name: str, problems: list[str]) -> str:
    try:
        value = msg.get(name)
        return str(value).strip() if value is not None else ""
    except Exception as e:  # malformed headers raise many types deep inside the email package
        problems.append(f"unreadable {name} header ({type(e).__name__})")
        raw = msg.get_all(name, failobj=[]) if hasattr(msg, "get_all") else []
        return str(raw[0]).strip() if raw else ""


def raw_headers(msg: EmailMessage) -> dict[str, str]:
    """Header values as sent (first occurrence), without the header registry's parsing: for plain tokens."""
    out: dict[str, str] = {}
    for name, value in msg.raw_items():
        out.setdefault(name.lower(), str(value).strip())
    return out


def is_auto_generated(msg: EmailMessage, from_address: str, raw: dict[str, str] | None = None) -> bool:
    """Auto-replies, bounces and list mail: stored, but never answered automatically."""
    h = raw if raw is not None else raw_headers(msg)
    if h.get("auto-submitted", "no").lower() != "no":
        return True
    if any(h.get(name) for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress", "list-id")):
        return True
    if h.get("precedence", "").lower() in {"bulk", "junk", "list", "auto_reply"}:
        return True
    if msg.get_content_type() == "multipart/report":
        return True
    local = from_address.split("@")[0].lower()
    return local in {"mailer-daemon", "postmaster", "noreply", "no-reply"} or h.get("return-path") == "<>"


def parse(raw: bytes) -> ParsedMail:
    """Parse raw bytes into an Inbound; never raises."""
    problems: list[str] = []
    if len(raw) > max_message_bytes():
        problems.append(f"message of {len(raw)} bytes exceeds {max_message_bytes()} bytes; body not parsed")
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        raw_to_parse = head + b"\r\n\r\n"
    else:
        raw_to_parse = raw
    try:
        msg = _PARSER.parsebytes(raw_to_parse)
    except Exception as e:
        return ParsedMail(
            Inbound(channel="email", subject="(unparseable message)", flagged=True, flag_reason=f"unparseable: {e}"[:300]),
            problems=[f"unparseable: {e}"],
        )
    assert isinstance(msg, EmailMessage)
    if msg.defects:
        problems.append("defects: " + ", ".join(sorted({type(d).__name__ for d in msg.defects})))
    from_name, from_address = "", ""
    from_header = _header(msg, "From", problems)
    addresses = getaddresses([from_header]) if from_header else []
    if addresses and "@" in addresses[0][1]:
        from_name, from_address = addresses[0][0], addresses[0][1].lower()
    else:
        problems.append("no usable From address")
    subject = _header(msg, "Subject", problems)
    hdrs = raw_headers(msg)
    message_id_header = hdrs.get("message-id", "")
    ids = MSGID_RE.findall(message_id_header)
    message_id = ids[0] if ids else None
    received_at = None
    date_header = hdrs.get("date", "")
    if date_header:
        try:
            received_at = parsedate_to_datetime(date_header)
            if received_at.tzinfo is None:
                received_at = received_at.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError, IndexError):
            problems.append(f"unreadable Date header {date_header[:60]!r}")
            received_at = None
    body_text, body_html = "", ""
    attachments: list[tuple[str, str, bytes]] = []
    if len(raw) <= max_message_bytes():
        body_text, body_html, attachments = _bodies(msg, problems)
    inbound = Inbound(
        channel="email",
        subject=subject[:998],
        body_text=body_text[:MAX_BODY_CHARS],
        body_html=body_html[:MAX_BODY_CHARS],
        from_address=from_address,
        from_name=from_name,
        to_addresses=[a for _n, a in getaddresses([hdrs.get("to", "")]) if a],
        cc_addresses=[a for _n, a in getaddresses([hdrs.get("cc", "")]) if a],
        message_id=message_id,
        in_reply_to=" ".join(MSGID_RE.findall(hdrs.get("in-reply-to", ""))),
        references=" ".join(MSGID_RE.findall(hdrs.get("references", ""))),
        received_at=None,  # the time we received it; the Date header is the sender's claim
        auto_generated=is_auto_generated(msg, from_address, hdrs),
        meta={"date_header": received_at.isoformat() if received_at else None},
    )
    if problems:
        inbound.flagged = True
        inbound.flag_reason = "; ".join(problems)[:300]
    return ParsedMail(inbound, attachments, problems)


def _bodies(msg: EmailMessage, problems: list[str]) -> tuple[str, str, list[tuple[str, str, bytes]]]:
    text_parts: list[str] = []
    html_parts: list[str] = []
    attachments: list[tuple[str, str, bytes]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        try:
            filename = part.get_filename()
        except Exception:
            filename = None
        if disposition == "attachment" or filename or ctype not in ("text/plain", "text/html"):
            try:
                decoded = part.get_payload(decode=True)
                payload = decoded if isinstance(decoded, bytes) else b""
            except Exception as e:
                problems.append(f"undecodable attachment ({type(e).__name__})")
                payload = b""
            attachments.append(((filename or f"part-{len(attachments) + 1}")[:255], ctype[:255], payload))
            continue
        try:
            content = part.get_content()
        except (LookupError, UnicodeError, ValueError, AssertionError) as e:
            problems.append(f"undecodable {ctype} part ({type(e).__name__})")
            undecoded = part.get_payload(decode=True)
            content = undecoded.decode("utf-8", errors="replace") if isinstance(undecoded, bytes) else ""
        (text_parts if ctype == "text/plain" else html_parts).append(str(content))
    return "\n".join(text_parts), "\n".join(html_parts), attachments


def find_ticket(inbound: Inbound) -> Ticket | None:
    """Thread by In-Reply-To / References first, then by a ticket reference in the subject."""
    ids = [*inbound.in_reply_to.split(), *reversed(inbound.references.split())]
    if ids:
        hit = Message.objects.filter(message_id__in=ids).select_related("ticket").first()
        if hit is not None:
            return hit.ticket
    match = REFERENCE_RE.search(inbound.subject)
    if match:
        return Ticket.objects.filter(pk=int(match.group(1))).first()
    return None


@dataclass
class StoreResult:
    """The outcome of storing one raw message."""

    message: Message | None
    duplicate: bool
    flagged: bool
    ticket: Ticket | None


def store(raw: bytes, source: str = "") -> StoreResult:
    """Store one raw message: raw bytes first, then the parsed message on its ticket. Idempotent by Message-ID."""
    parsed = parse(raw)
    inbound = parsed.inbound
    digest = hashlib.sha256(raw).hexdigest()
    if not inbound.message_id:
        # No Message-ID: derive one from the content so importing the same bytes twice stores them once.
        inbound.message_id = f"<{digest}@no-message-id.accord>"
    if Message.objects.filter(message_id=inbound.message_id).exists():
        return StoreResult(None, True, inbound.flagged, None)
    try:
        with transaction.atomic():
            inbound.raw = RawMessage.objects.create(sha256=digest, data=raw, size=len(raw), source=source[:300])
            ticket = find_ticket(inbound)
            opened = ticket is None or ticket.status == Ticket.Status.CLOSED
            if opened:
                ticket = do_open_ticket(inbound)
                message = ticket.first_message  # type: ignore[attr-defined]
            else:
                assert ticket is not None
                message = do_add_customer_message(ticket, inbound)
            if parsed.attachments:
                Attachment.objects.bulk_create(
                    [
                        Attachment(message=message, filename=name, content_type=ctype, size=len(data), data=data)
                        for name, ctype, data in parsed.attachments
                    ]
                )
            if opened and not inbound.auto_generated:
                from .outbound import queue_acknowledgement

                queue_acknowledgement(ticket, message, ticket.new_clocks)  # type: ignore[attr-defined]
    except IntegrityError:
        # Another importer stored the same Message-ID between our check and our insert.
        if Message.objects.filter(message_id=inbound.message_id).exists():
            return StoreResult(None, True, inbound.flagged, None)
        raise
    return StoreResult(message, False, inbound.flagged, ticket)


def store_many(messages: Iterable[tuple[str, bytes]], batch: int = 100) -> Iterator[tuple[str, StoreResult]]:
    """Store messages, committing every `batch` of them: one commit per batch instead of per message.

    Each message still runs in its own savepoint, so a failure loses nothing else; a file import can simply
    be run again (it is idempotent). IMAP polling stores one by one, because it marks each message seen.
    """
    iterator = iter(messages)
    while True:
        chunk = list(itertools.islice(iterator, batch))
        if not chunk:
            return
        with transaction.atomic():
            results = [(source, store(raw, source=source)) for source, raw in chunk]
        yield from results


def iter_raw_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """Raw messages from an .eml file, an mbox file, a Maildir, or a directory of those."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in box.iterkeys():
                yield f"{path}:{key}", box.get_bytes(key)
            return
        for child in sorted(path.iterdir()):
            if child.is_file() or child.is_dir():
                yield from iter_raw_messages(child)
        return
    with path.open("rb") as f:
        head = f.read(5)
    if head == b"From ":
        box_m = mailbox.mbox(path, factory=None, create=False)
        for i, key in enumerate(box_m.iterkeys()):
            yield f"{path}#{i + 1}", box_m.get_bytes(key)
        return
    yield str(path), path.read_bytes()
