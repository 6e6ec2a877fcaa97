"""The capacity what-if: the queueing maths, the sizing of both designs, trace checking and the CLI."""

from __future__ import annotations

import heapq
import json
import math
import random
from fractions import Fraction
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.lab import capacity
from accord.lab.capacity import (
    CapacityError,
    Params,
    TraceError,
    erlang_c,
    instances_for_normal_load,
    instances_for_slo,
    parse_trace,
    percentile,
    pool_p95_ms,
    response_time_quantile,
    response_time_tail,
    simulate,
)

SAMPLE = Path(capacity.__file__).parent / "fixtures" / "trace-rta.csv"


def exact_erlang_c(servers: int, load: Fraction) -> Fraction:
    """The textbook formula with factorials, in exact rational arithmetic."""
    top = load**servers / math.factorial(servers) * Fraction(servers) / (servers - load)
    return top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)


def trace_text(rows: list[tuple[object, str, object]]) -> str:
    return "time,tier,requests\n" + "".join(f"{t},{tier},{r}\n" for t, tier, r in rows)


def steps(totals: list[tuple[float, float]], seconds: int = 60) -> str:
    """A numeric-time trace of (platinum, others) requests per step."""
    rows: list[tuple[object, str, object]] = []
    for i, (platinum, others) in enumerate(totals):
        rows += [(i * seconds, "platinum", platinum), (i * seconds, "bronze", others)]
    return trace_text(rows)


# -- Erlang C and the response time -------------------------------------------------------------------------


def test_erlang_c_matches_textbook_values() -> None:
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-12)  # 2 erlangs on 3 servers
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)  # M/M/2: 2rho²/(1 + rho) with rho = 0.5
    for rho in (0.1, 0.5, 0.9, 0.99):
        assert erlang_c(1, rho) == pytest.approx(rho, rel=1e-12)  # M/M/1: P(wait) = rho
        assert erlang_c(2, 2 * rho) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-12)


@pytest.mark.parametrize("servers", [1, 2, 5, 13, 40, 200])
@pytest.mark.parametrize("utilisation", [Fraction(1, 10), Fraction(1, 2), Fraction(9, 10), Fraction(99, 100)])
def test_erlang_c_matches_the_factorial_formula_exactly(servers: int, utilisation: Fraction) -> None:
    load = utilisation * servers
    assert erlang_c(servers, float(load)) == pytest.approx(float(exact_erlang_c(servers, load)), rel=1e-10)


def test_erlang_c_stays_finite_for_thousands_of_servers_and_saturates_at_one() -> None:
    c = erlang_c(5000, 4950.0)
    assert 0 < c < 1
    assert erlang_c(5000, 4000.0) < 1e-30
    assert erlang_c(4, 4.0) == erlang_c(4, 9.0) == 1.0
    assert erlang_c(4, 0.0) == 0.0


def test_the_mm1_p95_is_the_exponential_formula() -> None:
    for arrival, service in [(0.0, 10.0), (7.0, 10.0), (99.0, 100.0), (1.0, 1000.0)]:
        assert response_time_quantile(1, arrival, service) == pytest.approx(-math.log(0.05) / (service - arrival), rel=1e-9)


@pytest.mark.parametrize("servers", [1, 3, 45, 1000])
@pytest.mark.parametrize("utilisation", [0.05, 0.5, 0.8, 0.95, 0.9999])
def test_the_p95_is_where_the_tail_falls_to_five_percent(servers: int, utilisation: float) -> None:
    service = 20.0
    p95 = response_time_quantile(servers, utilisation * servers * service, service)
    assert response_time_tail(p95, servers, utilisation * servers * service, service) == pytest.approx(0.05, rel=1e-9)
    assert p95 >= -math.log(0.05) / service * (1 - 1e-12)  # never faster than the service time alone


