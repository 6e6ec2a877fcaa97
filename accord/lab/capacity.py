"""Capacity what-if (C5): dedicated premium capacity versus a shared pool with a standby pool used at peaks.

The seeds' story in numbers. Design A ("dedicated") gives premium tiers their own pool sized for the premium
peak and gives everyone else a pool sized for their peak; every instance runs all day. Design B ("shared +
standby") runs one pool sized for the normal load of everyone and reroutes premium traffic to a small standby
pool only while the shared pool is busier than a threshold. Both are replayed step by step over a load trace
and judged by the same queueing model, so the comparison is cost against service level, tier by tier.

Everything here is plain Python on plain data: no database, no Django. The management command
`accord capacity simulate` (accord/governance/management/commands/capacity.py) reads the files and prints;
docs/capacity.md explains the model and its assumptions.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accord.lib.csvio import RecordError, records

#: The latency objective is a percentile of the response time (queueing wait plus service).
LATENCY_QUANTILE = 0.95
#: Sizing gives up above this many instances in one pool: the objective is unreachable in practice.
MAX_INSTANCES = 1_000_000
COLUMNS = ("time", "tier", "requests")
DEDICATED, SHARED_STANDBY = "dedicated", "shared_standby"

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class CapacityError(ValueError):
    """The parameters (or the trace as a whole) do not allow a simulation; the message says why."""


class TraceError(CapacityError):
    """A trace file cannot be read; the message names the line and, where there is one, the column."""

    def __init__(self, line: int, column: str | None, message: str) -> None:
        self.line, self.column, self.reason = line, column, message
        where = f"line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")


# -- queueing model: M/M/c -----------------------------------------------------------------------------------


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival has to wait in an M/M/c queue (Erlang C).

    `offered_load` is a = arrival rate / service rate per server, in erlangs. The Erlang B recurrence
    B(k) = a·B(k-1) / (k + a·B(k-1)) stays between 0 and 1 for any c (no factorials, no powers), and
    C = B / (1 - rho·(1 - B)) with rho = a / c. At or beyond saturation (a >= c) every arrival waits: 1.0.
    """
    if servers < 1:
        raise ValueError(f"servers must be at least 1, got {servers}")
    if offered_load < 0 or math.isnan(offered_load):
        raise ValueError(f"offered load must be a non-negative number, got {offered_load}")
    if offered_load == 0:
        return 0.0
    if offered_load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return b / (1.0 - (offered_load / servers) * (1.0 - b))


def response_time_tail(t: float, servers: int, arrival_rate: float, service_rate: float) -> float:
    """P(T > t) for the response time T (wait + service) of a first-come-first-served M/M/c queue.

    The wait is 0 with probability 1 - C and Exp(theta) with theta = cμ - λ with probability C (Erlang C); the
    service is Exp(μ) and independent, so P(T > t) = e^(-μt) + C·μ·(e^(-theta·t) - e^(-μt)) / (μ - theta).
    """
    theta = servers * service_rate - arrival_rate
    if theta <= 0:
        return 1.0
    if t <= 0:
        return 1.0
    return _tail(t, service_rate, theta, erlang_c(servers, arrival_rate / service_rate))[0]


def _tail(t: float, mu: float, theta: float, wait: float) -> tuple[float, float]:
    """(P(T > t), its derivative in t), for t > 0.

    With slow, fast = the smaller and larger of theta and μ, and g = (1 - e^(-gap·t)) / gap for their gap,
    (e^(-theta·t) - e^(-μt)) / (μ - theta) = e^(-slow·t)·g, which stays exact when theta is close to μ (expm1).
    """
    slow, fast = (theta, mu) if theta < mu else (mu, theta)
    gap = fast - slow
    decay = math.exp(-slow * t)
    if gap * t < 1e-12:
        g, fade = t, 1.0
    else:
        g, fade = -math.expm1(-gap * t) / gap, math.exp(-gap * t)
    service = math.exp(-mu * t)
    return service + wait * mu * decay * g, -mu * service + wait * mu * decay * (fade - slow * g)


