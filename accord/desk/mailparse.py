"""E-mail parsing: raw RFC 5322 bytes to a message ready to store, with no database work.

Shared by the one-by-one store (`mail.py`) and the batch import (`mailbatch.py`), which both build on it.
Nothing is ever dropped: whatever cannot be parsed or decoded is flagged with the reason and kept with its raw
source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, ClassVar

from django.conf import settings

from .actions import Inbound, nul_free
from .models import REFERENCE_PREFIX, Attachment, Message, Ticket

MAX_BODY_CHARS = 1_000_000
REFERENCE_RE = re.compile(rf"\[{REFERENCE_PREFIX}-(\d{{1,12}})\]")
MSGID_RE = re.compile(r"<[^<>\s]+>")
BATCH_MESSAGES = 200  # messages per transaction in a file import
BATCH_BYTES = 16 * 1024 * 1024  # ... or fewer, when their raw sources add up to this


class _ParseOncePolicy(policy.EmailPolicy):
    """`policy.default`, except that a header value is parsed once, not on every read.

    The email package parses a header each time it is read: Content-Type alone about a dozen times per
    message (get_content_type, get_content_maintype, get_param, walk, the parser itself), each time building a
    new header class. Header objects are immutable, so equal (name, value) pairs can share one; the cache is
    bounded, and a value that cannot be parsed is not cached (it raises again, as before).
    """

    _cache: ClassVar[dict[tuple[str, str], Any]] = {}

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if not isinstance(value, str) or len(value) > 1000:
            return super().header_fetch_parse(name, value)
        key = (name, value)
        header = self._cache.get(key)
        if header is None:
            header = super().header_fetch_parse(name, value)
            if len(self._cache) >= 5000:
                self._cache.clear()
            self._cache[key] = header
        return header


_PARSER = BytesParser(policy=_ParseOncePolicy())


def max_message_bytes() -> int:
    """The largest raw message stored whole (settings.ACCORD_MAX_EMAIL_BYTES, 25 MiB by default)."""
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
        # The value as sent: reading it through get_all() would parse it, and raise, again.
        return next((str(v).strip() for k, v in msg.raw_items() if k.lower() == name.lower()), "")


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


def thread_ids(inbound: Inbound) -> list[str]:
    """The Message-IDs a message answers: In-Reply-To first, then References, newest first."""
    return [*inbound.in_reply_to.split(), *reversed(inbound.references.split())]


@dataclass
class StoreResult:
    """The outcome of storing one raw message."""

    message: Message | None
    duplicate: bool
    flagged: bool
    ticket: Ticket | None
    acknowledgement: Message | None = None  # the auto-acknowledgement queued for it (sent after the commit)


@dataclass
class Prepared:
    """A raw message parsed and ready to store: its Message-ID is set (derived from the bytes when missing)."""

    raw: bytes
    source: str
    digest: str
    parsed: ParsedMail

    @property
    def inbound(self) -> Inbound:
        return self.parsed.inbound


def prepare(raw: bytes, source: str = "") -> Prepared:
    """Parse a raw message (never raises) and give it a Message-ID, with no database work."""
    parsed = parse(raw)
    inbound = parsed.inbound
    digest = hashlib.sha256(raw).hexdigest()
    if not inbound.message_id:
        # No Message-ID: derive one from the content so importing the same bytes twice stores them once.
        inbound.message_id = f"<{digest}@no-message-id.accord>"
    # The text as it will be stored (PostgreSQL text holds no NUL), so the look-ups by Message-ID find it again.
    nul_free(inbound)
    return Prepared(raw, source[:300], digest, parsed)


def attachments(message: Message, parsed: ParsedMail) -> list[Attachment]:
    """The attachments of a stored message, not saved."""
    return [
        Attachment(message=message, filename=name, content_type=ctype, size=len(data), data=data)
        for name, ctype, data in parsed.attachments
    ]
