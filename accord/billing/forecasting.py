"""Forecasts of what the meters count per account, and of each service's requests, with their alerts (issue 19).

- **Per account and meter**: the meter's daily quantity over the last `HISTORY_DAYS` complete days of the
  account's own calendar (the same `usage.measure` the invoices use, so a forecast and a bill never disagree on
  the past), forecast `HORIZON` days ahead (`accord.lib.forecast`: ETS with a weekly season and a trend, with
  95% prediction intervals). Alerts: the month's projected quantity (what was used so far plus the forecast of
  the month's remaining days) above the plan's included quantity, or across one of the plan's price tiers; and,
  for an account's commitment (`customers.Commitment` with a volume, matched to the meters whose unit or name is
  the commitment's unit), the period's projected quantity passing the committed volume (`commitment`), or, for a
  period that ends within the forecast, falling short of it at the end (`shortfall`).
- **Per service**: requests per UTC day from the gateway's hour rows for all accounts. Alert: the forecast above
  what the service's primary pool can serve in a day (`pool_daily_capacity`).
- **Sudden change**, for both: the last complete day outside the 99% interval of its own one-day-ahead forecast
  ("a thousand e-mails a week become a thousand a day", caught on its first day).

A series too short to forecast (under four weeks) says so and draws no forecast line.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Sum
from django.utils import timezone

from accord.catalog.models import Pool, Service
from accord.customers.models import Account, Commitment
from accord.gateway.models import ALL_ACCOUNTS, HOUR, Rollup
from accord.lib.charts import Level
from accord.lib.forecast import Change, Forecast, forecast, sudden_change

from .invoicing import PlanBook, local_midnight, month_days
from .models import ForecastAlert, Meter, StoredForecast
from .pricing import Price
from .usage import account_key, measure

HISTORY_DAYS = 84  # twelve weeks: the weekly pattern twelve times
HORIZON = 56  # eight weeks ahead
UTILISATION = 0.7  # the share of a pool's capacity a forecast may fill before it is an alert (governance's default)


@dataclass(frozen=True)
class Alert:
    kind: str  # included | tier | commitment | shortfall | capacity | change
    subject: str  # "account GLOBEX", "service booking"
    meter: str
    message: str
    on: dt.date | None = None  # the day the forecast crosses the level (the changed day for a change)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "subject": self.subject, "meter": self.meter, "message": self.message,
                "on": self.on.isoformat() if self.on else None}


@dataclass
class Outlook:
    """One series: its history, its forecast, the levels drawn beside it and its alerts."""

    subject: str
    meter: str
    unit: str
    days: list[dt.date]
    history: list[float]
    forecast: Forecast
    change: Change | None
    levels: list[Level] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    account_id: int | None = None  # an account's series: whose manager its alerts are sent to

    @property
    def ahead(self) -> list[dt.date]:
        last = self.days[-1]
        return [last + dt.timedelta(days=i + 1) for i in range(len(self.forecast.mean))]

    def as_dict(self) -> dict[str, object]:
        change = self.change
        return {"subject": self.subject, "meter": self.meter, "unit": self.unit,
                "history": {"first_day": self.days[0].isoformat(), "values": self.history},
                "forecast": {**self.forecast.as_dict(), "first_day": self.ahead[0].isoformat() if self.ahead else None},
                "last_day": None if change is None else {"actual": change.actual, "expected": change.expected,
                                                        "lower": change.lower, "upper": change.upper,
                                                        "sudden": change.sudden},
                "levels": [{"label": lv.label, "per_day": lv.value} for lv in self.levels],
                "alerts": [a.as_dict() for a in self.alerts]}


def _last_complete_day(zone: str, now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(ZoneInfo(zone)).date() - dt.timedelta(days=1)


def _change_alert(outlook: Outlook) -> None:
    change = outlook.change
    if change is not None and change.sudden:
        outlook.alerts.append(Alert(
            "change", outlook.subject, outlook.meter,
            f"{outlook.days[-1]:%Y-%m-%d}: {change.actual:,.0f} {outlook.unit}, {change.direction} from the "
            f"{change.lower:,.0f}-{change.upper:,.0f} expected (forecast {change.expected:,.0f})", outlook.days[-1]))


def _series(subject: str, meter: str, unit: str, days: list[dt.date], values: list[float], horizon: int) -> Outlook:
    """The series from its first day with any volume (a new account's empty weeks before it are not history)."""
    start = next((i for i, v in enumerate(values) if v), len(values) - 1)
    days, values = days[start:], values[start:]
    return Outlook(subject, meter, unit, days, values, forecast(values, horizon), sudden_change(values))


# -- accounts ---------------------------------------------------------------------------------------------------


def account_outlooks(accounts: Iterable[Account], meters: Iterable[Meter], *, history_days: int = HISTORY_DAYS,
                     horizon: int = HORIZON, now: dt.datetime | None = None,
                     progress: Callable[[int], object] | None = None) -> list[Outlook]:
    """Each account's daily quantity of each meter over its last `history_days` complete local days, forecast."""
    meters = list(meters)
    by_zone: dict[str, list[Account]] = defaultdict(list)
    for account in accounts:
        by_zone[account.timezone or "UTC"].append(account)
    book = PlanBook()
    out: list[Outlook] = []
    for zone, members in sorted(by_zone.items()):
        last = _last_complete_day(zone, now)
        days = [last - dt.timedelta(days=history_days - 1 - i) for i in range(history_days)]
        keys = {a.pk: account_key(a.external_id, a.pk) for a in members}
        commitments: dict[int, list[Commitment]] = defaultdict(list)
        for c in Commitment.objects.filter(account__in=members, volume__isnull=False, period_end__gt=last,
                                           period_start__lte=last + dt.timedelta(days=horizon)).order_by("period_start"):
            commitments[c.account_id].append(c)
        for meter in meters:
            daily: dict[int, list[float]] = {a.pk: [0.0] * history_days for a in members}
            for i, day in enumerate(days):
                counted = measure(meter, keys, local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone))
                for pk, quantity in counted.items():
                    daily[pk][i] = float(quantity)
            for account in members:
                outlook = _series(f"account {keys[account.pk]}", meter.name, meter.unit or "units", days,
                                  daily[account.pk], horizon)
                outlook.account_id = account.pk
                _plan_alerts(outlook, account, meter, book)
                _commitment_alerts(outlook, account, meter, commitments.get(account.pk, []), keys[account.pk])
                _change_alert(outlook)
                out.append(outlook)
                if progress:
                    progress(1)
    return out