def test_an_unstable_queue_has_no_p95() -> None:
    assert response_time_quantile(3, 3.0, 1.0) == math.inf
    assert response_time_quantile(3, 4.5, 1.0) == math.inf
    assert pool_p95_ms(0, 10.0, Params()) == math.inf


def test_the_tail_is_continuous_where_the_wait_rate_equals_the_service_rate() -> None:
    # c = 2, μ = 1, λ = 1: θ = cμ - λ = μ, where the closed form divides by zero.
    at = response_time_tail(2.0, 2, 1.0, 1.0)
    assert at == pytest.approx(response_time_tail(2.0, 2, 1.0 + 1e-7, 1.0), rel=1e-6)
    assert at == pytest.approx(response_time_tail(2.0, 2, 1.0 - 1e-7, 1.0), rel=1e-6)
    assert response_time_tail(0.0, 2, 1.0, 1.0) == 1.0


def simulated_mmc(servers: int, arrival: float, service: float, customers: int, seed: int) -> tuple[float, float]:
    """A discrete-event FCFS M/M/c: (share of customers who waited, p95 of the response time)."""
    rng = random.Random(seed)
    free = [0.0] * servers  # when each server is next free
    now, waited, times = 0.0, 0, []
    for _ in range(customers):
        now += rng.expovariate(arrival)
        start = max(now, heapq.heappop(free))
        waited += start > now
        done = start + rng.expovariate(service)
        heapq.heappush(free, done)
        times.append(done - now)
    times.sort()
    return waited / customers, times[int(0.95 * customers)]


def test_the_model_agrees_with_a_discrete_event_simulation() -> None:
    waited, p95 = simulated_mmc(servers=4, arrival=3.2, service=1.0, customers=150_000, seed=7)
    assert waited == pytest.approx(erlang_c(4, 3.2), abs=0.015)
    assert p95 == pytest.approx(response_time_quantile(4, 3.2, 1.0), rel=0.04)


# -- sizing ---------------------------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([4, 1, 3, 2], 0) == 1


def test_an_slo_pool_is_the_smallest_that_meets_the_slo() -> None:
    params = Params()  # 5 workers of 50 ms: 100 req/s per instance
    n = instances_for_slo(450.0, 300.0, params)
    assert pool_p95_ms(n, 450.0, params) <= 300.0 < pool_p95_ms(n - 1, 450.0, params)
    assert n == 5  # 4.5 instances of load need headroom beyond 5 workers x 4.5
    assert instances_for_slo(0.0, 300.0, params) == 0


def test_the_normal_pool_stays_under_the_threshold_and_meets_the_slo_up_to_it() -> None:
    params = Params(threshold=0.8)
    n = instances_for_normal_load(650.0, 300.0, params)
    assert n == 9  # 650 req/s at most 80% busy: 8.1 instances
    assert pool_p95_ms(n, 0.8 * n * 100, params) <= 300.0
    # With one worker per instance, queueing at 80% is slow enough that a strict SLO makes the pool larger, so
    # that the threshold is still a safe trigger:
    single = Params(capacity_rps=20, threshold=0.8)
    assert instances_for_normal_load(30.0, 2000.0, single) == 2  # 30 req/s at most 80% busy: 1.9 instances
    tight = instances_for_normal_load(30.0, 300.0, single)
    assert tight > 2
    assert pool_p95_ms(tight, 0.8 * tight * 20, single) <= 300.0 < pool_p95_ms(tight - 1, 0.8 * (tight - 1) * 20, single)


def test_dedicated_pools_are_sized_for_their_own_peaks() -> None:
    # 60 s steps: platinum peaks at 300 req/s, the others at 600 req/s, at different times.
    trace = parse_trace(steps([(6000, 18000), (18000, 12000), (6000, 36000), (6000, 18000)]))
    result = simulate(trace, Params())
    a = result.dedicated
    assert a.pool("premium").instances == instances_for_slo(300.0, 300.0, Params())
    assert a.pool("shared").instances == instances_for_slo(600.0, 2000.0, Params())
    assert a.instance_hours == pytest.approx((a.pool("premium").instances + a.pool("shared").instances) * 4 / 60)
    assert all(o.met and o.share_within == 1.0 for o in a.tiers.values())


