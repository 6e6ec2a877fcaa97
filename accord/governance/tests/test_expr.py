from __future__ import annotations

import pytest

from accord.governance import expr
from accord.governance.expr import Compare, ExprError, Signal, evaluate, parse, signals


def test_a_condition_parses_into_signals_with_arguments_filters_and_windows() -> None:
    node = parse("pool(fare-search, primary).utilisation > 0.8 and service(booking, tier=platinum).p95_ms[1m] >= 400")
    found = signals(node)
    assert found == [
        Signal("pool", ("fare-search", "primary"), (), "utilisation", None),
        Signal("service", ("booking",), (("tier", "platinum"),), "p95_ms", 60.0),
    ]
    assert found[1].arg("tier") == "platinum" and found[1].arg("service") == "booking" and found[0].seconds == 30
    assert str(found[1]) == "service(booking, tier=platinum).p95_ms[1m]"


def test_and_binds_tighter_than_or_and_not_and_parentheses_work() -> None:
    a, b, c = (Signal("tier", (t,), (), "rps", None) for t in ("a", "b", "c"))
    node = parse("tier(a).rps > 1 or tier(b).rps > 1 and tier(c).rps > 1")
    assert evaluate(node, {a: 2, b: 0, c: 0}) is True
    assert evaluate(node, {a: 0, b: 2, c: 0}) is False
    node = parse("not (tier(a).rps > 1 or tier(b).rps > 1)")
    assert evaluate(node, {a: 0, b: 0}) is True and evaluate(node, {a: 5, b: 0}) is False


@pytest.mark.parametrize("op,value,expected", [("<", 5, True), ("<=", 4, True), (">", 4, False), (">=", 4, True),
                                               ("==", 4, True), ("!=", 4, False)])
def test_each_comparison(op: str, value: float, expected: bool) -> None:
    node = parse(f"tier(gold).p95_ms {op} {value}")
    assert isinstance(node, Compare)
    assert evaluate(node, {node.signal: 4.0}) is expected


def test_a_signal_without_data_makes_its_comparison_false_and_its_negation_true() -> None:
    node = parse("service(booking).p95_ms > 400")
    assert evaluate(node, {}) is False
    assert evaluate(expr.Not(node), {}) is True


def test_budget_burn_rate_needs_a_window_and_budget_windows_may_be_long() -> None:
    node = parse("budget(platinum-sla, availability).burn_rate[3d] > 1")
    assert signals(node)[0].window == 3 * 86400
    with pytest.raises(ExprError, match="burn_rate needs a window"):
        parse("budget(platinum-sla, availability).burn_rate > 1")


@pytest.mark.parametrize("text,column,message", [
    ("", 1, "empty"),
    ("pool(booking).utilisation > 1", 1, "takes 2 argument"),
    ("servce(booking).rps > 1", 1, "unknown indicator 'servce'"),
    ("service(booking).utilisation > 1", 18, "no metric 'utilisation'"),
    ("service(booking).rps >", 23, "expected a number"),
    ("service(booking).rps 5", 22, "expected a comparison"),
    ("service(booking).rps > 5 and", 29, "found the end"),
    ("service(booking, colour=red).rps > 1", 18, "no filter 'colour'"),
    ("service(booking).rps[20m] > 1", 21, "at most 15m"),
    ("service(booking).rps > 5 5", 26, "expected and, or or the end"),
    ("(service(booking).rps > 5", 26, "expected ')'"),
    ("service(booking).rps > 5 ; drop", 26, "unexpected ';'"),
])
def test_bad_conditions_say_what_and_where(text: str, column: int, message: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.column == column and message in str(info.value), str(info.value)