def _plan_alerts(outlook: Outlook, account: Account, meter: Meter, book: PlanBook) -> None:
    """The plan's included quantity and price tiers for this meter, as levels; alerts where a month's projected
    quantity (used so far plus forecast) crosses them."""
    fc = outlook.forecast
    last = outlook.days[-1]
    first_ahead = last + dt.timedelta(days=1)
    part = book.parts(account, first_ahead, first_ahead)[0]
    plan = part.plan
    if plan is None:
        return
    price = next((p for p in (Price.from_dict(d) for d in plan.prices) if p.meter == meter.name), None)
    if price is None:
        return
    month_first, month_last = month_days(f"{first_ahead:%Y-%m}")
    days_in_month = (month_last - month_first).days + 1
    bounds: list[tuple[str, str, Decimal]] = []
    if price.included > 0:
        bounds.append(("included", f"included in plan {plan.name}", price.included))
    if price.model in ("graduated", "volume"):
        bounds += [("tier", f"plan {plan.name}'s tier up to {b.up_to:,}", b.up_to) for b in price.bands
                   if b.up_to is not None]
    # a month's quantity from its days: a count adds them up; a time-weighted average is the days' averages added
    # up over the month's days (days not yet come count 0, as on the invoice); a peak is the largest day
    gauge = meter.aggregation in (Meter.Aggregation.TIME_WEIGHTED, Meter.Aggregation.MAX)
    for _kind, label, monthly in bounds:
        outlook.levels.append(Level(f"{label} ({monthly:,.0f}/month)",
                                    float(monthly) if gauge else float(monthly) / days_in_month))
    if not fc.ok or not bounds:
        return

    def month_of(day: dt.date, total: float) -> float:
        if meter.aggregation == Meter.Aggregation.TIME_WEIGHTED:
            return total / calendar.monthrange(day.year, day.month)[1]
        return total

    # each month the forecast reaches into: the quantity so far (history) and day by day ahead
    used: dict[str, float] = defaultdict(float)
    for day, value in zip(outlook.days, outlook.history, strict=True):
        m = f"{day:%Y-%m}"
        used[m] = max(used[m], value) if meter.aggregation == Meter.Aggregation.MAX else used[m] + value
    crossed: set[tuple[str, str]] = set()
    for day, value in zip(outlook.ahead, fc.mean, strict=True):
        month = f"{day:%Y-%m}"
        before = used[month]
        used[month] = max(before, value) if meter.aggregation == Meter.Aggregation.MAX else before + value
        for kind, label, monthly in bounds:
            if (month_of(day, before) <= float(monthly) < month_of(day, used[month])
                    and (month, label) not in crossed):
                crossed.add((month, label))
                outlook.alerts.append(Alert(
                    kind, outlook.subject, meter.name,
                    f"{month}: forecast to pass the {monthly:,.0f} {outlook.unit} {label} on {day:%Y-%m-%d}",
                    day))