def response_time_quantile(
    servers: int, arrival_rate: float, service_rate: float, quantile: float = LATENCY_QUANTILE
) -> float:
    """The `quantile` of the M/M/c response time in seconds; infinity when the queue is unstable (rho >= 1)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    if servers < 1 or service_rate <= 0:
        raise ValueError("a queue needs at least one server with a positive service rate")
    theta = servers * service_rate - arrival_rate
    if theta <= 0:
        return math.inf
    tail = 1.0 - quantile
    lo = -math.log(tail) / service_rate  # T >= the service time, whose quantile this is
    wait = erlang_c(servers, arrival_rate / service_rate)
    if wait == 0:
        return lo
    # P(T > t) <= P(S > t/2) + P(W > t/2) <= 2·e^(-min(μ, theta)·t/2), which is `tail` at this t:
    hi = 2.0 * math.log(2.0 / tail) / min(service_rate, theta)
    # Newton's method on log P(T > t) = log(tail), nearly a straight line in t, kept inside the bracket [lo, hi]
    # (bisecting whenever a step would leave it).
    target = math.log(tail)
    t = lo
    for _ in range(200):
        value, slope = _tail(t, service_rate, theta, wait)
        if value > tail:
            lo = t
        else:
            hi = t
        step = t - (math.log(value) - target) * value / slope if slope < 0 and value > 0 else lo - 1.0
        if abs(step - t) <= 1e-12 * t or hi - lo <= 1e-12 * hi:
            return step
        t = step if lo < step < hi else (lo + hi) / 2
    return t


# -- parameters -----------------------------------------------------------------------------------------------


DEFAULT_SLO_MS: dict[str, float] = {"platinum": 300.0, "gold": 500.0, "silver": 1000.0}
DEFAULT_PREMIUM: tuple[str, ...] = ("platinum",)


@dataclass(frozen=True)
class Params:
    """The what-if's knobs; `accord capacity simulate --help` and docs/capacity.md describe each."""

    capacity_rps: float = 100.0
    service_time_ms: float = 50.0
    cost_per_hour: float = 0.50
    slo_ms: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SLO_MS))
    default_slo_ms: float = 2000.0
    slo_target: float = 0.99
    premium: tuple[str, ...] = DEFAULT_PREMIUM
    tiers: tuple[str, ...] | None = None
    standby: int | None = None  # None: sized like a dedicated premium pool ("auto")
    threshold: float = 0.80
    min_warm: int = 1
    normal_percentile: float = 90.0
    step_seconds: float | None = None  # None: the spacing of the trace's times

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise CapacityError(
                f"capacity x service time is {self.capacity_rps * self.service_time_ms / 1000:g} concurrent requests; an "
                "instance needs room for at least 1 (raise --capacity or --service-time)"
            )
        if self.standby is not None and self.min_warm > self.standby:
            raise CapacityError(
                f"--min-warm ({self.min_warm}) is larger than the standby pool ({self.standby}); lower --min-warm"
            )

    @property
    def workers(self) -> int:
        """Requests an instance serves at once: capacity x service time (Little's law at full load), rounded down."""
        return math.floor(self.capacity_rps * self.service_time_ms / 1000 + 1e-9)

    @property
    def service_rate(self) -> float:
        """Requests per second one worker completes (μ)."""
        return 1000.0 / self.service_time_ms

    @property
    def service_p95_ms(self) -> float:
        """The latency quantile of the service time alone: the floor no pool size can go below."""
        return -math.log(1 - LATENCY_QUANTILE) * self.service_time_ms

    def slo_for(self, tier: str) -> float:
        return self.slo_ms.get(tier, self.default_slo_ms)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"'{value}' is not a number")
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        raise ValueError(f"'{value}' is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"'{value}' is not a finite number")
    return number


def _positive(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def _non_negative(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value}")
    return number


def _share(value: object) -> float:
    number = _number(value)
    if not 0 < number <= 1:
        raise ValueError(f"must be a share above 0 and at most 1 (e.g. 0.99), got {value}")
    return number


def _utilisation(value: object) -> float:
    number = _number(value)
    if not 0 < number < 1:
        raise ValueError(f"must be a utilisation between 0 and 1 (e.g. 0.8), got {value}")
    return number


def _percentile(value: object) -> float:
    number = _number(value)
    if not 0 <= number <= 100:
        raise ValueError(f"must be a percentile from 0 to 100 (e.g. 90), got {value}")
    return number


def _count(value: object) -> int:
    number = _number(value)
    if number < 0 or number != int(number):
        raise ValueError(f"must be a whole number, 0 or more, got {value}")
    return int(number)


def _standby(value: object) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _count(value)
    except ValueError:
        raise ValueError(f"must be a whole number of instances or 'auto', got {value}") from None


def _names(value: object) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        items = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"must be a list of tier names (or a comma-separated string), got {value!r}")
    names = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"tier names must be non-empty text, got {item!r}")
        if item.strip() in names:
            raise ValueError(f"'{item.strip()}' is named twice")
        names.append(item.strip())
    if not names:
        raise ValueError("names no tier")
    return tuple(names)


