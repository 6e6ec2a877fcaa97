"""Per-request measurement: exact counts and a mergeable latency sketch per rollup key, in memory.

The sketch is a DDSketch (logarithmic mapping, 1% relative accuracy, the same bucket keys as the `ddsketch`
package): a value v falls in bucket ceil(log(v) / log(gamma)); merging two sketches adds their buckets, so
rollups from many workers and hosts merge exactly, in any order.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Iterable
from itertools import accumulate
from operator import sub
from typing import Any

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_MULTIPLIER = 1 / math.log(GAMMA)
MIN_VALUE = 1e-6  # ms; anything at or below counts in the zero bucket
WINDOW_SECONDS = 60
_FORMAT = 2  # what encode() writes; decode() reads formats 1 and 2
_FORMAT_VARINT = 1

# key: (window start in epoch seconds, account, service, operation, pool, outcome, tier)
RollupKey = tuple[int, str, str, str, str, str, str]
# live key: (second, service, operation, pool, tier)
LiveKey = tuple[int, str, str, str, str]
# Requests made with an API key: (key id, UTC day as days since the epoch) -> [count, epoch second of the last]
KeyUses = dict[tuple[int, int], list[int]]

# array typecodes by item size, for the fixed-width little-endian columns of format 2
_CODES: dict[int, str] = {}
for _code in "BHILQ":
    _CODES.setdefault(array(_code).itemsize, _code)
_WIDTHS = (1, 2, 4, 8)
_SWAP = sys.byteorder != "little"


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

    def merge_encoded(self, data: bytes | memoryview) -> None:
        """Merge encoded bytes (either format) straight into this sketch, without a Sketch per row."""
        zero, keys, counts = _decode_bins(data)
        bins = self.bins
        get = bins.get
        for key, n in zip(keys, counts, strict=True):
            bins[key] = get(key, 0) + n
        self.zero += zero

    @classmethod
    def merged(cls, encoded: Iterable[bytes | memoryview]) -> Sketch:
        """One sketch of many encoded ones (rows of a query)."""
        sketch = cls()
        for data in encoded:
            sketch.merge_encoded(data)
        return sketch

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

    def above(self, threshold: float) -> Sketch:
        """The part of this sketch that `count_above(threshold)` counts: the buckets whose representative value
        is above `threshold` (so a value within 1% of the threshold may fall on either side)."""
        part = Sketch()
        part.bins = {key: n for key, n in self.bins.items() if 2 * GAMMA**key / (GAMMA + 1) > threshold}
        if threshold < 0:
            part.zero = self.zero
        return part

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and self.bins == other.bins and self.zero == other.zero

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, zero={self.zero}, buckets={len(self.bins)})"

    def encode(self) -> bytes:
        """Compact bytes that decode with C-level array reads (format 2).

        Format byte 2; varints: zero count, bucket count n; then, when n > 0, the zigzag varint of the lowest
        bucket key, one byte of column widths (high nibble: key gaps, low nibble: counts; 1, 2, 4 or 8 bytes),
        the n - 1 gaps between consecutive keys and the n counts as little-endian unsigned integers of those
        widths. Decoding is a few Python calls per sketch, not one per bucket (format 1, varints throughout,
        took two per bucket and is still read).
        """
        out = bytearray((_FORMAT,))
        _varint(out, self.zero)
        bins = self.bins
        keys = sorted(bins)
        _varint(out, len(keys))
        if not keys:
            return bytes(out)
        base = keys[0]
        _varint(out, (base << 1) ^ (base >> 63))
        gaps = array(_CODES[8], map(sub, keys[1:], keys[:-1]))
        counts = array(_CODES[8], map(bins.__getitem__, keys))
        gap_width = _width(max(gaps, default=0))
        count_width = _width(max(counts))
        out.append(gap_width << 4 | count_width)
        for column, width in ((gaps, gap_width), (counts, count_width)):
            if width != 8:
                column = array(_CODES[width], column)
            if _SWAP:
                column.byteswap()
            out += column.tobytes()
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Sketch:
        """The inverse of encode() (formats 1 and 2); raises ValueError on bytes that are not a sketch."""
        sketch = cls()
        zero, keys, counts = _decode_bins(data)
        sketch.zero = zero
        sketch.bins = dict(zip(keys, counts, strict=True))
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


def _width(value: int) -> int:
    if value < 0:
        raise ValueError("sketch counts are not negative")
    return 1 if value < 0x100 else 2 if value < 0x10000 else 4 if value < 0x100000000 else 8


def _decode_bins(data: bytes | memoryview) -> tuple[int, Iterable[int], Iterable[int]]:
    """(zero count, bucket keys, bucket counts) of an encoded sketch; keys ascending and distinct in format 2.

    Raises ValueError on bytes that are not a sketch.
    """
    if not data:
        return 0, (), ()
    data = bytes(data)
    fmt = data[0]
    if fmt == _FORMAT:
        zero, pos = _read_varint(data, 1)
        n, pos = _read_varint(data, pos)
        if n == 0:
            if pos != len(data):
                raise ValueError("trailing bytes after the sketch")
            return zero, (), ()
        zz, pos = _read_varint(data, pos)
        if pos >= len(data):
            raise ValueError("truncated sketch")
        widths = data[pos]
        pos += 1
        gap_width, count_width = widths >> 4, widths & 0x0F
        if gap_width not in _WIDTHS or count_width not in _WIDTHS:
            raise ValueError(f"bad column widths {widths:#04x} in the sketch")
        middle = pos + (n - 1) * gap_width
        if middle + n * count_width != len(data):
            raise ValueError("truncated sketch" if middle + n * count_width > len(data) else
                             "trailing bytes after the sketch")
        gaps = array(_CODES[gap_width], data[pos:middle])
        counts = array(_CODES[count_width], data[middle:])
        if _SWAP:
            gaps.byteswap()
            counts.byteswap()
        if gaps and min(gaps) == 0:
            raise ValueError("sketch bucket keys repeat")
        return zero, accumulate(gaps, initial=(zz >> 1) ^ -(zz & 1)), counts
    if fmt == _FORMAT_VARINT:
        return _decode_varints(data)
    raise ValueError(f"unknown sketch format {fmt}")


def _decode_varints(data: bytes) -> tuple[int, Iterable[int], Iterable[int]]:
    """Format 1: format, zero count, bucket count, then (key delta, count) as zigzag / plain varints."""
    zero, pos = _read_varint(data, 1)
    n, pos = _read_varint(data, pos)
    bins: dict[int, int] = {}
    key = 0
    for _ in range(n):
        zz, pos = _read_varint(data, pos)
        key += (zz >> 1) ^ -(zz & 1)
        count, pos = _read_varint(data, pos)
        bins[key] = bins.get(key, 0) + count
    if pos != len(data):
        raise ValueError("trailing bytes after the sketch")
    return zero, bins.keys(), bins.values()


def _encode_varints(sketch: Sketch) -> bytes:
    """Format 1, as rows written before format 2 hold it (kept for tests and tools that compare)."""
    out = bytearray((_FORMAT_VARINT,))
    _varint(out, sketch.zero)
    _varint(out, len(sketch.bins))
    previous = 0
    for key in sorted(sketch.bins):
        delta = key - previous
        _varint(out, (delta << 1) ^ (delta >> 63))
        _varint(out, sketch.bins[key])
        previous = key
    return bytes(out)


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


# Seconds recorded this far after the instant a caller asks about mean the wall clock was stepped back since.
STEPPED_BACK = 60


class Accumulator:
    """Rollups of one process since the last flush; only the event loop's thread touches it.

    A request adds to one tally: its key with the second it started in (`record`). Whole seconds are folded, a
    key at a time, into the rollups of their window (per account) and the live tallies of their second (without
    the account) when either is taken, so the request path pays for one tally, not two, and the folding costs
    per key and second, not per request.
    """

    def __init__(self, window_seconds: int = WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self._tallies: dict[RollupKey, Tally] = {}
        # (second, account, service, operation, pool, outcome, tier): what `record` adds to
        self._seconds: dict[RollupKey, Tally] = {}
        # Per-second tallies without the account, for the live signals governance reacts to within seconds.
        self.live: dict[LiveKey, Tally] = {}
        self.recorded = 0  # requests recorded since start, for /metrics
        # Requests per (API key id, UTC day as days since the epoch): [count, epoch second of the last one]
        self.key_uses: KeyUses = {}
        # Told of every per-second tally as it is folded (each request once): the cumulative /metrics series
        # (exposition.AccountSeries.add), which thus cost nothing per request.
        self.observer: Callable[[RollupKey, Tally], None] | None = None

    def record(self, now: float, account: str, service: str, operation: str, pool: str, outcome: str,
               status: int, bytes_in: int, bytes_out: int, latency_ms: float, tier: str = "") -> None:
        key = (int(now), account, service, operation, pool, outcome, tier)
        tally = self._seconds.get(key)
        if tally is None:
            tally = self._seconds[key] = Tally()
        tally.count += 1
        if status >= 500:
            tally.errors += 1
        tally.bytes_in += bytes_in
        tally.bytes_out += bytes_out
        tally.latency_sum += latency_ms
        if latency_ms > MIN_VALUE:  # Sketch.add inlined: this runs on every request
            bucket = math.ceil(math.log(latency_ms) * _MULTIPLIER)
            bins = tally.sketch.bins
            bins[bucket] = bins.get(bucket, 0) + 1
        else:
            tally.sketch.zero += 1
        self.recorded += 1

    def use_key(self, credential: int, wall: float) -> None:
        """Count a request made with an API key (its id), on the UTC day of `wall` (epoch seconds)."""
        second = int(wall)
        key = (credential, second // 86400)
        use = self.key_uses.get(key)
        if use is None:
            self.key_uses[key] = [1, second]
        else:
            use[0] += 1
            if second > use[1]:
                use[1] = second

    def take_key_uses(self) -> KeyUses:
        """The key uses counted since the last take, leaving none."""
        taken, self.key_uses = self.key_uses, {}
        return taken

    def _fold(self, before: int | None = None) -> None:
        """Move the per-second tallies of seconds before `before` (all with None) into the rollups of their
        window and the live tallies of their second."""
        seconds = self._seconds
        if not seconds:
            return
        if before is None:
            done, self._seconds = seconds, {}
        else:
            done = {k: t for k, t in seconds.items() if k[0] < before or k[0] > before + STEPPED_BACK}
            for k in done:
                del seconds[k]
        window, tallies, live, observer = self.window_seconds, self._tallies, self.live, self.observer
        for (second, account, service, operation, pool, outcome, tier), tally in done.items():
            if observer is not None:
                observer((second, account, service, operation, pool, outcome, tier), tally)
            key = (second - second % window, account, service, operation, pool, outcome, tier)
            mine = tallies.get(key)
            if mine is None:
                tallies[key] = mine = Tally()
            mine.merge(tally)
            if service:
                live_key = (second, service, operation, pool, tier)
                mine = live.get(live_key)
                if mine is None:
                    live[live_key] = mine = Tally()
                mine.merge(tally)

    @property
    def tallies(self) -> dict[RollupKey, Tally]:
        """The rollups so far, by window (every second recorded folded in)."""
        self._fold()
        return self._tallies

    def take_live(self, before: int) -> dict[LiveKey, Tally]:
        """The live tallies of whole seconds before `before` (epoch seconds); later ones stay to fill up, unless
        they are more than STEPPED_BACK seconds later: the wall clock went back, and they would wait that long."""
        self._fold(before)
        done = {k: t for k, t in self.live.items() if k[0] < before or k[0] > before + STEPPED_BACK}
        for k in done:
            del self.live[k]
        return done

    def take(self) -> dict[RollupKey, Tally]:
        """Everything recorded since the last take, leaving the accumulator empty."""
        self._fold()
        taken, self._tallies = self._tallies, {}
        return taken

    def give_back(self, taken: dict[RollupKey, Tally]) -> None:
        """Put back rollups a flush could not write, so that nothing is lost."""
        tallies = self._tallies
        for key, tally in taken.items():
            mine = tallies.get(key)
            if mine is None:
                tallies[key] = tally
            else:
                mine.merge(tally)

    def trim(self, max_keys: int) -> int:
        """Keep at most `max_keys` rollup keys, dropping the oldest windows first; returns the requests dropped.

        The bound on what a gateway buffers while its database is away: memory grows with the keys (a tally and
        its sketch each), not with the requests counted in them.
        """
        self._fold()
        tallies = self._tallies
        excess = len(tallies) - max(0, max_keys)
        if excess <= 0:
            return 0
        dropped = 0
        for key in sorted(tallies)[:excess]:  # a key starts with its window: the oldest sort first
            dropped += tallies.pop(key).count
        return dropped

    @property
    def keys(self) -> int:
        """Rollup keys held (per-second tallies not yet folded count as keys too)."""
        return len(self._tallies) + len(self._seconds)

    @property
    def pending(self) -> int:
        return sum(t.count for t in self._tallies.values()) + sum(t.count for t in self._seconds.values())