def _commitment_alerts(outlook: Outlook, account: Account, meter: Meter, commitments: list[Commitment],
                       key: str) -> None:
    """The account's committed volumes for this meter (a commitment whose unit is the meter's unit or name): the
    period's quantity so far (measured from the period's first day, which may lie before the series) plus the
    forecast, day by day: an alert on the day it passes the volume, and one when a period ending within the
    forecast is projected to end short of it. Counted meters only: a gauge's average has no period total."""
    fc = outlook.forecast
    if not fc.ok or meter.aggregation in (Meter.Aggregation.TIME_WEIGHTED, Meter.Aggregation.MAX):
        return
    names = {n.casefold() for n in (meter.unit, meter.name) if n}
    zone = account.timezone or "UTC"
    for c in commitments:
        if not c.unit or c.unit.casefold() not in names:
            continue
        volume = float(c.volume or 0)
        label = f"commitment of {c.volume:,} {c.unit} for {c.period_start:%Y-%m-%d}..{c.period_end:%Y-%m-%d}"
        outlook.levels.append(Level(f"{label} (per day)", volume / ((c.period_end - c.period_start).days + 1)))
        first_ahead = outlook.ahead[0]
        start = max(c.period_start, outlook.days[0])
        used = sum(v for d, v in zip(outlook.days, outlook.history, strict=True) if start <= d <= c.period_end)
        if c.period_start < outlook.days[0]:  # the part of the period before the series
            used += float(measure(meter, {account.pk: key}, local_midnight(c.period_start, zone),
                                  local_midnight(outlook.days[0], zone)).get(account.pk, 0))
        passed = used > volume
        for day, value in zip(outlook.ahead, fc.mean, strict=True):
            if day < c.period_start or day > c.period_end:
                continue
            used += value
            if not passed and used > volume:
                passed = True
                outlook.alerts.append(Alert(
                    "commitment", outlook.subject, meter.name,
                    f"forecast to pass the {label} on {day:%Y-%m-%d} ({used:,.0f} by then)", day))
        ends_ahead = first_ahead <= c.period_end <= outlook.ahead[-1]
        if ends_ahead and used < volume:
            outlook.alerts.append(Alert(
                "shortfall", outlook.subject, meter.name,
                f"forecast to end {volume - used:,.0f} {c.unit} short of the {label} ({used:,.0f} by "
                f"{c.period_end:%Y-%m-%d})", c.period_end))


# -- services ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceDays:
    """A service's requests per UTC day, and what the capacity estimate needs."""

    days: list[dt.date]
    requests: list[float]
    peak_share: float  # the busiest hour's share of its day, on average over the days with requests
    mean_latency_s: float


def service_days(service: str, last: dt.date, history_days: int) -> ServiceDays:
    first = last - dt.timedelta(days=history_days - 1)
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    rows = (Rollup.objects.filter(window_seconds=HOUR, account=ALL_ACCOUNTS, service=service,
                                  window_start__gte=start, window_start__lt=end)
            .order_by().values_list("window_start").annotate(n=Sum("count"), ms=Sum("latency_sum_ms")))
    days = [first + dt.timedelta(days=i) for i in range(history_days)]
    per_day = [0.0] * history_days
    peak = [0.0] * history_days
    total_ms = total_n = 0.0
    for hour, n, ms in rows:
        i = (hour.astimezone(dt.UTC).date() - first).days
        per_day[i] += n
        peak[i] = max(peak[i], float(n))
        total_n += n
        total_ms += ms or 0.0
    shares = [p / d for p, d in zip(peak, per_day, strict=True) if d > 0]
    return ServiceDays(days, per_day, sum(shares) / len(shares) if shares else 1 / 24,
                       total_ms / total_n / 1000 if total_n else 0.0)


def pool_daily_capacity(pool: Pool, mean_latency_s: float, peak_share: float) -> float | None:
    """Requests a day the pool serves with its busiest hour at `UTILISATION` of its capacity.

    Little's law: `capacity` requests at once, each taking the mean latency, is capacity / latency requests a
    second; the busiest hour carries `peak_share` of the day. None without a latency to go by."""
    if mean_latency_s <= 0 or peak_share <= 0:
        return None
    per_hour = pool.capacity / mean_latency_s * 3600 * UTILISATION
    return per_hour / peak_share


