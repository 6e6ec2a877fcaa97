"""Policy conditions: a small language over indicators, parsed once, evaluated without eval().

    pool(fare-search, primary).utilisation > 0.8
    service(booking).p95_ms[1m] > 400 and service(booking).rps > 5
    service(booking, tier=platinum).p95_ms > 300
    operation(booking, create).error_rate >= 0.02
    tier(gold).availability < 0.999
    budget(platinum-sla, booking-availability).burn_rate[1h] > 14.4
    not (pool(booking, primary).utilisation < 0.5)

A signal is subject(arguments).metric[window] compared with a number; signals combine with and, or, not and
parentheses. The window defaults to 30 s for live indicators (the gateway's per-second signals, kept 15
minutes) and to the objective's own window for a budget's `consumed` and `remaining`. With no traffic in its
window a signal has no value and its comparison is false (so the default clear condition, `not condition`,
is true).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_WINDOW = 30.0
MAX_LIVE_WINDOW = 15 * 60.0
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TRAFFIC_METRICS = ("rps", "count", "errors", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "error_rate",
                   "availability")
METRICS: dict[str, tuple[str, ...]] = {
    "pool": ("utilisation", "in_flight", "waiting", *TRAFFIC_METRICS),
    "service": TRAFFIC_METRICS,
    "operation": TRAFFIC_METRICS,
    "tier": TRAFFIC_METRICS,
    "budget": ("burn_rate", "consumed", "remaining"),
}
# positional arguments each subject takes, and the filters it may add as name=value
ARGS = {"pool": ("service", "pool"), "service": ("service",), "operation": ("service", "operation"),
        "tier": ("tier",), "budget": ("agreement", "objective")}
FILTERS = {"pool": ("tier",), "service": ("tier", "pool", "operation"), "operation": ("tier", "pool"),
           "tier": ("service", "pool", "operation"), "budget": ()}
OPS = ("<=", ">=", "==", "!=", "<", ">")

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![A-Za-z_\-])|(?P<window>\[\s*\d+(?:\.\d+)?\s*[smhd]\s*\])"
    r"|(?P<op><=|>=|==|!=|<|>)|(?P<punct>[(),.=])|(?P<name>[A-Za-z0-9_][A-Za-z0-9_\-]*))"
)


class ExprError(ValueError):
    """A condition that does not parse, with the column it went wrong at."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True)
class Signal:
    subject: str
    args: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]
    metric: str
    window: float | None  # seconds; None: the default of the metric

    @property
    def seconds(self) -> float:
        return self.window if self.window is not None else DEFAULT_WINDOW

    def arg(self, name: str) -> str:
        return dict(zip(ARGS[self.subject], self.args, strict=True)).get(name) or dict(self.filters).get(name, "")

    def __str__(self) -> str:
        inner = ", ".join([*self.args, *(f"{k}={v}" for k, v in self.filters)])
        window = "" if self.window is None else f"[{_fmt_window(self.window)}]"
        return f"{self.subject}({inner}).{self.metric}{window}"


