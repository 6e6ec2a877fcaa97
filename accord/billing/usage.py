"""Usage: what a meter counted for accounts over [start, end), read from the rows the SLA views read.

Gateway meters read the gateway's rollups (`accord.gateway.models.Rollup`): the hour rows when both ends of the
window fall on a whole hour (they hold exactly the sum of the minute rows), else the minute rows. A late rollup
belongs to the window of its minute, whenever it was written. Desk meters read tickets and messages by their
`created_at`; chat minutes read chats by their start.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.db.models import Count, Expression, F, Q, Sum

from accord.chat.models import ChatSession
from accord.desk.models import Message, Ticket
from accord.gateway.models import ALL_ACCOUNTS, HOUR, MINUTE, Rollup

from .models import Meter

CHUNK = 500  # accounts per IN (...) list
WIDE = 2000  # above this many accounts a gateway query reads every account's rows and keeps the wanted ones


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def account_key(external_id: str | None, pk: int) -> str:
    """How the gateway names an account in its rollups (accord.gateway.snapshot.account_key)."""
    return external_id or str(pk)


def measure(meter: Meter, accounts: dict[int, str], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    """The meter's quantity per account id (`accounts`: id -> gateway key) over [start, end); absent means 0."""
    if meter.source.startswith("gateway."):
        return _gateway(meter, accounts, start, end)
    ids = list(accounts)
    out: dict[int, Decimal] = {}
    for part in _chunks(ids):
        out.update(_desk(meter, part, start, end))
    return out


def _gateway(meter: Meter, accounts: dict[int, str], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    whole_hours = start.timestamp() % HOUR == 0 and end.timestamp() % HOUR == 0
    rows = Rollup.objects.filter(window_seconds=HOUR if whole_hours else MINUTE,
                                 window_start__gte=start, window_start__lt=end)
    if meter.service:
        rows = rows.filter(service=meter.service)
    if meter.operation:
        rows = rows.filter(operation=meter.operation)
    by_key = {key: pk for pk, key in accounts.items()}
    if meter.source == "gateway.requests":
        value: F | Expression = F("count")
    elif meter.direction == "in":
        value = F("bytes_in")
    elif meter.direction == "out":
        value = F("bytes_out")
    else:
        value = F("bytes_in") + F("bytes_out")
    queries = [rows.exclude(account=ALL_ACCOUNTS)] if len(accounts) > WIDE else [
        rows.filter(account__in=[accounts[pk] for pk in part]) for part in _chunks(list(accounts))]
    out: dict[int, Decimal] = {}
    for q in queries:
        if meter.aggregation == Meter.Aggregation.MAX:  # the busiest hour
            hours: dict[tuple[str, int], int] = defaultdict(int)
            for account, start_at, n in q.order_by().values_list("account", "window_start").annotate(n=Sum(value)).iterator():
                hours[(account, int(start_at.timestamp()) // HOUR)] += n
            for (account, _), n in hours.items():
                if account in by_key:
                    pk = by_key[account]
                    out[pk] = max(out.get(pk, Decimal(0)), Decimal(n))
            continue
        for account, n in q.order_by().values_list("account").annotate(n=Sum(value)).iterator():
            if account in by_key and n:
                out[by_key[account]] = Decimal(n)
    return out


def _chat_minutes(chats: Iterable[tuple[int, dt.datetime, dt.datetime]], biggest: bool) -> dict[int, Decimal]:
    """Each ended chat counts its started minutes (61 s is 2 minutes)."""
    out: dict[int, Decimal] = {}
    for account, begun, ended in chats:
        minutes = Decimal(max(1, math.ceil((ended - begun).total_seconds() / 60)))
        out[account] = max(out.get(account, Decimal(0)), minutes) if biggest else out.get(account, Decimal(0)) + minutes
    return out


def _desk(meter: Meter, ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    if meter.source == Meter.Source.TICKETS:
        tickets = (Ticket.objects.filter(account_id__in=ids, created_at__gte=start, created_at__lt=end)
                   .order_by().values_list("account_id").annotate(n=Count("id")))
        return {a: Decimal(n) for a, n in tickets}
    if meter.source == Meter.Source.CHAT_MINUTES:
        chats = (ChatSession.objects.filter(ticket__account_id__in=ids, created_at__gte=start, created_at__lt=end,
                                            ended_at__isnull=False)
                 .values_list("ticket__account_id", "created_at", "ended_at"))
        return _chat_minutes(((a, b, e) for a, b, e in chats if e is not None),
                             meter.aggregation == Meter.Aggregation.MAX)
    messages = Message.objects.filter(ticket__account_id__in=ids, created_at__gte=start, created_at__lt=end)
    if meter.source == Meter.Source.ACTIVE_AGENTS:
        q = (messages.filter(kind=Message.Kind.REPLY, author_user__isnull=False).order_by().values_list("ticket__account_id")
             .annotate(n=Count("author_user", distinct=True)))
        return {a: Decimal(n) for a, n in q}
    kinds = {"inbound": [Message.Kind.INBOUND], "outbound": [Message.Kind.REPLY]}.get(
        meter.direction, [Message.Kind.INBOUND, Message.Kind.REPLY])
    q = messages.filter(Q(kind__in=kinds)).order_by().values_list("ticket__account_id").annotate(n=Count("id"))
    return {a: Decimal(n) for a, n in q}