def test_standby_is_used_only_while_the_shared_pool_is_above_the_threshold() -> None:
    # The shared pool is sized for p50 of the total; two of the six steps go above 80% of it.
    loads = [(3000, 9000), (3000, 9000), (9000, 24000), (3000, 9000), (9000, 24000), (3000, 9000)]
    params = Params(normal_percentile=50, standby=4, min_warm=1)
    result = simulate(parse_trace(steps(loads)), params)
    b = result.shared_standby
    shared = b.pool("shared").instances
    threshold_rps = 0.8 * shared * 100
    above = [(p + o) / 60 > threshold_rps for p, o in loads]
    assert above == [False, False, True, False, True, False]
    assert b.standby_steps == 2
    assert b.standby_periods == [("120", "180"), ("240", "300")]
    assert b.pool("standby").instance_hours == pytest.approx((2 * 4 + 4 * 1) / 60)
    assert b.pool("shared").instance_hours == pytest.approx(shared * 6 / 60)
    assert b.tiers["platinum"].met


def test_below_the_threshold_only_the_warm_standby_instances_cost() -> None:
    result = simulate(parse_trace(steps([(3000, 9000)] * 10)), Params(standby=5, min_warm=2))
    b = result.shared_standby
    assert b.standby_steps == 0
    assert b.standby_periods == []
    assert b.pool("standby").instance_hours == pytest.approx(2 * 10 / 60)
    assert b.pool("standby").serving_seconds == 0


def test_without_standby_premium_suffers_at_the_peak() -> None:
    loads = [(3000, 9000)] * 8 + [(12000, 30000)] * 2
    result = simulate(parse_trace(steps(loads)), Params(standby=0, min_warm=0, normal_percentile=50))
    b = result.shared_standby
    assert b.standby_steps == 0
    assert not b.tiers["platinum"].met
    assert b.tiers["platinum"].worst_p95_ms == math.inf  # overloaded: the queue grows without bound
    assert b.tiers["platinum"].share_within == pytest.approx(24000 / (24000 + 24000))


def test_the_sample_trace_shows_b_cheaper_with_platinum_met_in_both() -> None:
    result = simulate(parse_trace(SAMPLE.read_text()), Params())
    assert len(result.trace.requests) == 288
    assert result.trace.step_seconds == 300
    assert result.trace.tiers == ("platinum", "gold", "silver", "bronze")
    assert result.shared_standby.cost < result.dedicated.cost
    assert result.saving_share > 0.15
    assert result.dedicated.tiers["platinum"].met
    assert result.shared_standby.tiers["platinum"].met
    assert 0 < result.shared_standby.standby_steps < 288 / 4
    assert [start[11:16] for start, _ in result.shared_standby.standby_periods] == ["08:50", "19:35"]


# -- trace checking -------------------------------------------------------------------------------------------

ISO = "2026-03-10T08:00:00+00:00"
ISO2 = "2026-03-10T08:05:00+00:00"
ISO3 = "2026-03-10T08:10:00+00:00"


def test_a_trace_reads_iso_instants_and_fills_missing_tiers_with_zero() -> None:
    trace = parse_trace(
        "\ufefftime,tier,requests\n"
        f"{ISO},platinum,10\n{ISO},gold,20\n\n"
        f"2026-03-10T09:05:00+01:00,gold,5\n"  # the same instant as ISO2 in another offset
        f"{ISO3}, platinum ,7.5\n"
    )
    assert trace.tiers == ("platinum", "gold")
    assert trace.step_seconds == 300
    assert trace.requests == ((10, 20), (0, 5), (7.5, 0))
    assert trace.end_label(2) == "2026-03-10T08:15:00+00:00"