def _slos(value: object) -> dict[str, float]:
    """{tier: ms} from a mapping (YAML) or from TIER=MS texts, comma-separated or repeated (command line)."""
    pairs: list[tuple[object, object]] = []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list | tuple):
            raise ValueError(f"must map tiers to milliseconds, e.g. platinum=300, got {value!r}")
        for text in texts:
            for part in str(text).split(","):
                name, sep, number = part.partition("=")
                if not sep:
                    raise ValueError(f"'{part.strip()}' is not TIER=MILLISECONDS, e.g. platinum=300")
                pairs.append((name.strip(), number.strip()))
    slos: dict[str, float] = {}
    for tier, ms in pairs:
        if not isinstance(tier, str) or not tier:
            raise ValueError(f"tier names must be non-empty text, got {tier!r}")
        try:
            slos[tier] = _positive(ms)
        except ValueError as e:
            raise ValueError(f"{tier}: {e}") from None
    return slos


@dataclass(frozen=True)
class Option:
    """One parameter as it appears on the command line (--NAME) and in a config file (NAME: value)."""

    name: str
    attr: str
    convert: Callable[[object], Any]
    metavar: str
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("capacity", "capacity_rps", _positive, "RPS", "requests per second one instance serves at full load"),
    Option("service-time", "service_time_ms", _positive, "MS", "mean service time of one request in ms"),
    Option("cost", "cost_per_hour", _non_negative, "AMOUNT", "cost of one instance for one hour"),
    Option("slo", "slo_ms", _slos, "TIER=MS", "p95 latency objective of a tier in ms (repeatable, or comma-separated)"),
    Option("default-slo", "default_slo_ms", _positive, "MS", "p95 latency objective of tiers without --slo"),
    Option("slo-target", "slo_target", _share, "SHARE", "share of a tier's requests that must be within its SLO"),
    Option("premium", "premium", _names, "TIERS", "comma-separated tiers that get dedicated or standby capacity"),
    Option("tiers", "tiers", _names, "TIERS", "comma-separated known tiers; other names in the trace are errors (default: any)"),
    Option("standby", "standby", _standby, "N|auto", "standby instances in design B; default auto: enough for the premium peak"),
    Option("threshold", "threshold", _utilisation, "UTIL", "shared-pool utilisation above which premium uses standby"),
    Option("min-warm", "min_warm", _count, "N", "standby instances that run (and cost) all the time"),
    Option("normal-percentile", "normal_percentile", _percentile, "P", "percentile of total load that is 'normal'"),
    Option("step", "step_seconds", _positive, "SECONDS", "length of one step (default: the spacing of the times)"),
)


def params_from(entries: Iterable[tuple[str, object, str]]) -> Params:
    """Params from (option name, raw value, where it came from) entries; errors name the origin.

    Later entries override earlier ones (a config file first, then the command line), except SLOs, which merge
    tier by tier over the defaults. Option names may be spelt with hyphens or underscores.
    """
    by_name = {o.name: o for o in OPTIONS}
    kwargs: dict[str, Any] = {}
    origins: dict[str, str] = {}
    slos: dict[str, float] = {}
    for key, raw, origin in entries:
        option = by_name.get(key.replace("_", "-"))
        if option is None:
            raise CapacityError(f"{origin}: unknown parameter (known: {', '.join(by_name)})")
        try:
            value = option.convert(raw)
        except ValueError as e:
            raise CapacityError(f"{origin}: {e}") from None
        if option.attr == "slo_ms":
            slos.update(value)
        kwargs[option.attr] = value
        origins[option.attr] = origin
    tiers = kwargs.get("tiers")
    if tiers is not None:
        for attr, named in (("premium", kwargs.get("premium", ())), ("slo_ms", slos)):
            unknown = [t for t in named if t not in tiers]
            if unknown:
                raise CapacityError(f"{origins[attr]}: {', '.join(unknown)} not among the tiers ({', '.join(tiers)})")
        if "premium" not in kwargs and not set(DEFAULT_PREMIUM) & set(tiers):
            raise CapacityError(f"{origins['tiers']}: the default premium tier {', '.join(DEFAULT_PREMIUM)} is not "
                                "among them; name the premium tiers with --premium")
    if slos:
        kwargs["slo_ms"] = {**DEFAULT_SLO_MS, **slos}
    return Params(**kwargs)


# -- traces ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """A load trace: for each evenly spaced step, the requests each tier sent during it."""

    tiers: tuple[str, ...]
    step_seconds: float
    labels: tuple[str, ...]  # each step's time as written in the file
    requests: tuple[tuple[float, ...], ...]  # [step][tier index]
    instants: tuple[dt.datetime, ...] | None = None  # when the times are ISO 8601

    @property
    def hours(self) -> float:
        return len(self.requests) * self.step_seconds / 3600

    def end_label(self, step: int) -> str:
        """The time at which `step` ends, written like the file's times."""
        if step + 1 < len(self.labels):
            return self.labels[step + 1]
        if self.instants is not None:
            return (self.instants[step] + dt.timedelta(seconds=self.step_seconds)).isoformat()
        return f"{float(self.labels[step]) + self.step_seconds:g}"


