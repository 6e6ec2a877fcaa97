"""Rollups in memory: exact counts and a latency sketch that merges exactly and stays within 1%."""

from __future__ import annotations

import random

import pytest

from accord.gateway.measure import Accumulator, Sketch, Tally


def values(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(2.0, 1.2) for _ in range(n)]


def test_quantiles_are_within_one_percent_of_the_true_values() -> None:
    data = values(1, 20_000)
    sketch = Sketch()
    for v in data:
        sketch.add(v)
    ordered = sorted(data)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        true = ordered[int(q * (len(ordered) - 1))]
        got = sketch.quantile(q)
        assert got is not None and abs(got - true) <= 0.0101 * true, (q, got, true)


def test_it_agrees_with_the_ddsketch_package() -> None:
    from ddsketch import DDSketch

    data = values(2, 5000)
    ours, theirs = Sketch(), DDSketch(0.01)
    for v in data:
        ours.add(v)
        theirs.add(v)
    for q in (0.5, 0.95, 0.99):
        expected = theirs.get_quantile_value(q)
        assert ours.quantile(q) == pytest.approx(expected, rel=1e-9)
        assert ours.to_ddsketch().get_quantile_value(q) == pytest.approx(expected, rel=1e-9)


def test_merging_is_exact_and_order_does_not_matter() -> None:
    data = values(3, 3000)
    whole = Sketch()
    for v in data:
        whole.add(v)
    parts = [Sketch() for _ in range(3)]
    for i, v in enumerate(data):
        parts[i % 3].add(v)
    forward, backward = Sketch(), Sketch()
    for p in parts:
        forward.merge(p)
    for p in reversed(parts):
        backward.merge(p)
    assert forward == whole == backward and whole.count == 3000


def test_encoding_round_trips_and_is_compact() -> None:
    sketch = Sketch()
    for v in [*values(4, 10_000), 0.0, 0.0]:
        sketch.add(v)
    data = sketch.encode()
    assert Sketch.decode(data) == sketch
    assert len(data) < 2000  # a few hundred buckets, not ten thousand values
    assert Sketch.decode(b"") == Sketch() and Sketch().quantile(0.5) is None


@pytest.mark.parametrize("junk", [
    b"\x07", b"\x01\x80", b"\x01\x00\x02\x02", b"\x01\x00\x00\x00", b"\x01" + b"\xff" * 20,
    b"\x02\x00", b"\x02\x00\x00\x00", b"\x02\x00\x01\x02", b"\x02\x00\x01\x02\x11", b"\x02\x00\x01\x02\x31\x05",
    b"\x02\x00\x01\x02\x11\x05\x06", b"\x02\x00\x02\x02\x11\x00\x05\x06",  # widths, lengths, repeated keys
])
def test_decoding_bytes_that_are_not_a_sketch_raises_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        Sketch.decode(junk)
    with pytest.raises(ValueError):
        Sketch().merge_encoded(junk)


def random_sketch(rng: random.Random) -> Sketch:
    sketch = Sketch()
    kind = rng.randrange(4)
    for _ in range(rng.choice([0, 1, 3, 50, 2000])):
        if kind == 0:
            sketch.add(rng.lognormvariate(4, 0.5))
        elif kind == 1:
            sketch.add(rng.choice([0.0, 1e-9, 1e-3, 0.5, 1e6, 1e12]))  # the zero bucket, negative and huge keys
        else:
            sketch.add(rng.lognormvariate(rng.uniform(-3, 9), rng.uniform(0.1, 3)))
    if rng.random() < 0.2:  # counts that need 2, 4 and 8 bytes
        for key in list(sketch.bins)[:3]:
            sketch.bins[key] += rng.choice([300, 70_000, 5_000_000_000])
    return sketch


def test_both_formats_round_trip_and_merge_encoded_equals_merge() -> None:
    from accord.gateway.measure import _encode_varints

    rng = random.Random(9)
    merged, by_bytes, by_old_bytes = Sketch(), Sketch(), Sketch()
    for _ in range(300):
        sketch = random_sketch(rng)
        new, old = sketch.encode(), _encode_varints(sketch)
        assert new[0] == 2 and old[0] == 1
        assert Sketch.decode(new) == sketch == Sketch.decode(old) == Sketch.decode(memoryview(new))
        merged.merge(sketch)
        by_bytes.merge_encoded(new)
        by_old_bytes.merge_encoded(old)
    assert merged == by_bytes == by_old_bytes
    assert Sketch.merged([merged.encode(), Sketch().encode(), b""]) == merged


def test_format_one_rows_written_before_still_decode() -> None:
    # bytes as format 1 wrote them for 10 ms x 3, 0 ms x 1: zero count 1, one bucket (key 116) of 3
    old = bytes([1, 1, 1, 232, 1, 3])
    sketch = Sketch.decode(old)
    assert sketch.zero == 1 and sketch.bins == {116: 3} and sketch.quantile(0.9) == pytest.approx(10, rel=0.01)