def test_a_trace_reads_seconds_from_the_start_in_any_column_order() -> None:
    trace = parse_trace("tier,requests,time\nplatinum,4,0\nplatinum,5,30\nplatinum,6,60\n")
    assert trace.step_seconds == 30
    assert trace.labels == ("0", "30", "60")
    assert trace.requests == ((4,), (5,), (6,))


def test_a_single_step_trace_takes_its_length_from_step() -> None:
    trace = parse_trace("time,tier,requests\n0,platinum,4\n", step_seconds=60)
    assert trace.step_seconds == 60


BAD_TRACES = [
    ("empty file", "", {}, 1, None, "empty"),
    ("header only", "time,tier,requests\n", {}, 2, None, "empty"),
    ("no header", f"{ISO},platinum,10\n", {}, 1, "time", "no header"),
    ("missing column", f"time,tier\n{ISO},platinum\n", {}, 1, "requests", "missing from the header"),
    ("unknown column", f"time,tier,requests,region\n{ISO},platinum,1,eu\n", {}, 1, "region", "unknown column"),
    ("column twice", f"time,tier,requests,tier\n{ISO},platinum,1,gold\n", {}, 1, "tier", "twice"),
    ("short row", f"time,tier,requests\n{ISO},platinum,1\n{ISO},gold\n", {}, 3, "requests", "expected 3 fields"),
    ("unparsable time", "time,tier,requests\nyesterday,platinum,1\n", {}, 2, "time", "'yesterday' is neither"),
    ("impossible date", "time,tier,requests\n2026-02-30T08:00:00+00:00,platinum,1\n", {}, 2, "time", "neither"),
    ("time without offset", "time,tier,requests\n2026-03-10T08:00:00,platinum,1\n", {}, 2, "time", "no UTC offset"),
    ("negative seconds", "time,tier,requests\n-60,platinum,1\n", {}, 2, "time", "negative"),
    ("mixed kinds of time", f"time,tier,requests\n0,platinum,1\n{ISO},platinum,1\n", {}, 3, "time", "mixes"),
    ("negative requests", f"time,tier,requests\n{ISO},platinum,10\n{ISO},gold,-5\n", {}, 3, "requests", "'-5' is negative"),
    ("non-numeric requests", f"time,tier,requests\n{ISO},platinum,lots\n", {}, 2, "requests", "'lots' is not a number"),
    ("infinite requests", f"time,tier,requests\n{ISO},platinum,1e999\n", {}, 2, "requests", "not a finite number"),
    ("empty requests", f"time,tier,requests\n{ISO},platinum,\n", {}, 2, "requests", "missing value"),
    ("empty tier", f"time,tier,requests\n{ISO},,3\n", {}, 2, "tier", "missing value"),
    ("steps out of order", f"time,tier,requests\n{ISO2},platinum,1\n{ISO3},platinum,1\n{ISO},platinum,1\n", {}, 4,
     "time", "before the previous step"),
    ("step back to an earlier time", f"time,tier,requests\n{ISO},platinum,1\n{ISO2},platinum,1\n{ISO},gold,1\n", {}, 4,
     "time", "before the previous step"),
    ("uneven steps", f"time,tier,requests\n{ISO},platinum,1\n{ISO2},platinum,1\n2026-03-10T08:20:00+00:00,platinum,1\n",
     {}, 4, "time", "evenly spaced"),
    ("step disagrees", f"time,tier,requests\n{ISO},platinum,1\n{ISO2},platinum,1\n", {"step_seconds": 60.0}, 3,
     "time", "--step is 60 s"),
    ("tier twice in a step", f"time,tier,requests\n{ISO},platinum,1\n{ISO},platinum,2\n", {}, 3, "tier", "twice"),
    ("unknown tier", f"time,tier,requests\n{ISO},platinum,1\n{ISO},diamond,2\n", {"tiers": ("platinum", "gold")}, 3,
     "tier", "unknown tier 'diamond' (known: platinum, gold)"),
    ("single step", f"time,tier,requests\n{ISO},platinum,1\n", {}, 2, "time", "--step"),
    ("unclosed quote", f'time,tier,requests\n{ISO},platinum,1\n{ISO},"gold,1\n', {}, 3, None, "not valid CSV"),
]