def _time(text: str, line: int) -> float | dt.datetime:
    if not text:
        raise TraceError(line, "time", "missing value")
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        if not math.isfinite(seconds):
            raise TraceError(line, "time", f"'{text}' is not a finite number of seconds")
        if seconds < 0:
            raise TraceError(line, "time", f"'{text}' is negative; plain numbers are seconds from the start")
        return seconds
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(
            line, "time", f"'{text}' is neither an ISO 8601 instant like 2026-03-10T08:00:00+00:00 nor seconds from the start"
        ) from None
    if instant.tzinfo is None:
        raise TraceError(line, "time", f"'{text}' has no UTC offset; add one, e.g. {text}+00:00 or {text}Z")
    return instant


def _requests(text: str, line: int) -> float:
    if not text:
        raise TraceError(line, "requests", "missing value")
    if not _NUMBER.fullmatch(text):
        raise TraceError(line, "requests", f"'{text}' is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise TraceError(line, "requests", f"'{text}' is not a finite number")
    if value < 0:
        raise TraceError(line, "requests", f"'{text}' is negative")
    return value


def _records(source: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, fields), skipping blank lines; the header is line 1."""
    try:
        for line, record in records(source, strict=True):
            yield line, [v.strip() for v in record]
    except RecordError as e:
        raise TraceError(e.line, None, f"not valid CSV: {e.problem}") from None


def parse_trace(
    source: str | Iterable[str], *, tiers: Sequence[str] | None = None, step_seconds: float | None = None
) -> Trace:
    """Read and check a `time,tier,requests` trace; raise TraceError naming the line and column of the first fault.

    `source` is the CSV text or an iterable of its lines (an open file). Steps must come in time order, evenly
    spaced, one row per tier per step (a tier missing from a step sent nothing then). Times are ISO 8601 with
    an offset, or seconds from the start; a single-step trace needs `step_seconds`. With `tiers`, any other
    tier name is an error.
    """
    if isinstance(source, str):
        source = io.StringIO(source.removeprefix("\ufeff"), newline="")
    records = iter(_records(source))
    first = next(records, None)
    if first is None:
        raise TraceError(1, None, f"the trace is empty; it needs the header {','.join(COLUMNS)} and at least one row")
    header_line, header = first
    header[0] = header[0].removeprefix("\ufeff")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        if header and header[0] and (_NUMBER.fullmatch(header[0]) or header[0][:1].isdigit()):
            raise TraceError(header_line, COLUMNS[0], f"no header: the first line must be {','.join(COLUMNS)}")
        raise TraceError(
            header_line, missing[0], f"missing from the header (found: {', '.join(header)}; expected {','.join(COLUMNS)})"
        )
    for i, name in enumerate(header):
        if name not in COLUMNS:
            raise TraceError(header_line, name or f"#{i + 1}", f"unknown column; the columns are {','.join(COLUMNS)}")
        if header.index(name) != i:
            raise TraceError(header_line, name, "appears twice in the header")
    where = {name: header.index(name) for name in COLUMNS}

    known: list[str] = []  # in the order of `tiers`, or of first appearance
    seen: set[str] = set()
    labels: list[str] = []
    steps: list[dict[str, float]] = []
    instants: list[dt.datetime] = []
    offsets: list[float] = []  # seconds since the first step
    kind: type | None = None
    spacing = step_seconds
    for line, fields in records:
        if len(fields) != len(header):
            column = header[len(fields)] if len(fields) < len(header) else None
            raise TraceError(line, column, f"expected {len(header)} fields, found {len(fields)}")
        text = fields[where["time"]]
        when = _time(text, line)
        tier = fields[where["tier"]]
        if not tier:
            raise TraceError(line, "tier", "missing value")
        if tiers is not None and tier not in tiers:
            raise TraceError(line, "tier", f"unknown tier '{tier}' (known: {', '.join(tiers)})")
        count = _requests(fields[where["requests"]], line)

        this_kind = type(when)
        if kind is None:
            kind = this_kind
        elif this_kind is not kind:
            earlier = "ISO 8601 instants" if kind is dt.datetime else "seconds from the start"
            raise TraceError(line, "time", f"'{text}' mixes kinds of time: earlier rows use {earlier}")
        if isinstance(when, dt.datetime):
            offset = (when - instants[0]).total_seconds() if instants else 0.0
        else:
            offset = when - (float(labels[0]) if labels else when)
        if not offsets or offset != offsets[-1]:
            if offsets and offset < offsets[-1]:
                raise TraceError(
                    line, "time", f"'{text}' is before the previous step '{labels[-1]}'; steps must be in time order"
                )
            if offsets:
                gap = offset - offsets[-1]
                if spacing is None:
                    spacing = gap
                elif abs(gap - spacing) > 1e-6 * max(1.0, spacing):
                    expected = "--step" if step_seconds is not None else "the trace's step"
                    raise TraceError(
                        line, "time",
                        f"'{text}' starts {gap:g} s after the previous step, but {expected} is {spacing:g} s "
                        "(steps must be evenly spaced, without gaps)",
                    )
            offsets.append(offset)
            labels.append(text)
            steps.append({})
            if isinstance(when, dt.datetime):
                instants.append(when)
        if tier in steps[-1]:
            raise TraceError(line, "tier", f"'{tier}' appears twice in the step at '{labels[-1]}'")
        steps[-1][tier] = count
        if tier not in seen:
            seen.add(tier)
            known.append(tier)

    if not steps:
        raise TraceError(
            header_line + 1, None, "the trace is empty: there are no rows after the header"
        )
    if spacing is None:
        raise TraceError(
            header_line + 1, "time", "the trace has a single step; give its length with --step SECONDS"
        )
    if tiers is not None:
        known = [t for t in tiers if t in seen]
    return Trace(
        tiers=tuple(known),
        step_seconds=spacing,
        labels=tuple(labels),
        requests=tuple(tuple(step.get(t, 0.0) for t in known) for step in steps),
        instants=tuple(instants) if kind is dt.datetime else None,
    )


# -- sizing ---------------------------------------------------------------------------------------------------


def utilisation(instances: int, rate: float, params: Params) -> float:
    """Offered load over capacity: λ / (instances · workers · μ). Infinite for traffic on no instances."""
    if rate <= 0:
        return 0.0
    if instances <= 0:
        return math.inf
    return rate / (instances * params.workers * params.service_rate)


def pool_p95_ms(instances: int, rate: float, params: Params) -> float:
    """The response-time quantile in ms of a pool of `instances` carrying `rate` requests per second."""
    if instances <= 0:
        return math.inf if rate > 0 else 0.0
    return 1000.0 * response_time_quantile(instances * params.workers, rate, params.service_rate)


def smallest_pool(fits: Callable[[int], bool], at_least: int = 1) -> int:
    """The smallest instance count n >= at_least with fits(n), for a `fits` that stays true once true."""
    lo = max(1, at_least)
    if fits(lo):
        return lo
    hi = lo * 2
    while not fits(hi):
        if hi > MAX_INSTANCES:
            raise CapacityError(f"no pool of up to {MAX_INSTANCES:,} instances meets the objective")
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # fits(hi) and not fits(lo)
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def instances_for_slo(rate: float, slo_ms: float, params: Params) -> int:
    """The fewest instances whose p95 at `rate` requests per second is within `slo_ms` (0 for no traffic)."""
    if rate <= 0:
        return 0
    stable = math.floor(rate / (params.workers * params.service_rate)) + 1
    return smallest_pool(lambda n: pool_p95_ms(n, rate, params) <= slo_ms, stable)


def instances_for_normal_load(rate: float, slo_ms: float, params: Params) -> int:
    """Design B's shared pool: carries `rate` at or below the threshold, and meets `slo_ms` up to the threshold.

    The second condition makes the threshold a safe trigger: as long as the pool carries everyone, the load is
    at most threshold x capacity, where the strictest SLO still holds; above it premium traffic leaves.
    """
    per_instance = params.workers * params.service_rate

    def fits(n: int) -> bool:
        return pool_p95_ms(n, params.threshold * n * per_instance, params) <= slo_ms

    return smallest_pool(fits, math.ceil(rate / (params.threshold * per_instance) - 1e-9))


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between the closest ranks."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


# -- simulation -----------------------------------------------------------------------------------------------


@dataclass
class TierOutcome:
    """How one tier fared in one design."""

    tier: str
    slo_ms: float
    target: float
    requests: float = 0.0
    within: float = 0.0  # requests sent in steps whose p95 met the tier's SLO
    missed_steps: int = 0
    worst_p95_ms: float = 0.0

    @property
    def share_within(self) -> float:
        return self.within / self.requests if self.requests else 1.0

    @property
    def met(self) -> bool:
        return self.share_within >= self.target - 1e-12


@dataclass
class PoolOutcome:
    """One pool of one design: its size, what it ran and how busy it was."""

    name: str
    instances: int
    instance_hours: float = 0.0
    busy_seconds: float = 0.0  # utilisation x step length, summed over the steps the pool served traffic
    serving_seconds: float = 0.0
    peak_utilisation: float = 0.0

    @property
    def mean_utilisation(self) -> float:
        return self.busy_seconds / self.serving_seconds if self.serving_seconds else 0.0


@dataclass
class DesignOutcome:
    """One design replayed over the trace."""

    key: str
    title: str
    pools: list[PoolOutcome]
    tiers: dict[str, TierOutcome]
    cost_per_hour: float
    standby_steps: int = 0
    standby_periods: list[tuple[str, str]] = field(default_factory=list)

    @property
    def instance_hours(self) -> float:
        return sum(p.instance_hours for p in self.pools)

    @property
    def cost(self) -> float:
        return self.instance_hours * self.cost_per_hour

    def pool(self, name: str) -> PoolOutcome:
        return next(p for p in self.pools if p.name == name)


@dataclass
class Comparison:
    """Both designs on one trace, with the loads they were sized for."""

    trace: Trace
    params: Params
    dedicated: DesignOutcome
    shared_standby: DesignOutcome
    premium_peak_rps: float
    others_peak_rps: float
    normal_rps: float
    total_peak_rps: float

    @property
    def saving(self) -> float:
        return self.dedicated.cost - self.shared_standby.cost

    @property
    def saving_share(self) -> float:
        return self.saving / self.dedicated.cost if self.dedicated.cost else 0.0

    def summary(self) -> str:
        a, b = self.dedicated, self.shared_standby
        premium = ", ".join(self.params.premium)

        def verdict(design: DesignOutcome) -> str:
            return "met" if all(design.tiers[t].met for t in self.params.premium) else "MISSED"

        missed = [t for t, o in b.tiers.items() if not o.met and t not in self.params.premium]
        verb = "saves" if self.saving >= 0 else "costs"
        line = (
            f"{len(self.trace.requests)} steps ({self.trace.hours:g} h): B {verb} {abs(self.saving):,.2f} "
            f"({abs(self.saving_share):.1%}) {'over' if self.saving >= 0 else 'more than'} A; "
            f"{premium} SLO {verdict(a)} in A, {verdict(b)} in B"
        )
        if missed:
            line += f"; in B {', '.join(missed)} miss{'es' if len(missed) == 1 else ''} their SLO at peaks"
        return line


def _tier_outcomes(trace: Trace, params: Params) -> dict[str, TierOutcome]:
    return {t: TierOutcome(t, params.slo_for(t), params.slo_target) for t in trace.tiers}


def _serve(pool: PoolOutcome, rate: float, seconds: float, params: Params) -> float:
    """Account one step of `rate` on `pool`; return its p95 in ms."""
    load = utilisation(pool.instances, rate, params)
    pool.peak_utilisation = max(pool.peak_utilisation, load)
    if math.isfinite(load):
        pool.busy_seconds += load * seconds
    pool.serving_seconds += seconds
    return pool_p95_ms(pool.instances, rate, params)


def _judge(outcome: TierOutcome, requests: float, p95_ms: float) -> None:
    outcome.requests += requests
    if requests <= 0:
        return
    outcome.worst_p95_ms = max(outcome.worst_p95_ms, p95_ms)
    if p95_ms <= outcome.slo_ms:
        outcome.within += requests
    else:
        outcome.missed_steps += 1


def simulate(trace: Trace, params: Params, progress: Callable[[int], object] | None = None) -> Comparison:
    """Size both designs for the trace, replay it step by step, and compare cost and service levels.

    `progress`, if given, is called with the number of steps just finished (in batches) for a progress bar.
    """
    premium = [t for t in params.premium if t in trace.tiers]
    missing = [t for t in params.premium if t not in trace.tiers]
    if missing:
        raise CapacityError(
            f"premium tier(s) {', '.join(missing)} not in the trace (tiers: {', '.join(trace.tiers)}); "
            "name the premium tiers with --premium"
        )
    is_premium = [t in premium for t in trace.tiers]
    others = [t for t in trace.tiers if t not in premium]
    seconds = trace.step_seconds
    premium_rates = [sum(r for r, p in zip(step, is_premium, strict=True) if p) / seconds for step in trace.requests]
    total_rates = [sum(step) / seconds for step in trace.requests]
    if not any(total_rates):
        raise CapacityError("the trace has no requests at all: there is nothing to size")
    others_rates = [max(0.0, t - p) for t, p in zip(total_rates, premium_rates, strict=True)]

    floor = params.service_p95_ms
    for tier in trace.tiers:
        if params.slo_for(tier) <= floor:
            raise CapacityError(
                f"the SLO of {tier} ({params.slo_for(tier):g} ms) is not above the p95 of the service time alone "
                f"({floor:.0f} ms for {params.service_time_ms:g} ms service): no pool size can meet it"
            )
    strictest_premium = min(params.slo_for(t) for t in premium)
    strictest_other = min((params.slo_for(t) for t in others), default=math.inf)
    strictest = min(strictest_premium, strictest_other)
    premium_peak, others_peak = max(premium_rates), max(others_rates)
    normal = percentile(total_rates, params.normal_percentile)

    # Design A: each pool meets its strictest SLO at its own peak, so it meets it at every step.
    a_premium = PoolOutcome("premium", instances_for_slo(premium_peak, strictest_premium, params))
    a_shared = PoolOutcome("shared", instances_for_slo(others_peak, strictest_other, params) if others else 0)
    # Design B: a shared pool for the normal load, a standby pool for the premium peak (or as configured).
    b_shared = PoolOutcome("shared", instances_for_normal_load(normal, strictest, params))
    standby_size = params.standby
    if standby_size is None:
        standby_size = max(params.min_warm, instances_for_slo(premium_peak, strictest_premium, params))
    b_standby = PoolOutcome("standby", standby_size)

    dedicated = DesignOutcome(DEDICATED, "A dedicated", [a_premium, a_shared], _tier_outcomes(trace, params),
                              params.cost_per_hour)
    shared = DesignOutcome(SHARED_STANDBY, "B shared + standby", [b_shared, b_standby],
                           _tier_outcomes(trace, params), params.cost_per_hour)
    hours = seconds / 3600
    a_premium.instance_hours = a_premium.instances * trace.hours
    a_shared.instance_hours = a_shared.instances * trace.hours
    b_shared.instance_hours = b_shared.instances * trace.hours
    b_capacity = b_shared.instances * params.workers * params.service_rate

    period_start: int | None = None
    done = 0
    for i, step in enumerate(trace.requests):
        p_rate, o_rate, t_rate = premium_rates[i], others_rates[i], total_rates[i]
        # A: premium and the others never meet.
        p95_premium = _serve(a_premium, p_rate, seconds, params) if a_premium.instances or p_rate else 0.0
        p95_other = _serve(a_shared, o_rate, seconds, params) if a_shared.instances or o_rate else 0.0
        for tier, requests, prem in zip(trace.tiers, step, is_premium, strict=True):
            _judge(dedicated.tiers[tier], requests, p95_premium if prem else p95_other)
        # B: the policy switches on while the shared pool would be busier than the threshold with everyone on it.
        peak = standby_size > 0 and t_rate > params.threshold * b_capacity
        if peak:
            shared.standby_steps += 1
            b_standby.instance_hours += standby_size * hours
            p95_premium = _serve(b_standby, p_rate, seconds, params)
            p95_other = _serve(b_shared, o_rate, seconds, params)
            if period_start is None:
                period_start = i
        else:
            b_standby.instance_hours += params.min_warm * hours
            p95_premium = p95_other = _serve(b_shared, t_rate, seconds, params)
            if period_start is not None:
                shared.standby_periods.append((trace.labels[period_start], trace.labels[i]))
                period_start = None
        for tier, requests, prem in zip(trace.tiers, step, is_premium, strict=True):
            _judge(shared.tiers[tier], requests, p95_premium if prem else p95_other)
        done += 1
        if progress is not None and done == 256:
            progress(done)
            done = 0
    if period_start is not None:
        shared.standby_periods.append((trace.labels[period_start], trace.end_label(len(trace.requests) - 1)))
    if progress is not None and done:
        progress(done)
    return Comparison(trace, params, dedicated, shared, premium_peak, others_peak, normal, max(total_rates))


# -- output ---------------------------------------------------------------------------------------------------


def _floor_percent(share: float) -> str:
    """A share as a percentage rounded down, so that 99.996% never reads as 100.00%."""
    return f"{math.floor(share * 10000) / 100:.2f}%"


def _ms(value: float) -> str:
    return "overload" if math.isinf(value) else f"{value:,.0f} ms"


def _count_text(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _pools_text(design: DesignOutcome, params: Params) -> str:
    parts = []
    for pool in design.pools:
        text = f"{pool.name} {pool.instances}"
        if pool.name == "standby":
            text += f" ({params.min_warm} warm)"
        parts.append(text)
    return " + ".join(parts)


def render_table(result: Comparison, source: str = "") -> str:
    """The comparison as a plain-text report for people; the last line is the summary."""
    trace, params = result.trace, result.params
    a, b = result.dedicated, result.shared_standby
    per_instance = params.workers * params.service_rate
    premium = set(params.premium)
    periods = len(b.standby_periods)
    lines = [
        f"Capacity what-if{' for ' + source if source else ''}",
        f"  trace     {len(trace.requests):,} steps of {_duration(trace.step_seconds)} ({_duration(trace.hours * 3600)}); "
        f"tiers {', '.join(t + ('*' if t in premium else '') for t in trace.tiers)} (* premium)",
        f"  instance  {per_instance:g} req/s ({params.workers} workers x {params.service_time_ms:g} ms), "
        f"{params.cost_per_hour:,.2f} per hour",
        f"  load      premium peak {result.premium_peak_rps:,.1f} req/s, others' peak {result.others_peak_rps:,.1f}, "
        f"total peak {result.total_peak_rps:,.1f}, normal (p{params.normal_percentile:g}) {result.normal_rps:,.1f}",
        f"  policy    B sends premium traffic to standby while the shared pool is above {params.threshold:.0%} "
        f"utilisation: {b.standby_steps:,} steps ({_duration(b.standby_steps * trace.step_seconds)}), "
        f"{periods} period{'' if periods == 1 else 's'}",
        "",
    ]
    header: tuple[str, ...] = ("design", "instances", "instance-hours", "cost", "mean/peak utilisation")
    rows: list[tuple[str, ...]] = []
    for design in (a, b):
        busy = ", ".join(
            f"{p.name} {p.mean_utilisation:.0%}/{math.ceil(p.peak_utilisation * 100 - 1e-9)}%"
            if math.isfinite(p.peak_utilisation)
            else f"{p.name} overloaded"
            for p in design.pools if p.serving_seconds
        )
        rows.append((design.title, _pools_text(design, params), f"{design.instance_hours:,.1f}",
                     f"{design.cost:,.2f}", busy))
    lines += _columns(header, rows, right={2, 3})
    lines.append("")
    header = ("tier", "SLO p95", "requests", "A within SLO", "A", "A worst p95", "B within SLO", "B", "B worst p95")
    rows = []
    for tier in trace.tiers:
        oa, ob = a.tiers[tier], b.tiers[tier]
        rows.append((
            tier + ("*" if tier in premium else ""), _ms(oa.slo_ms), _count_text(oa.requests),
            _floor_percent(oa.share_within), "met" if oa.met else "MISSED", _ms(oa.worst_p95_ms),
            _floor_percent(ob.share_within), "met" if ob.met else "MISSED", _ms(ob.worst_p95_ms),
        ))
    lines += _columns(header, rows, right={1, 2, 3, 5, 6, 8})
    lines.append(f"An SLO is met when at least {params.slo_target:.2%} of the tier's requests fall in steps whose "
                 "p95 is within it.")
    if b.standby_periods:
        shown = "; ".join(f"{start} to {end}" for start, end in b.standby_periods[:6])
        more = f" and {len(b.standby_periods) - 6} more" if len(b.standby_periods) > 6 else ""
        lines.append(f"Standby in use: {shown}{more}")
    lines += ["", result.summary()]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{seconds:g} s"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_dict(result: Comparison, source: str = "") -> dict[str, Any]:
    """The comparison as JSON-ready data for scripts; infinite latencies (overload) are null."""
    trace, params = result.trace, result.params

    def design(d: DesignOutcome) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pools": {
                p.name: {
                    "instances": p.instances,
                    "instance_hours": round(p.instance_hours, 6),
                    "mean_utilisation": round(p.mean_utilisation, 6),
                    "peak_utilisation": _finite(round(p.peak_utilisation, 6)),
                }
                for p in d.pools
            },
            "instance_hours": round(d.instance_hours, 6),
            "cost": round(d.cost, 6),
            "tiers": {
                t: {
                    "premium": t in params.premium,
                    "slo_p95_ms": o.slo_ms,
                    "requests": int(o.requests) if o.requests == int(o.requests) else o.requests,
                    "within_slo": round(o.share_within, 6),
                    "slo_met": o.met,
                    "missed_steps": o.missed_steps,
                    "worst_p95_ms": _finite(round(o.worst_p95_ms, 3)),
                }
                for t, o in d.tiers.items()
            },
        }
        if d.key == SHARED_STANDBY:
            data["standby_min_warm"] = params.min_warm
            data["standby_steps"] = d.standby_steps
            data["standby_periods"] = [{"start": s, "end": e} for s, e in d.standby_periods]
        return data

    return {
        "trace": {
            "file": source,
            "steps": len(trace.requests),
            "step_seconds": trace.step_seconds,
            "hours": trace.hours,
            "tiers": list(trace.tiers),
        },
        "parameters": {
            "capacity_rps": params.capacity_rps,
            "service_time_ms": params.service_time_ms,
            "workers_per_instance": params.workers,
            "cost_per_hour": params.cost_per_hour,
            "slo_p95_ms": {t: params.slo_for(t) for t in trace.tiers},
            "slo_target": params.slo_target,
            "premium": list(params.premium),
            "standby": result.shared_standby.pool("standby").instances,
            "standby_auto": params.standby is None,
            "threshold": params.threshold,
            "min_warm": params.min_warm,
            "normal_percentile": params.normal_percentile,
        },
        "load_rps": {
            "premium_peak": round(result.premium_peak_rps, 6),
            "others_peak": round(result.others_peak_rps, 6),
            "normal": round(result.normal_rps, 6),
            "total_peak": round(result.total_peak_rps, 6),
        },
        "designs": {DEDICATED: design(result.dedicated), SHARED_STANDBY: design(result.shared_standby)},
        "saving": {
            "cost": round(result.saving, 6),
            "share": round(result.saving_share, 6),
            "instance_hours": round(result.dedicated.instance_hours - result.shared_standby.instance_hours, 6),
        },
        "summary": result.summary(),
    }
