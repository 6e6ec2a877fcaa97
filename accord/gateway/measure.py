"""Per-request measurement: exact counts and a mergeable latency sketch per rollup key, in memory.

The sketch is a DDSketch (logarithmic mapping, 1% relative accuracy, the same bucket keys as the `ddsketch`
package): a value v falls in bucket ceil(log(v) / log(gamma)); merging two sketches adds their buckets, so
rollups from many workers and hosts merge exactly, in any order.
"""

from __future__ import annotations

import math
from typing import Any

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_MULTIPLIER = 1 / math.log(GAMMA)
MIN_VALUE = 1e-6  # ms; anything at or below counts in the zero bucket
WINDOW_SECONDS = 60
_FORMAT = 1

# key: (window start in epoch seconds, account, service, operation, pool, outcome, tier)
RollupKey = tuple[int, str, str, str, str, str, str]
# live key: (second, service, operation, pool, tier)
LiveKey = tuple[int, str, str, str, str]


class Sketch:
    """A DDSketch of latencies in milliseconds."""

    __slots__ = ("bins", "zero")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zero = 0

    @property
    def count(self) -> int:
        return self.zero + sum(self.bins.values())

    def add(self, value: float) -> None:
        if value > MIN_VALUE:
            key = math.ceil(math.log(value) * _MULTIPLIER)
            bins = self.bins
            bins[key] = bins.get(key, 0) + 1
        else:
            self.zero += 1

    def merge(self, other: Sketch) -> None:
        bins = self.bins
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        self.zero += other.zero

    def quantile(self, q: float) -> float | None:
        """The value at quantile q (0..1), within 1% of the true one; None when empty."""
        total = self.count
        if total == 0 or not 0 <= q <= 1:
            return None
        rank = q * (total - 1)
        seen = self.zero
        if seen > rank:
            return 0.0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return 2 * GAMMA**key / (GAMMA + 1)
        return 2 * GAMMA ** max(self.bins) / (GAMMA + 1)

    def count_above(self, threshold: float) -> int:
        """Values above `threshold`, counting a bucket as above when its representative value is (1% accuracy)."""
        above = 0
        for key, n in self.bins.items():
            if 2 * GAMMA**key / (GAMMA + 1) > threshold:
                above += n
        if threshold < 0:
            above += self.zero
        return above

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and self.bins == other.bins and self.zero == other.zero

    __hash__ = None  # type: ignore[assignment]

    def encode(self) -> bytes:
        """Compact bytes: format, zero count, bucket count, then (key delta, count) as zigzag varints."""
        out = bytearray((_FORMAT,))
        _varint(out, self.zero)
        _varint(out, len(self.bins))
        previous = 0
        for key in sorted(self.bins):
            delta = key - previous
            _varint(out, (delta << 1) ^ (delta >> 63))
            _varint(out, self.bins[key])
            previous = key
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Sketch:
        """The inverse of encode(); raises ValueError on bytes that are not a sketch."""
        data = bytes(data)
        sketch = cls()
        if not data:
            return sketch
        if data[0] != _FORMAT:
            raise ValueError(f"unknown sketch format {data[0]}")
        pos = 1
        sketch.zero, pos = _read_varint(data, pos)
        n, pos = _read_varint(data, pos)
        key = 0
        for _ in range(n):
            zz, pos = _read_varint(data, pos)
            key += (zz >> 1) ^ -(zz & 1)
            count, pos = _read_varint(data, pos)
            sketch.bins[key] = sketch.bins.get(key, 0) + count
        if pos != len(data):
            raise ValueError("trailing bytes after the sketch")
        return sketch

    def to_ddsketch(self) -> Any:
        """The same sketch as a `ddsketch.DDSketch`, for tools that speak its protobuf."""
        from ddsketch import DDSketch

        out = DDSketch(RELATIVE_ACCURACY)
        for key, n in self.bins.items():
            out.add(2 * GAMMA**key / (GAMMA + 1), n)
        if self.zero:
            out.add(0.0, self.zero)
        return out


def _varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated sketch")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


class Tally:
    """The running totals of one rollup key."""

    __slots__ = ("bytes_in", "bytes_out", "count", "errors", "latency_sum", "sketch")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.latency_sum = 0.0
        self.sketch = Sketch()

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.errors += other.errors
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.latency_sum += other.latency_sum
        self.sketch.merge(other.sketch)


class Accumulator:
    """Rollups of one process since the last flush; only the event loop's thread touches it."""

    def __init__(self, window_seconds: int = WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self.tallies: dict[RollupKey, Tally] = {}
        # Per-second tallies without the account, for the live signals governance reacts to within seconds.
        self.live: dict[LiveKey, Tally] = {}
        self.recorded = 0  # requests recorded since start, for /metrics

    def record(self, now: float, account: str, service: str, operation: str, pool: str, outcome: str,
               status: int, bytes_in: int, bytes_out: int, latency_ms: float, tier: str = "") -> None:
        start = int(now)
        key = (start - start % self.window_seconds, account, service, operation, pool, outcome, tier)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        self._add(tally, status, bytes_in, bytes_out, latency_ms)
        if service:
            live_key = (start, service, operation, pool, tier)
            live = self.live.get(live_key)
            if live is None:
                live = self.live[live_key] = Tally()
            self._add(live, status, bytes_in, bytes_out, latency_ms)
        self.recorded += 1

    @staticmethod
    def _add(tally: Tally, status: int, bytes_in: int, bytes_out: int, latency_ms: float) -> None:
        tally.count += 1
        if status >= 500:
            tally.errors += 1
        tally.bytes_in += bytes_in
        tally.bytes_out += bytes_out
        tally.latency_sum += latency_ms
        sketch = tally.sketch
        if latency_ms > MIN_VALUE:  # Sketch.add inlined: this runs twice per request
            key = math.ceil(math.log(latency_ms) * _MULTIPLIER)
            bins = sketch.bins
            bins[key] = bins.get(key, 0) + 1
        else:
            sketch.zero += 1

    def take_live(self, before: int) -> dict[LiveKey, Tally]:
        """The live tallies of whole seconds before `before` (epoch seconds); later ones stay to fill up."""
        done = {k: t for k, t in self.live.items() if k[0] < before}
        for k in done:
            del self.live[k]
        return done

    def take(self) -> dict[RollupKey, Tally]:
        """Everything recorded since the last take, leaving the accumulator empty."""
        taken, self.tallies = self.tallies, {}
        return taken

    def give_back(self, taken: dict[RollupKey, Tally]) -> None:
        """Put back rollups a flush could not write, so that nothing is lost."""
        for key, tally in taken.items():
            mine = self.tallies.get(key)
            if mine is None:
                self.tallies[key] = tally
            else:
                mine.merge(tally)

    @property
    def pending(self) -> int:
        return sum(t.count for t in self.tallies.values())