@pytest.mark.parametrize(("text", "kwargs", "line", "column", "message"), [c[1:] for c in BAD_TRACES],
                         ids=[c[0] for c in BAD_TRACES])
def test_a_bad_trace_names_the_line_and_column(text: str, kwargs: dict, line: int, column: str | None,
                                               message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(text, **kwargs)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"line {line}" + (f", column {column}:" if column else ":"))


# -- the command ----------------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("capacity", "simulate", *args, stdout=out)
    return out.getvalue()


def fails(*args: str) -> str:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("capacity", "simulate", *args, stdout=out)
    assert out.getvalue() == ""  # nothing printed as a result
    return str(caught.value)


def test_the_table_compares_both_designs_and_ends_with_the_summary() -> None:
    out = run(str(SAMPLE))
    lines = out.strip().splitlines()
    assert lines[0] == f"Capacity what-if for {SAMPLE}"
    assert "288 steps of 5 min (24 h)" in out
    a = next(line for line in lines if line.startswith("A dedicated"))
    b = next(line for line in lines if line.startswith("B shared + standby"))
    assert "premium 3 + shared 10" in a and "312.0" in a and "156.00" in a
    assert "shared 9 + standby 3 (1 warm)" in b
    platinum = next(line for line in lines if line.startswith("platinum*"))
    assert platinum.split()[1:3] == ["300", "ms"]
    assert platinum.count("met") == 2 and "MISSED" not in platinum
    assert "Standby in use: 2026-03-10T08:50:00+00:00 to 2026-03-10T09:45:00+00:00" in out
    assert lines[-1].startswith("288 steps (24 h): B saves 33.83 (21.7%) over A; platinum SLO met in A, met in B")


def test_json_has_both_designs_per_tier_and_the_saving() -> None:
    data = json.loads(run(str(SAMPLE), "--json"))
    a, b = data["designs"]["dedicated"], data["designs"]["shared_standby"]
    assert data["trace"] == {"file": str(SAMPLE), "steps": 288, "step_seconds": 300, "hours": 24,
                             "tiers": ["platinum", "gold", "silver", "bronze"]}
    assert a["pools"]["premium"]["instances"] == 3 and a["pools"]["shared"]["instances"] == 10
    assert a["instance_hours"] == 312 and a["cost"] == 156
    assert b["pools"]["standby"]["instances"] == data["parameters"]["standby"] == 3
    assert b["standby_steps"] == 26 and len(b["standby_periods"]) == 2
    assert b["cost"] < a["cost"]
    assert data["saving"]["cost"] == pytest.approx(a["cost"] - b["cost"])
    assert a["tiers"]["platinum"]["slo_met"] and b["tiers"]["platinum"]["slo_met"]
    assert b["tiers"]["platinum"]["requests"] == a["tiers"]["platinum"]["requests"] == 5_084_554
    assert b["tiers"]["bronze"]["worst_p95_ms"] is None  # overloaded at the evening peak
    assert data["summary"].startswith("288 steps")


def test_options_and_a_config_file_set_the_same_parameters(tmp_path: Path) -> None:
    config = tmp_path / "what-if.yaml"
    config.write_text("cost: 2\nservice_time: 40\nslo:\n  platinum: 250\nstandby: 5\nmin-warm: 2\n")
    data = json.loads(run(str(SAMPLE), "--json", "--config", str(config), "--cost", "3", "--slo", "gold=400"))
    p = data["parameters"]
    assert p["cost_per_hour"] == 3  # the command line wins over the file
    assert p["service_time_ms"] == 40 and p["standby"] == 5 and p["min_warm"] == 2
    assert p["slo_p95_ms"] == {"platinum": 250, "gold": 400, "silver": 1000, "bronze": 2000}
    assert data["designs"]["dedicated"]["cost"] == pytest.approx(data["designs"]["dedicated"]["instance_hours"] * 3)