def _fmt_window(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Compare:
    signal: Signal
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {self.value:g}"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    parts: tuple[Node, ...]

    def __str__(self) -> str:
        return "(" + f" {self.op} ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class Not:
    part: Node

    def __str__(self) -> str:
        return f"not {self.part}"


Node = Compare | BoolOp | Not
Values = dict[Signal, float | None]


def signals(node: Node) -> list[Signal]:
    """Every signal the condition reads, once each, in order of appearance."""
    out: list[Signal] = []

    def walk(n: Node) -> None:
        if isinstance(n, Compare):
            if n.signal not in out:
                out.append(n.signal)
        elif isinstance(n, Not):
            walk(n.part)
        else:
            for p in n.parts:
                walk(p)

    walk(node)
    return out


def evaluate(node: Node, values: Values) -> bool:
    """True when the condition holds on these signal values; a missing value makes its comparison false."""
    if isinstance(node, Compare):
        v = values.get(node.signal)
        if v is None:
            return False
        return {"<": v < node.value, ">": v > node.value, "<=": v <= node.value, ">=": v >= node.value,
                "==": v == node.value, "!=": v != node.value}[node.op]
    if isinstance(node, Not):
        return not evaluate(node.part, values)
    if node.op == "and":
        return all(evaluate(p, values) for p in node.parts)
    return any(evaluate(p, values) for p in node.parts)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                raise ExprError(f"unexpected {text[column - 1]!r}", column)
            kind = m.lastgroup or ""
            start = m.start(kind)
            self.tokens.append((kind, m.group(kind), start + 1))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text) + 1)

    def take(self, kind: str, value: str | None = None, what: str = "") -> tuple[str, str, int]:
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            found = "the end" if tok[0] == "end" else repr(tok[1])
            raise ExprError(f"expected {what or value or kind}, found {found}", tok[2])
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok[0] == "name" and tok[1].lower() in words:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise ExprError("the condition is empty", 1)
        node = self.or_()
        tok = self.peek()
        if tok[0] != "end":
            raise ExprError(f"expected and, or or the end, found {tok[1]!r}", tok[2])
        return node

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.word("or"):
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_(self) -> Node:
        parts = [self.not_()]
        while self.word("and"):
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def not_(self) -> Node:
        if self.word("not"):
            return Not(self.not_())
        if self.peek()[:2] == ("punct", "("):
            self.i += 1
            node = self.or_()
            self.take("punct", ")", "')'")
            return node
        return self.compare()

    def compare(self) -> Compare:
        signal = self.signal()
        op = self.take("op", what="a comparison (<, >, <=, >=, ==, !=)")[1]
        number = self.take("number", what="a number")[1]
        return Compare(signal, op, float(number))

    def signal(self) -> Signal:
        kind, subject, column = self.take("name", what="pool(...), service(...), operation(...), tier(...) or budget(...)")
        if subject not in ARGS:
            raise ExprError(f"unknown indicator {subject!r} (use {', '.join(ARGS)})", column)
        self.take("punct", "(", "'('")
        args: list[str] = []
        filters: list[tuple[str, str]] = []
        while True:
            kind, value, col = self.peek()
            if kind not in ("name", "number"):
                raise ExprError(f"expected a name, found {value!r}" if value else "expected a name", col)
            self.i += 1
            if self.peek()[:2] == ("punct", "="):
                self.i += 1
                fvalue = self.take("name", what="a name after '='")[1]
                if value not in FILTERS[subject]:
                    allowed = ", ".join(FILTERS[subject]) or "none"
                    raise ExprError(f"{subject}() takes no filter {value!r} (allowed: {allowed})", col)
                filters.append((value, fvalue))
            elif filters:
                raise ExprError("positional arguments come before name=value filters", col)
            else:
                args.append(value)
            if self.peek()[:2] == ("punct", ","):
                self.i += 1
                continue
            self.take("punct", ")", "',' or ')'")
            break
        if len(args) != len(ARGS[subject]):
            raise ExprError(f"{subject}() takes {len(ARGS[subject])} argument(s): {', '.join(ARGS[subject])}", column)
        self.take("punct", ".", "'.' and a metric")
        _k, metric, mcol = self.take("name", what="a metric")
        if metric not in METRICS[subject]:
            raise ExprError(f"{subject}() has no metric {metric!r} (use {', '.join(METRICS[subject])})", mcol)
        window = None
        if self.peek()[0] == "window":
            _k, text, wcol = self.take("window")
            inner = text.strip("[] ")
            window = float(inner[:-1]) * UNITS[inner[-1]]
            if window <= 0:
                raise ExprError("a window must be longer than 0", wcol)
            if subject != "budget" and window > MAX_LIVE_WINDOW:
                raise ExprError("live indicators look back at most 15m", wcol)
        if subject == "budget" and metric == "burn_rate" and window is None:
            raise ExprError("burn_rate needs a window, e.g. budget(a, o).burn_rate[1h]", mcol)
        return Signal(subject, tuple(args), tuple(filters), metric, window)


def parse(text: str) -> Node:
    """The condition as a tree; raises ExprError with the column of the first problem."""
    if not isinstance(text, str):
        raise ExprError("a condition must be text", 1)
    return _Parser(text).parse()