def service_outlooks(services: Iterable[Service], *, history_days: int = HISTORY_DAYS, horizon: int = HORIZON,
                     now: dt.datetime | None = None, progress: Callable[[int], object] | None = None
                     ) -> list[Outlook]:
    last = _last_complete_day("UTC", now)
    out: list[Outlook] = []
    for service in services:
        measured = service_days(service.name, last, history_days)
        outlook = _series(f"service {service.name}", "requests", "requests", measured.days, measured.requests,
                          horizon)
        primary = next((p for p in service.pools.all() if p.role == Pool.Role.PRIMARY), None)
        capacity = pool_daily_capacity(primary, measured.mean_latency_s, measured.peak_share) if primary else None
        if capacity is not None and primary is not None:
            outlook.levels.append(Level(f"pool {primary.name} capacity", capacity))
            crossing = outlook.forecast.first_crossing(capacity) if outlook.forecast.ok else None
            if crossing is not None:
                day = outlook.ahead[crossing]
                outlook.alerts.append(Alert(
                    "capacity", outlook.subject, "requests",
                    f"forecast to pass pool {primary.name}'s capacity ({capacity:,.0f} requests a day at "
                    f"{UTILISATION:.0%} in the busiest hour) on {day:%Y-%m-%d}", day))
        _change_alert(outlook)
        out.append(outlook)
        if progress:
            progress(1)
    return out


# -- stored for the pages -----------------------------------------------------------------------------------------


def store(outlooks: Iterable[Outlook], now: dt.datetime | None = None) -> int:
    """Keep each series' latest forecast (one row per subject and meter) for the pages; returns how many."""
    made = now or timezone.now()
    n = 0
    for o in outlooks:
        StoredForecast.objects.update_or_create(subject=o.subject, meter=o.meter,
                                                defaults={"made_at": made, "data": o.as_dict()})
        n += 1
    return n


@dataclass(frozen=True)
class Drawn:
    """A stored forecast as a page shows it: the chart, and the alerts in words."""

    meter: str
    made_at: dt.datetime
    chart: str
    alerts: list[dict[str, object]]
    reason: str


def drawn(subject: str) -> list[Drawn]:
    """The stored forecasts of one subject ('account KEY', 'service NAME'), drawn."""
    from accord.lib.charts import forecast_chart

    sent = deliveries(subject)
    out = []
    for row in StoredForecast.objects.filter(subject=subject):
        d = row.data
        first = dt.date.fromisoformat(d["history"]["first_day"])
        history = [float(v) for v in d["history"]["values"]]
        days = [first + dt.timedelta(days=i) for i in range(len(history))]
        fc = d["forecast"]
        ahead = [days[-1] + dt.timedelta(days=i + 1) for i in range(len(fc["mean"]))]
        title = f"{d['meter']} per day ({d['unit']}), {fc['interval']:.0%} forecast interval"
        chart = forecast_chart(f"forecast-{row.pk}", title, days, history, ahead, fc["mean"], fc["lower"],
                               fc["upper"], [Level(lv["label"], lv["per_day"]) for lv in d["levels"]],
                               reason=fc["reason"] or "")
        alerts = [{**a, "delivery": sent.get((row.meter, str(a["kind"])), "")} for a in d["alerts"]]
        out.append(Drawn(row.meter, row.made_at, str(chart), alerts, fc["reason"] or ""))
    return out


def deliveries(subject: str) -> dict[tuple[str, str], str]:
    """How the subject's open alerts were sent, per (meter, kind), in words: where to and when, or what failed."""
    out: dict[tuple[str, str], str] = {}
    for alert in ForecastAlert.objects.filter(subject=subject, cleared_at__isnull=True).prefetch_related("notifications"):
        sent_to = sorted(alert.notifications.all(), key=lambda n: (n.channel, n.pk))
        done = [n for n in sent_to if n.sent_at is not None]
        failed = [n for n in sent_to if n.sent_at is None]
        said = []
        if done:
            said.append(f"sent {max(n.sent_at for n in done if n.sent_at):%Y-%m-%d %H:%M} to "
                        f"{', '.join(n.target if n.channel == 'email' else 'a webhook' for n in done)}")
        for n in failed:
            where = n.target if n.channel == "email" else f"webhook {n.target}"
            state = "given up" if n.failed_at else "retried by the next run"
            said.append(f"not delivered to {where} ({n.attempts} attempts, {state}): {n.last_error}")
        out[(alert.meter, alert.kind)] = "; ".join(said) or "not sent: no recipient is configured"
    return out