def test_a_numeric_trace_with_tiers_and_step(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time,tier,requests\n0,vip,600\n")
    data = json.loads(run(str(trace), "--json", "--tiers", "vip,rest", "--premium", "vip", "--step", "60"))
    assert data["trace"]["step_seconds"] == 60
    assert data["trace"]["tiers"] == ["vip"]
    assert data["parameters"]["slo_p95_ms"] == {"vip": 2000}


def test_progress_goes_to_stderr_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(str(SAMPLE), "--progress")
    assert "simulating" in capsys.readouterr().err
    assert out.strip().splitlines()[-1].startswith("288 steps")


@pytest.mark.parametrize(("text", "message"), [(c[1], c[5]) for c in BAD_TRACES if not c[2]],
                         ids=[c[0] for c in BAD_TRACES if not c[2]])
def test_every_bad_trace_fails_the_command_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(text)
    error = fails(str(trace))
    assert error.startswith(f"{trace}: line ")
    assert message in error


def test_an_unknown_tier_fails_the_command(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(f"time,tier,requests\n{ISO},platinum,1\n{ISO},diamond,2\n{ISO2},platinum,1\n")
    assert fails(str(trace), "--tiers", "platinum,gold") == (
        f"{trace}: line 3, column tier: unknown tier 'diamond' (known: platinum, gold)"
    )


@pytest.mark.parametrize(("args", "config", "message"), [
    (["--slo-target", "1.5"], None, "--slo-target: must be a share above 0 and at most 1"),
    (["--threshold", "1"], None, "--threshold: must be a utilisation between 0 and 1"),
    (["--capacity", "0"], None, "--capacity: must be greater than 0"),
    (["--cost", "cheap"], None, "--cost: 'cheap' is not a number"),
    (["--standby", "some"], None, "--standby: must be a whole number of instances or 'auto'"),
    (["--min-warm", "1.5"], None, "--min-warm: must be a whole number"),
    (["--slo", "platinum"], None, "--slo: 'platinum' is not TIER=MILLISECONDS"),
    (["--standby", "1", "--min-warm", "2"], None, "--min-warm (2) is larger than the standby pool (1)"),
    (["--capacity", "10", "--service-time", "50"], None, "an instance needs room for at least 1"),
    (["--slo", "platinum=100"], None, "the SLO of platinum (100 ms) is not above the p95 of the service time alone"),
    (["--premium", "diamond"], None, "premium tier(s) diamond not in the trace"),
    (["--tiers", "platinum,gold", "--premium", "bronze"], None, "--premium: bronze not among the tiers"),
    ([], "capacity: 100\nspeed: 3\n", "what-if.yaml: speed: unknown parameter"),
    ([], "slo-target: [1]\n", "what-if.yaml: slo-target: '[1]' is not a number"),
    ([], "- capacity\n", "expected a mapping of parameter: value"),
    ([], "capacity: [1\n", "not valid YAML"),
])
def test_bad_parameters_fail_before_anything_is_printed(tmp_path: Path, args: list[str], config: str | None,
                                                        message: str) -> None:
    if config is not None:
        path = tmp_path / "what-if.yaml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    assert message in fails(str(SAMPLE), *args)


def test_a_missing_trace_file_fails(tmp_path: Path) -> None:
    assert "No such file" in fails(str(tmp_path / "nope.csv"))


def test_a_trace_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "latin1.csv"
    trace.write_bytes(b"time,tier,requests\n0,caf\xe9,1\n")
    assert fails(str(trace)) == f"{trace}: line 2: byte 0xe9 is not UTF-8; save the file as UTF-8"


def test_a_trace_without_requests_has_nothing_to_size() -> None:
    with pytest.raises(CapacityError, match="no requests"):
        simulate(parse_trace(steps([(0, 0), (0, 0)])), Params())
