"""E-mail in: thread parsed messages (`mailparse`) onto tickets and store them idempotently, one by one or
in batches (`mailbatch`).

Nothing is ever dropped: the raw bytes are stored first; whatever cannot be parsed or decoded is flagged
with the reason and kept with its raw source.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.db import IntegrityError, transaction

from . import outbound
from .actions import Inbound, do_add_customer_message, do_open_ticket
from .mailbatch import store_batch
from .mailparse import (
    BATCH_BYTES,
    BATCH_MESSAGES,
    REFERENCE_RE,
    Prepared,
    StoreResult,
    attachments,
    prepare,
    thread_ids,
)
from .models import Attachment, Message, RawMessage, Ticket


def find_ticket(inbound: Inbound) -> Ticket | None:
    """Thread by In-Reply-To / References first, then by a ticket reference in the subject."""
    ids = thread_ids(inbound)
    if ids:
        hit = Message.objects.filter(message_id__in=ids).select_related("ticket").first()
        if hit is not None:
            return hit.ticket
    match = REFERENCE_RE.search(inbound.subject)
    if match:
        return Ticket.objects.filter(pk=int(match.group(1))).first()
    return None


def store(raw: bytes, source: str = "", *, acknowledge: bool = False) -> StoreResult:
    """Store one raw message: raw bytes first, then the parsed message on its ticket. Idempotent by Message-ID.

    `acknowledge`: answer a message that opens a ticket with an auto-acknowledgement. Only for mail that arrives
    now (IMAP polling): archived mail is from people who wrote long ago and must not hear from us again.
    """
    return store_prepared(prepare(raw, source), acknowledge=acknowledge)


def store_prepared(prepared: Prepared, *, acknowledge: bool = False) -> StoreResult:
    """Store one prepared message in its own savepoint (see `store`)."""
    parsed, raw = prepared.parsed, prepared.raw
    inbound = parsed.inbound
    if Message.objects.filter(message_id=inbound.message_id).exists():
        return StoreResult(None, True, inbound.flagged, None)
    try:
        with transaction.atomic():
            inbound.raw = RawMessage.objects.create(sha256=prepared.digest, data=raw, size=len(raw), source=prepared.source)
            ticket = find_ticket(inbound)
            opened = ticket is None or ticket.status == Ticket.Status.CLOSED
            if opened:
                ticket = do_open_ticket(inbound)
                message = ticket.first_message  # type: ignore[attr-defined]
            else:
                assert ticket is not None
                message = do_add_customer_message(ticket, inbound)
            if parsed.attachments:
                Attachment.objects.bulk_create(attachments(message, parsed))
            ack = None
            if acknowledge and opened and not inbound.auto_generated:
                ack = outbound.queue_acknowledgement(ticket, message, ticket.new_clocks)  # type: ignore[attr-defined]
    except IntegrityError:
        # Another importer stored the same Message-ID between our check and our insert.
        if Message.objects.filter(message_id=inbound.message_id).exists():
            return StoreResult(None, True, inbound.flagged, None)
        raise
    return StoreResult(message, False, inbound.flagged, ticket, ack)


def store_many(
    messages: Iterable[tuple[str, bytes]], batch: int = BATCH_MESSAGES, max_bytes: int = BATCH_BYTES, *,
    acknowledge: bool = False,
) -> Iterator[tuple[str, StoreResult]]:
    """Store (source, raw bytes) pairs in order, one transaction per batch, as storing them one by one would.

    A batch is `batch` messages, or fewer when their raw sources reach `max_bytes`. It is parsed first, then
    stored with a few statements per table (see mailbatch.py); messages that answer each other in one batch
    thread as they would one by one. Should another importer store one of the same messages meanwhile, the
    batch is stored again one message at a time. Results are yielded once their batch has committed; a file
    import can simply be run again (it is idempotent). IMAP polling stores one by one, as it marks each
    message seen after its commit. `acknowledge` as for `store` (off: an import is of mail sent long ago).
    """

    for chunk in _chunks(messages, batch, max_bytes):
        prepared = [prepare(raw, source) for source, raw in chunk]
        try:
            with transaction.atomic():
                results = store_batch(prepared, acknowledge=acknowledge)
        except IntegrityError:
            # A Message-ID or a new sender's address was stored by someone else after our look-ups.
            with transaction.atomic():
                results = [store_prepared(p, acknowledge=acknowledge) for p in prepared]
        yield from zip([source for source, _raw in chunk], results, strict=True)


def _chunks(messages: Iterable[tuple[str, bytes]], batch: int, max_bytes: int) -> Iterator[list[tuple[str, bytes]]]:
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for item in messages:
        chunk.append(item)
        size += len(item[1])
        if len(chunk) >= batch or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


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
