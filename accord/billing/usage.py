"""Usage: what a meter counted for accounts over [start, end), read from the rows the SLA views read.

Gateway meters read the gateway's rollups (`accord.gateway.models.Rollup`): the hour rows when both ends of the
window fall on a whole hour (they hold exactly the sum of the minute rows), else the minute rows. A late rollup
belongs to the window of its minute, whenever it was written. Desk meters read tickets and messages by their
`created_at`; chat minutes read chats by their start; `chat.open` is a gauge (chats open at once), averaged over
time or at its peak (`open_level`). Sources registered by the apps above billing (`billing.sources`, e.g.
outreach's `outreach.messages`) are measured by their own functions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import Count, Expression, F, Q, QuerySet, Sum
from django.utils import timezone

from accord.chat.models import ChatSession
from accord.desk.models import Message, Ticket
from accord.gateway.models import HOUR, MINUTE, Rollup

from .models import Meter
from .sources import registered

DESK_SOURCES = {Meter.Source.TICKETS, Meter.Source.MESSAGES, Meter.Source.CHAT_MINUTES, Meter.Source.ACTIVE_AGENTS,
                Meter.Source.CHATS_OPEN}
TIME_WEIGHTED_PLACES = Decimal("0.0001")  # a time-weighted average is rounded half-up to the quantity's 4 places

CHUNK = 500  # accounts per IN (...) list: each reads its accounts' rows by the (account, resolution, start) index


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def account_key(external_id: str | None, pk: int) -> str:
    """How the gateway names an account in its rollups (accord.gateway.snapshot.account_key)."""
    return external_id or str(pk)


def measure(meter: Meter, accounts: dict[int, str], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    """The meter's quantity per account id (`accounts`: id -> gateway key) over [start, end); absent means 0.

    A source an app above billing registered (`billing.sources`) is measured by its own function."""
    if meter.source.startswith("gateway."):
        return _gateway(meter, accounts, start, end)
    extra = registered(meter.source)
    if extra is None and meter.source not in DESK_SOURCES:
        raise ValueError(f"meter {meter.name}: no meter source '{meter.source}' (is the app that registers it "
                         f"installed?)")
    ids = list(accounts)
    out: dict[int, Decimal] = {}
    for part in _chunks(ids):
        out.update(extra.measure(meter, part, start, end) if extra else _desk(meter, part, start, end))
    return {pk: q for pk, q in out.items() if q}


def measure_many(meters: list[Meter], accounts: dict[int, str], start: dt.datetime,
                 end: dt.datetime) -> dict[int, dict[int, Decimal]]:
    """Per meter id, `measure`'s answer; the gateway's totals (requests, bytes) of every meter come from one read
    of the accounts' rollups, grouped by service and operation."""
    out: dict[int, dict[int, Decimal]] = {}
    totals = [m for m in meters if m.source.startswith("gateway.") and m.aggregation != Meter.Aggregation.MAX]
    for m in meters:
        out[m.pk] = {} if m in totals else measure(m, accounts, start, end)
    if not totals:
        return out
    by_key = {key: pk for pk, key in accounts.items()}
    for part in _chunks(list(accounts)):
        rows = (_rows(start, end).filter(account__in=[accounts[pk] for pk in part]).order_by()
                .values_list("account", "service", "operation")
                .annotate(n=Sum("count"), b_in=Sum("bytes_in"), b_out=Sum("bytes_out")))
        for account, service, operation, n, b_in, b_out in rows.iterator():
            pk = by_key.get(account)
            if pk is None:
                continue
            for m in totals:
                if (m.service and m.service != service) or (m.operation and m.operation != operation):
                    continue
                if m.source == Meter.Source.REQUESTS:
                    v = n
                else:
                    v = b_in if m.direction == "in" else b_out if m.direction == "out" else b_in + b_out
                if v:
                    got = out[m.pk]
                    got[pk] = got.get(pk, Decimal(0)) + Decimal(v)
    return out


def _rows(start: dt.datetime, end: dt.datetime) -> QuerySet[Rollup]:
    """The rollups of [start, end): hour rows when both ends are whole hours (exactly the sum of their minute
    rows), else minute rows."""
    return Rollup.objects.filter(window_seconds=HOUR if _whole_hours(start, end) else MINUTE,
                                 window_start__gte=start, window_start__lt=end)


def _whole_hours(start: dt.datetime, end: dt.datetime) -> bool:
    return start.timestamp() % HOUR == 0 and end.timestamp() % HOUR == 0


def _gateway(meter: Meter, accounts: dict[int, str], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    rows = _rows(start, end)
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
    queries = [rows.filter(account__in=[accounts[pk] for pk in part]) for part in _chunks(list(accounts))]
    out: dict[int, Decimal] = {}
    for q in queries:
        if meter.aggregation == Meter.Aggregation.MAX and _whole_hours(start, end):
            # The busiest hour, in the database: the hour rows summed per account and hour, the largest kept
            # (no row per hour comes back to Python).
            per_hour = q.order_by().values("account", "window_start").annotate(n=Sum(value))
            sql, params = per_hour.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT account, MAX(n) FROM ({sql}) per_hour GROUP BY account", params)
                for account, n in cursor.fetchall():
                    if account in by_key and n:
                        out[by_key[account]] = Decimal(n)
            continue
        if meter.aggregation == Meter.Aggregation.MAX:  # minute rows: the busiest hour summed here
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


def _micros(span: dt.timedelta) -> int:
    return span // dt.timedelta(microseconds=1)


def open_level(intervals: Iterable[tuple[int, dt.datetime, dt.datetime | None]], start: dt.datetime,
               end: dt.datetime, now: dt.datetime, aggregation: str) -> dict[int, Decimal]:
    """A gauge made of intervals (each open from its start to its end, or to `now` while it has none), per key.

    `time_weighted`: the integral of the gauge over [start, end) divided by the length of [start, end), i.e.
    sum(overlap of each interval with the window) / (end - start), to the microsecond, rounded half-up to 4
    places; time after `now` counts 0 (a month not yet over is averaged over the whole month).
    `max`: the most intervals open at one instant (one ending at t and one starting at t do not overlap)."""
    overlap: dict[int, int] = defaultdict(int)
    events: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for key, begun, ended in intervals:
        stop = min(end, ended if ended is not None else max(now, begun))
        lo = max(begun, start)
        if stop <= lo:
            continue
        overlap[key] += _micros(stop - lo)
        events[key] += [(lo, 1), (stop, -1)]
    if aggregation == Meter.Aggregation.MAX:
        out: dict[int, Decimal] = {}
        for key, points in events.items():
            level = peak = 0
            for _at, step in sorted(points, key=lambda e: (e[0], e[1])):  # -1 before +1 at the same instant
                level += step
                peak = max(peak, level)
            out[key] = Decimal(peak)
        return out
    length = Decimal(_micros(end - start))
    return {key: (Decimal(n) / length).quantize(TIME_WEIGHTED_PLACES, ROUND_HALF_UP) for key, n in overlap.items()}


def _desk(meter: Meter, ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, Decimal]:
    if meter.source == Meter.Source.CHATS_OPEN:
        chats = (ChatSession.objects.filter(ticket__account_id__in=ids, created_at__lt=end)
                 .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
                 .values_list("ticket__account_id", "created_at", "ended_at"))
        return open_level(chats, start, end, timezone.now(), meter.aggregation)
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


