"""The collector's reading of HAProxy's log lines: outcomes as the gateway names them, each line once, and a count
of what it could not read."""

from __future__ import annotations

import pytest

from accord.gateway.measure import Accumulator
from accord.haproxy.collector import Collector, outcome_of, parse

HEADER = b"<134>Dec  7 17:13:18 haproxy[28066]: "


def line(counter: int = 1, account: str = "ACME", tier: str = "gold", service: str = "booking",
         credential: str = "7", backend: str = "booking.main", server: str = "main.1", status: int = 200,
         ta: int = 12, state: str = "----", path: str = "/bookings/1", refused: str = "") -> bytes:
    return HEADER + (f'accord1 28066 {counter} 1796663598 "{account}" "{tier}" "{service}" "{credential}" {backend} '
                     f'{server} {status} 120 340 0 0 1 10 {ta} {state} GET "{path}" "{refused}"\n').encode()


def test_a_line_becomes_one_request_with_its_account_pool_and_timings() -> None:
    record = parse(line())
    assert record is not None
    assert (record.account, record.tier, record.service, record.pool, record.status, record.outcome) == (
        "ACME", "gold", "booking", "main", 200, "ok")
    assert (record.credential, record.bytes_in, record.bytes_out, record.latency_ms, record.accepted) == (
        7, 120, 340, 12.0, 1796663598)


@pytest.mark.parametrize(("status", "server", "state", "expected"), [
    (200, "main.1", "----", (200, "ok")),
    (404, "main.1", "----", (404, "client_error")),  # the service's own 404
    (404, "<NOSRV>", "LR--", (404, "not_found")),  # HAProxy's: no route
    (401, "<NOSRV>", "LR--", (401, "unauthorized")),
    (503, "<NOSRV>", "SC--", (503, "no_endpoint")),
    (500, "main.1", "----", (500, "server_error")),
    (504, "main.1", "sH--", (504, "timeout")),
    (502, "main.1", "SH--", (502, "bad_gateway")),
    (-1, "main.1", "CD--", (499, "client_gone")),
])
def test_outcomes_are_named_as_the_gateway_names_them(status: int, server: str, state: str,
                                                      expected: tuple[int, str]) -> None:
    assert outcome_of(status, server, state) == expected


def test_a_refused_request_has_no_account_and_no_pool() -> None:
    record = parse(line(account="", tier="", credential="", backend="accord", server="<NOSRV>", status=401,
                        state="LR--"))
    assert record is not None
    assert (record.account, record.pool, record.credential, record.outcome) == ("", "", 0, "unauthorized")


def test_each_line_is_counted_once_and_what_cannot_be_read_is_counted_apart() -> None:
    acc = Accumulator()
    collector = Collector(acc)
    for datagram in (line(1), line(2, account="BETA"), line(1), HEADER + b"Server booking.main/main.1 is DOWN",
                     line(3)[:-20]):
        collector.feed(datagram)
    # a tagged line cut short is unparsed; HAProxy's own message on the same target is an event, not a request
    assert (collector.received, collector.recorded, collector.duplicates, collector.unparsed, collector.events) == (
        5, 2, 1, 1, 1)
    tallies = acc.take()
    assert sorted((k[1], t.count) for k, t in tallies.items()) == [("ACME", 1), ("BETA", 1)]
    assert acc.key_uses and sum(n for n, _ in acc.key_uses.values()) == 2


def test_haproxy_s_own_answers_carry_their_outcome() -> None:
    for refused, status in (("shed", 503), ("rate_limited", 429), ("no_endpoint", 503)):
        record = parse(line(server="<NOSRV>", backend="accord", status=status, state="LR--", refused=refused))
        assert record is not None and (record.status, record.outcome) == (status, refused)


def test_a_tier_name_with_a_space_comes_back_as_it_was() -> None:
    record = parse(line(tier="Gold%20Plus"))
    assert record is not None and record.tier == "Gold Plus"