def test_the_accumulator_counts_every_request_in_its_window_and_key() -> None:
    acc = Accumulator(window_seconds=60)
    for i in range(1000):
        acc.record(1_800_000_000 + i * 0.1, "GLOBEX", "booking", "read", "primary", "ok", 200, 10, 100, 1.5)
    acc.record(1_800_000_059.9, "GLOBEX", "booking", "read", "primary", "server_error", 503, 0, 50, 3.0)
    tallies = acc.take()
    assert acc.tallies == {} and acc.recorded == 1001
    ok = {k[0]: t.count for k, t in tallies.items() if k[5] == "ok"}
    assert ok == {1_800_000_000: 600, 1_800_000_060: 400}  # 60-second windows on epoch boundaries
    errors = next(t for k, t in tallies.items() if k[5] == "server_error")
    assert (errors.count, errors.errors, errors.bytes_out) == (1, 1, 50)


def test_rollups_given_back_after_a_failed_flush_merge_with_new_ones() -> None:
    acc = Accumulator()
    acc.record(1_800_000_000, "a", "s", "", "p", "ok", 200, 1, 2, 1.0)
    taken = acc.take()
    acc.record(1_800_000_001, "a", "s", "", "p", "ok", 200, 1, 2, 2.0)
    acc.give_back(taken)
    (tally,) = acc.tallies.values()
    assert isinstance(tally, Tally) and (tally.count, tally.bytes_in, tally.sketch.count) == (2, 2, 2)
    assert acc.pending == 2


def test_seconds_fold_into_the_same_rollups_and_live_tallies_whatever_is_taken_first() -> None:
    rng = random.Random(7)
    calls = [(1_800_000_000 + rng.uniform(0, 130), rng.choice(["a", "b"]), rng.choice(["ok", "server_error"]),
              rng.lognormvariate(2, 1)) for _ in range(3000)]
    expected_live: dict[tuple[int, str], int] = {}
    expected_rollups: dict[tuple[int, str, str], int] = {}
    acc = Accumulator(window_seconds=60)
    live: dict[tuple[int, str, str, str, str], Tally] = {}
    for i, (now, account, outcome, latency) in enumerate(sorted(calls)):
        acc.record(now, account, "booking", "read", "primary", outcome, 503 if outcome != "ok" else 200, 1, 2,
                   latency, "gold")
        second = int(now)
        expected_live[(second, outcome)] = expected_live.get((second, outcome), 0) + 1
        window = second - second % 60
        expected_rollups[(window, account, outcome)] = expected_rollups.get((window, account, outcome), 0) + 1
        if i % 250 == 0:  # the live writer takes whole seconds now and then, the current one included
            for key, tally in acc.take_live(second + 1).items():
                live.setdefault(key, Tally()).merge(tally)
    for key, tally in acc.take_live(1_900_000_000).items():
        live.setdefault(key, Tally()).merge(tally)
    rollups = acc.take()
    assert acc.pending == 0 and acc.tallies == {} and acc.recorded == 3000
    assert {(k[0], k[1], k[5]): t.count for k, t in rollups.items()} == {
        (w, a, o): n for (w, a, o), n in expected_rollups.items()}
    # live tallies have neither account nor outcome: per second, their counts and errors add up to what was recorded
    per_second: dict[int, list[int]] = {}
    for (second, _service, _operation, _pool, _tier), tally in live.items():
        got = per_second.setdefault(second, [0, 0])
        got[0] += tally.count
        got[1] += tally.errors
    wanted: dict[int, list[int]] = {}
    for (second, outcome), n in expected_live.items():
        got = wanted.setdefault(second, [0, 0])
        got[0] += n
        got[1] += n if outcome == "server_error" else 0
    assert per_second == wanted
    assert sum(t.sketch.count for t in rollups.values()) == sum(t.sketch.count for t in live.values()) == 3000


def test_live_seconds_left_an_hour_ahead_by_a_clock_stepped_back_are_taken_not_held() -> None:
    acc = Accumulator()
    t = 1_800_000_000
    acc.record(t + 0.5, "GLOBEX", "booking", "read", "primary", "ok", 200, 1, 0, 3.0)
    acc.record(t + 1.5, "GLOBEX", "booking", "read", "primary", "ok", 200, 1, 0, 3.0)  # the second still filling
    # the wall clock goes back an hour: the next sample asks for the seconds before its own now
    acc.record(t - 3600 + 0.2, "GLOBEX", "booking", "read", "primary", "ok", 200, 1, 0, 3.0)
    taken = acc.take_live(t - 3600 + 1)
    assert sorted(k[0] for k in taken) == [t - 3600, t, t + 1]  # not held for an hour
    assert sum(tally.count for tally in taken.values()) == 3
    # on the right clock a second still filling stays until it is whole
    acc.record(t + 10.5, "GLOBEX", "booking", "read", "primary", "ok", 200, 1, 0, 3.0)
    assert acc.take_live(t + 10) == {}
    assert [k[0] for k in acc.take_live(t + 11)] == [t + 10]
    assert sum(tally.count for tally in acc.take().values()) == 4  # the rollups got every request once
