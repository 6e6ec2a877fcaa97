"""An haproxy.cfg and its map files, rendered from the gateway's snapshot (`accord.gateway.snapshot.load_snapshot`).

What changes often (API keys, their accounts, tiers and priorities, the pool an action routes an account to) lives
in map files, which the Runtime API edits in place without a reload (`runtime.py`); what changes rarely (services,
pools, endpoints) is the configuration itself. Keys are in the maps only as the SHA-256 hex the catalog stores:
HAProxy hashes the key a client sends (`sha2(256),hex`) and looks the hash up, so no file holds a key in clear.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from accord.gateway.snapshot import ANONYMOUS, ActionRule, Identity, PoolTarget, Snapshot

# The maps, by file name: what each one's keys and values are.
ROUTES = "routes.map"  # ^base-path(/|$) regex, longest first -> service
BACKENDS = "backends.map"  # service -> the backend of its primary pool
ANONYMOUS_OK = "anonymous.map"  # service -> 1 when it takes calls without a key
FORWARD = "forward.map"  # service -> 1 when the caller's key goes upstream too
KEYS = "keys.map"  # sha256 hex of a key -> account key (as X-Accord-Account says it)
TIERS = "tiers.map"  # sha256 hex -> tier name (percent-encoded like a header value)
RANKS = "ranks.map"  # sha256 hex -> tier rank (1 the highest): the priority class under an admission action
CREDENTIALS = "credentials.map"  # sha256 hex -> the key's id, for its usage count
POOLS = "pools.map"  # service|account -> the backend a route action sends that account to
SHED = "shed.map"  # service|account -> Retry-After seconds, while a shed action applies to that account
RATES = "rates.map"  # service|account -> the first rate-limit action's token bucket: bucket:interval:tolerance
RATES_2 = "rates-2.map"  # ... the second one's, when two or more apply (the gateway takes a token from each)
RATES_3 = "rates-3.map"  # ... the third one's
ADMISSION = "admission.map"  # service|account -> Retry-After seconds, while an admission action applies to it
OPERATIONS = "operations.map"  # ^service\|METHOD\|path-regex, most specific first -> operation name
OPSCOPED = "opscoped.map"  # service -> 1: name its operations; service|operation -> 1: actions differ there
RATE_MAPS = (RATES, RATES_2, RATES_3)  # one per stick counter (HAProxy 2.6 has three: sc0, sc1, sc2)
MAPS = (ROUTES, BACKENDS, ANONYMOUS_OK, FORWARD, KEYS, TIERS, RANKS, CREDENTIALS, POOLS, SHED, *RATE_MAPS,
        ADMISSION, OPERATIONS, OPSCOPED)
# The maps the runner keeps in step at run time; a change elsewhere (services, pools, endpoints) is a reload.
RUNTIME_MAPS = (KEYS, TIERS, RANKS, CREDENTIALS, POOLS, SHED, *RATE_MAPS, ADMISSION, OPSCOPED)
LOWEST_CLASS = 2047  # HAProxy's lowest priority class: callers without a tier, as the gateway admits them last
DEFAULT_MAX_WAIT = 1.0  # `timeout queue` of a service no admission action applies to (the action's default)
RATE_TABLE = "accord_rates"  # the stick table holding each bucket|account's theoretical arrival time (GCRA)
# Token buckets as GCRA: per bucket|account the theoretical arrival time (TAT) in the table's 32-bit gpt0, in ticks
# of 10 µs modulo 2**32 (about 11.9 h around, so a TAT read back is within +-5.96 h of now: the difference is taken
# modulo 2**32 and read as signed). Entries untouched for RATE_EXPIRE are dropped, well inside that window, and a
# bucket's tolerance (burst x interval) is capped at RATE_EXPIRE so no TAT is ever further ahead than that.
TICKS_PER_SECOND = 100_000
RATE_EXPIRE = 5 * 3600  # seconds
MAX_TOLERANCE = RATE_EXPIRE * TICKS_PER_SECOND
PEERS = "accord"  # the peers section that shares the rate table between instances (shared rate limits)

LOG_TAG = "accord1"  # first word of every request's log line: the collector reads lines that start with it
# One line per request: process id, its request counter, when it was accepted (epoch s), account, tier, service,
# key id, backend, server, status, bytes in and out, timings (ms), the termination state, method, path and, when
# HAProxy answered itself, why (the gateway's outcome name).
LOG_FORMAT = (
    f"{LOG_TAG} %pid %rt %Ts %{{+Q}}[var(txn.account)] %{{+Q}}[var(txn.tier)] %{{+Q}}[var(txn.service)] "
    "%{+Q}[var(txn.credential)] %b %s %ST %U %B %TR %Tw %Tc %Tr %Ta %tsc %HM %{+Q}HP %{+Q}[var(txn.refused)]"
)
FRONTEND = "accord"
# How the lines reach `accord collector`: `ring` (default), HAProxy writes each line into a memory ring (about 2 us of
# its CPU a request) that it forwards over TCP, RFC 6587 octet counting; `udp`, one syslog datagram a line (about
# 9 us, and the kernel drops datagrams when the collector falls behind). bench/haproxy_cost.py measured both.
LOG_TRANSPORTS = ("ring", "udp")
RING = "accord_log"  # the ring section's name
# The ring's size, per HAProxy worker. A line is ~300 bytes with its syslog header and the ring's own 2-3 (up to
# LOG_LEN with a long path); one instance served 22-28k requests/s in bench/gateway.py and bench/haproxy_cost.py, so
# 32 MiB holds ~110,000 lines: about 4 s of that peak (more of ordinary traffic) for the collector to be away or
# behind (a database hiccup, a restart) before HAProxy drops lines, and then counts them. The memory is HAProxy's,
# per worker (two during a reload).
RING_SIZE = 32 * 1024 * 1024
RING_MIN = 16 * 1024  # HAProxy 2.6 never makes a ring smaller than its buffer size (tune.bufsize, 16 KiB)
RING_MAX = 1024 * 1024 * 1024
LOG_LEN = 8192  # the longest line HAProxy sends (a longer one is cut); the path is cut at 1024 (tune.http.logurilen)
_SAFE_VALUE = re.compile(r"^[\x21-\x7e]+$")
_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")


@dataclass(frozen=True)
class Options:
    """Where HAProxy listens, where it logs, where its Runtime API socket is, and the files it reads."""

    directory: Path  # the maps go here (and the configuration, unless `config` says otherwise)
    listen: str = "127.0.0.1:8080"
    collector: str = "127.0.0.1:5140"
    log_transport: str = "ring"  # one of LOG_TRANSPORTS
    ring_size: int = RING_SIZE  # bytes, with log_transport "ring"
    runtime: Path | None = None  # the Runtime API socket; default <directory>/admin.sock
    config: Path | None = None  # default <directory>/haproxy.cfg
    timeout_connect: float = 3.0
    timeout_server: float = 30.0
    timeout_client: float = 60.0
    timeout_request: float = 10.0
    check_interval: float = 1.0
    maxconn: int = 4096  # HAProxy needs about two file descriptors per connection, within the process's limit
    threads: int = 0  # nbthread; 0: HAProxy's default (one per CPU it may run on)
    # shared rate limits: every instance's (peer name, HOST:PORT), and this instance's name among them; empty: each
    # instance counts alone (per-instance rate limits, the default)
    peers: tuple[tuple[str, str], ...] = ()
    local_peer: str = ""
    # microseconds added to HAProxy's clock for the token buckets' ticks: moves the point where the 32-bit tick count
    # wraps (every 11.9 h), so a test can make it wrap mid-sequence; 0 otherwise
    tick_offset_us: int = 0

    def __post_init__(self) -> None:
        if self.log_transport not in LOG_TRANSPORTS:
            raise ValueError(f"log transport '{self.log_transport}' is not one of {', '.join(LOG_TRANSPORTS)}")
        if not RING_MIN <= self.ring_size <= RING_MAX:
            raise ValueError(f"ring size {self.ring_size} is not between {RING_MIN} and {RING_MAX} bytes")
        if self.peers and self.local_peer not in {name for name, _ in self.peers}:
            raise ValueError(f"local peer '{self.local_peer}' is not one of the peers {[n for n, _ in self.peers]}")

    @property
    def socket(self) -> Path:
        return self.runtime or self.directory / "admin.sock"

    @property
    def config_path(self) -> Path:
        return self.config or self.directory / "haproxy.cfg"

    def map_path(self, name: str) -> Path:
        return self.directory / name


@dataclass
class Rendered:
    """A configuration and its maps (file name -> key -> value), as the snapshot says."""

    config: str
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    version: int = 0


def backend_name(service: str, pool: str) -> str:
    """Service and pool names are slugs (no dot), so the backend `service.pool` splits back at its last dot."""
    return f"{service}.{pool}"


def _value(text: str) -> str:
    """A map value HAProxy reads as one word: visible ASCII, anything else percent-encoded."""
    return text if _SAFE_VALUE.match(text) else "".join(
        c if "\x21" <= c <= "\x7e" and c != "%" else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def decode_value(text: str) -> str:
    """The inverse of `_value`, for what the collector reads back."""
    return unquote(text) if "%" in text else text


def _route_regex(base: bytes) -> str:
    path = base.decode().rstrip("/")
    if not path:
        return "^/"
    return "^" + re.escape(path) + "(/|$)"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _error(status: int, code: str, message: str, extra: str = "") -> str:
    body = json.dumps({"error": {"code": code, "message": message, "fields": {}}})
    return f"http-request return status {status} content-type application/json string '{body}'{extra}"


def _refuse(outcome: str, status: int, code: str, message: str, condition: str, extra: str = "") -> list[str]:
    """HAProxy answering itself: the outcome the collector records, then the answer in the API's error shape."""
    return [f"    http-request set-var(txn.refused) str({outcome}) if {condition}",
            f"    {_error(status, code, message, extra)} if {condition}"]


def identity_maps(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    """The maps that follow the live keys: hash -> account, tier, rank and key id."""
    keys, tiers, ranks, ids = {}, {}, {}, {}
    for digest, identity in sorted(snapshot.credentials.items()):  # one order: files diff cleanly
        keys[digest] = _value(identity.key)
        if identity.tier_name:
            tiers[digest] = _value(identity.tier_name)
        if identity.tier_rank:
            ranks[digest] = str(identity.tier_rank)
        if identity.credential:
            ids[digest] = str(identity.credential)
    return {KEYS: keys, TIERS: tiers, RANKS: ranks, CREDENTIALS: ids}


def action_maps(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    """The active actions per service|account, for every caller the snapshot knows (each account with a live key,
    and `anonymous`): the snapshot's own policy lookup decides, as it does for the Python gateway.

    - pools.map: the backend a route action sends the account to (when not the primary pool);
    - shed.map: the Retry-After of a shed action;
    - rates.map, rates-2.map, rates-3.map: the token bucket of the first, second and third rate-limit action, in
      the gateway's order (`bucket_value`);
    - admission.map: the Retry-After of an admission action (the caller queues by its tier's rank).

    Keys are `service|account`, and `service|operation|account` for the operations an action is scoped to (the
    complete policy of that operation; opscoped.map says which operations have such keys).
    """
    return _actions(snapshot)[0]


def admission_waits(snapshot: Snapshot) -> dict[str, float]:
    """service -> the longest `max_wait` of the admission actions that apply to any of its callers: the services
    whose servers hold to their pool's capacity (`maxconn`), and their `timeout queue`."""
    return _actions(snapshot)[1]


def _actions(snapshot: Snapshot) -> tuple[dict[str, dict[str, str]], dict[str, float]]:
    out: dict[str, dict[str, str]] = {POOLS: {}, SHED: {}, **{name: {} for name in RATE_MAPS}, ADMISSION: {},
                                      OPSCOPED: {}}
    waits: dict[str, float] = {}
    if not snapshot.actions:
        return out, waits
    # the operations some action is scoped to: their policy can differ from the service's, so they get keys of
    # their own; the policy of any other operation is the service's (the actions that name no operation)
    scoped = {name for action in snapshot.actions for name in (action.operations or ())}
    callers: dict[str, Identity] = {ANONYMOUS.key: ANONYMOUS}
    for identity in snapshot.credentials.values():
        callers.setdefault(identity.key, identity)
    for route in snapshot.routes:
        operations = sorted({op.name for op in route.operations} & scoped)
        if operations:
            out[OPSCOPED][route.name] = "1"
            out[OPSCOPED].update({f"{route.name}|{op}": "1" for op in operations})
        for (account, identity), operation in itertools.product(sorted(callers.items()), ["", *operations]):
            policy = snapshot.policy(identity, route.name, operation)
            key = f"{route.name}|{operation + '|' if operation else ''}{_value(account)}"
            target = route.pools.get(policy.pool) if policy.pool else None
            if target is not None and target.endpoints and target is not route.primary:
                out[POOLS][key] = backend_name(route.name, policy.pool)
            if policy.shed is not None:
                out[SHED][key] = str(max(1, policy.shed.retry_after))
            for name, rule in zip(RATE_MAPS, policy.rate_limits, strict=False):
                out[name][key] = bucket_value(rule)
            if policy.admission is not None:
                out[ADMISSION][key] = str(max(1, policy.admission.retry_after))
                waits[route.name] = max(waits.get(route.name, 0.0), policy.admission.max_wait)
    return out, waits


def bucket_value(rule: ActionRule) -> str:
    """A rate-limit action's token bucket as HAProxy reads it: `bucket:interval:tolerance`. The bucket is named by
    the action's name, rate and burst (a digest: any name fits the stick table's key), so a bucket whose rate or
    burst changes starts anew, full, as the gateway's does; interval (1/rps) and tolerance (burst/rps, burst at
    least 1) are in ticks of 10 µs."""
    burst = max(1.0, rule.burst)
    digest = hashlib.sha256(f"{rule.name}\0{rule.rps!r}\0{burst!r}".encode()).hexdigest()[:16]
    interval = max(1, round(TICKS_PER_SECOND / rule.rps))
    tolerance = min(MAX_TOLERANCE, max(interval, round(burst * TICKS_PER_SECOND / rule.rps)))
    return f"{digest}:{interval}:{tolerance}"


def too_many_rate_limits(snapshot: Snapshot) -> list[str]:
    """`service|account` (or `service|operation|account`) keys more than three rate-limit actions apply to: HAProxy
    enforces the first three."""
    out = []
    for route in snapshot.routes:
        for identity, operation in itertools.product([ANONYMOUS, *snapshot.credentials.values()],
                                                     ["", *sorted({op.name for op in route.operations})]):
            if len(snapshot.policy(identity, route.name, operation).rate_limits) > len(RATE_MAPS):
                out.append(f"{route.name}|{operation + '|' if operation else ''}{identity.key}")
    return sorted(set(out))


def render(snapshot: Snapshot, options: Options) -> Rendered:
    """The configuration text and every map's entries for a snapshot."""
    maps: dict[str, dict[str, str]] = {name: {} for name in MAPS}
    backends: list[str] = []
    actions, waits = _actions(snapshot)
    for route in snapshot.routes:  # longest base path first: the regex map is tried in file order
        maps[ROUTES][_route_regex(route.base_path)] = route.name
        if route.allow_anonymous:
            maps[ANONYMOUS_OK][route.name] = "1"
        if route.forward_credentials:
            maps[FORWARD][route.name] = "1"
        if route.primary is not None and route.primary.endpoints:
            maps[BACKENDS][route.name] = backend_name(route.name, route.primary.name)
        for op in route.operations:  # most specific first, as the gateway tries them
            method = "[A-Z]+" if op.method == b"*" else re.escape(op.method.decode())
            maps[OPERATIONS][f"^{re.escape(route.name)}\\|{method}\\|{op.regex.pattern.decode()[1:]}"] = op.name
        standby = [p for p in route.pools.values() if p is not route.primary and p.endpoints]
        for pool in route.pools.values():
            if not pool.endpoints:
                continue
            # admission: the servers hold to the pool's capacity while an admission action applies to the service
            # (maxconn 0, no limit, otherwise: the gateway does not hold calls without one); the rest wait in the
            # queue by priority class, up to the action's max_wait, then get a 503 (HAProxy's own, reshaped here)
            admitting = route.name in waits
            wait = waits.get(route.name, DEFAULT_MAX_WAIT)
            lines = [f"backend {backend_name(route.name, pool.name)}", "    balance roundrobin",
                     "    option forwardfor", "    http-request set-header X-Forwarded-Proto http",
                     f"    timeout queue {_ms(wait)}",
                     f"    {_QUEUE_TIMEOUT}"]
            lines += _servers(pool, pool.capacity if admitting else 0, "", options)
            servers = [m[0] for m in pool.members] or list(pool.endpoints)
            if pool is route.primary:  # the standby pools take over when every primary endpoint is down
                for other in standby:
                    lines += _servers(other, other.capacity if admitting else 0, " backup", options)
                    servers += [m[0] for m in other.members] or list(other.endpoints)
            # Host as the gateway sends it (the endpoint's host, and port unless the scheme's default), when every
            # server of the backend has the same one (HAProxy sets headers before it picks a server; disabled servers
            # count too, so enabling one changes no header, which would be a reload)
            hosts = {u.host_header.decode(errors="replace") for u in servers}
            if len(hosts) == 1 and _HOST.match(host := hosts.pop()):
                lines.insert(4, f"    http-request set-header Host {host}")
            backends.append("\n".join(lines))
    maps.update(identity_maps(snapshot))
    maps.update(actions)
    return Rendered(_config(options, backends), maps, snapshot.version)


def shares(capacity: int, weights: list[int]) -> list[int]:
    """A pool's capacity split over its servers by weight (largest remainders), at least 1 each; 0 stays 0 (no
    limit)."""
    if capacity <= 0 or not weights:
        return [0] * len(weights)
    total = sum(weights)
    exact = [capacity * w / total for w in weights]
    out = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - out[i], reverse=True)[: capacity - sum(out)]:
        out[i] += 1
    return [max(1, n) for n in out]


def _servers(pool: PoolTarget, capacity: int, extra: str, options: Options) -> list[str]:
    """One server per distinct endpoint, in catalog order, its weight the endpoint's (weighted round robin), its
    maxconn its share of the pool's capacity among the enabled ones (0: no limit). A disabled endpoint is a server
    too, `disabled` (in maintenance): enabling it is `set server ... state ready`, not a reload."""
    members = pool.members or tuple((u, w, True) for u, w in Counter(pool.endpoints).items())
    enabled = [m for m in members if m[2]]
    limits = dict(zip([m[0] for m in enabled], shares(capacity, [m[1] for m in enabled]), strict=True))
    lines = []
    for n, (upstream, weight, on) in enumerate(members, start=1):
        limit = limits.get(upstream, 1 if capacity > 0 else 0)
        lines.append(f"    server {pool.name}.{n} {upstream.address} weight {weight} maxconn {limit} "
                     f"check inter {_ms(options.check_interval)} fall 2 rise 1{extra}{'' if on else ' disabled'}")
    return lines


# HAProxy's own 503 in a backend: the queue's timeout (termination state sQ) or no server up; the API's error shape,
# and the admission action's Retry-After (1 without one)
_QUEUE_TIMEOUT = ("http-error status 503 content-type application/json string "
                  + "'" + json.dumps({"error": {"code": "service_unavailable",
                                                "message": "The service is at capacity or unavailable; retry later.", "fields": {}}})
                  + "' hdr Retry-After %[var(txn.admit,1)]")


# after HAProxy's normalisation (upper-cased encodings), a `.` or `..` segment still there, its separators plain or
# encoded slashes or backslashes
_HIDDEN_DOT_SEGMENT = "(^|/|%2F|%5C)[.][.]?(/|%2F|%5C|$)"  # [.]: a backslash is an escape in the file


def _ring(options: Options) -> list[str]:
    """The ring the request lines go through with the `ring` transport: HAProxy's forwarder reads it and sends each
    line to the collector over one TCP connection, octet-counted (RFC 6587: `LEN SP MSG`). While the collector is
    connected and reads slowly, a full ring drops new lines and later says how many ("N events dropped"), which the
    collector counts; `timeout server` is how long a line may wait in the socket's output buffer."""
    if options.log_transport != "ring":
        return []
    return [
        f"ring {RING}",
        '    description "request log lines for accord collector"',
        "    format rfc3164",
        f"    maxlen {LOG_LEN}",
        f"    size {options.ring_size}",
        f"    timeout connect {_ms(options.timeout_connect)}",
        f"    timeout server {_ms(options.timeout_server)}",
        f"    server collector {options.collector} log-proto octet-count",
        "",
    ]


def _config(options: Options, backends: list[str]) -> str:
    m = {name: options.map_path(name) for name in MAPS}
    key_unknown = _error(401, "unauthorized", "A valid API key is required (Authorization: Bearer <key>).")
    lines = [
        "# Rendered by `accord haproxy render` from the gateway's snapshot: do not edit by hand.",
        "# API keys appear only as SHA-256 hashes, in the map files; maps change at run time through the",
        "# Runtime API socket below, services and endpoints by a new render and a reload.",
        "global",
        f"    stats socket {options.socket} mode 600 level admin",
        "    stats timeout 30s",
        f"    maxconn {options.maxconn}",
        "    expose-experimental-directives",  # `http-request normalize-uri` is experimental in HAProxy 2.6
        *([f"    nbthread {options.threads}"] if options.threads > 0 else []),
        *([f"    localpeer {options.local_peer}"] if options.peers else []),
        "    hard-stop-after 30s",
        "",
        # shared rate limits: each instance pushes its updates of the rate table to the others, which take them over
        *([f"peers {PEERS}", *[f"    peer {name} {address}" for name, address in options.peers], ""]
          if options.peers else []),
        *_ring(options),
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        f"    timeout connect {_ms(options.timeout_connect)}",
        f"    timeout client {_ms(options.timeout_client)}",
        f"    timeout server {_ms(options.timeout_server)}",
        f"    timeout http-request {_ms(options.timeout_request)}",
        f"    timeout http-keep-alive {_ms(options.timeout_client)}",
        "",
        f"frontend {FRONTEND}",
        f"    bind {options.listen}",
        # every request's line goes to the collector, through the ring (TCP) or over UDP; HAProxy's own events stay
        # on its stderr
        f"    log ring@{RING} len {LOG_LEN} local0 info" if options.log_transport == "ring" else
        f"    log {options.collector} len {LOG_LEN} format rfc3164 local0 info",
        f'    log-format "{LOG_FORMAT}"',
        "    unique-id-format %{+X}o%pid-%rt",
        # X-Request-Id as the gateway does it: the client's first one if valid, else HAProxy's own; exactly one goes
        # upstream, and the client gets it back (also on HAProxy's own answers)
        "    acl request_id_valid req.hdr(x-request-id,1) -m reg ^[A-Za-z0-9._:-]+$",
        "    acl request_id_short req.hdr(x-request-id,1),length le 128",
        "    http-request set-var(txn.request_id) req.hdr(x-request-id,1) if request_id_valid request_id_short",
        "    http-request set-var(txn.request_id) unique-id if !{ var(txn.request_id) -m found }",
        "    http-request set-header X-Request-Id %[var(txn.request_id)]",
        "    http-after-response set-header X-Request-Id %[var(txn.request_id)]",
        # a client never speaks for Accord: its own X-Accord-* headers go before anything reads them
        "    http-request del-header ^x-accord- -m reg",
        # the path as the gateway normalises it (docs/gateway.md), before anything routes on it, and forwarded so:
        # unreserved %-encodings decoded (other encodings upper-cased, %2F stays), then dot-segments removed
        # (HAProxy's percent rules take the query too: it is put back as it came)
        "    http-request set-var(txn.query) query",
        "    http-request normalize-uri percent-decode-unreserved",
        "    http-request normalize-uri percent-to-uppercase",
        "    http-request normalize-uri path-strip-dot",
        "    http-request normalize-uri path-strip-dotdot",
        "    http-request set-query %[var(txn.query)] if { var(txn.query) -m found }",
        # a dot-segment left after that climbs above the root (`/..`), or hides behind an encoded slash or backslash
        # (`/a/..%2F..`, which an upstream may decode and resolve): 400, as the gateway answers
        f"    acl hidden_dot_segment path -m reg {_HIDDEN_DOT_SEGMENT}",
        *_refuse("bad_request", 400, "bad_request", "The path climbs above the root or hides a dot-segment.",
                 "hidden_dot_segment"),
        "    http-request set-var(txn.key) req.fhdr(x-api-key)",  # fhdr: the whole value, never split at commas
        "    http-request set-var(txn.key) req.fhdr(authorization),regsub(^[Bb][Ee][Aa][Rr][Ee][Rr]\\ +,) "
        "if { req.fhdr(authorization) -m reg -i ^bearer\\ + }",
        "    http-request set-var(txn.hash) var(txn.key),sha2(256),hex,lower if { var(txn.key) -m found }",
        f"    http-request set-var(txn.service) path,map_reg({m[ROUTES]})",
        *_refuse("not_found", 404, "not_found", "No service is routed at this path.", "!{ var(txn.service) -m found }"),
        f"    http-request set-var(txn.account) var(txn.hash),map({m[KEYS]}) if {{ var(txn.hash) -m found }}",
        f"    http-request set-var(txn.tier) var(txn.hash),map({m[TIERS]}) if {{ var(txn.hash) -m found }}",
        f"    http-request set-var(txn.rank) var(txn.hash),map({m[RANKS]}) if {{ var(txn.hash) -m found }}",
        f"    http-request set-var(txn.credential) var(txn.hash),map({m[CREDENTIALS]}) if {{ var(txn.hash) -m found }}",
        # no key at all: `anonymous` where the service allows it; a key that is unknown or revoked: 401
        "    http-request set-var(txn.account) str(anonymous) if !{ var(txn.key) -m found } "
        f"{{ var(txn.service),map({m[ANONYMOUS_OK]}) -m found }}",
        "    http-request set-var(txn.refused) str(unauthorized) if !{ var(txn.account) -m found }",
        f"    {key_unknown} if !{{ var(txn.account) -m found }}",
        f"    http-request set-var(txn.backend) var(txn.service),map({m[BACKENDS]})",
        "    http-request set-var(txn.route) var(txn.service),concat(|,txn.account,)",
        # operations: named only on a service an operation-scoped action applies to (opscoped.map), as the gateway
        # names them (method and path, most specific first); an operation with a policy of its own takes its keys
        f"    acl opscoped var(txn.service),map({m[OPSCOPED]}) -m found",
        "    http-request set-var(txn.method) method if opscoped",
        "    http-request set-var(txn.path) path if opscoped",
        "    http-request set-var(txn.opcall) var(txn.service),concat(|,txn.method,|),concat(,txn.path,) if opscoped",
        f"    http-request set-var(txn.operation) var(txn.opcall),map_reg({m[OPERATIONS]}) if opscoped",
        "    http-request set-var(txn.opservice) var(txn.service),concat(|,txn.operation,) "
        "if { var(txn.operation) -m found }",
        "    http-request set-var(txn.route) var(txn.opservice),concat(|,txn.account,) "
        f"if {{ var(txn.opservice),map({m[OPSCOPED]}) -m found }}",
        # shed, then rate limits, then the pool: the gateway's order
        f"    http-request set-var(txn.shed) var(txn.route),map({m[SHED]})",
        *_refuse("shed", 503, "service_unavailable", "The service is shedding load; retry later.",
                 "{ var(txn.shed) -m found }", " hdr Retry-After %[var(txn.shed)]"),
        *_token_buckets(m, options.tick_offset_us),
        # admission: the caller waits for a server by its tier's rank (class 1 first; no tier last); callers no
        # admission action applies to keep class 0, ahead of all of them, as the gateway lets them by its gate
        f"    http-request set-var(txn.admit) var(txn.route),map({m[ADMISSION]})",
        "    http-request set-priority-class var(txn.rank) if { var(txn.admit) -m found } { var(txn.rank) -m found }",
        f"    http-request set-priority-class int({LOWEST_CLASS}) if {{ var(txn.admit) -m found }} "
        "!{ var(txn.rank) -m found }",
        f"    http-request set-var(txn.backend) var(txn.route),map({m[POOLS]}) "
        f"if {{ var(txn.route),map({m[POOLS]}) -m found }}",
        *_refuse("no_endpoint", 503, "service_unavailable", "The service has no available endpoint.",
                 "!{ var(txn.backend) -m found }"),
        # the caller's key is Accord's credential: stripped unless the service asks for it
        f"    acl forward var(txn.service),map({m[FORWARD]}) -m found",
        "    http-request del-header x-api-key if !forward",
        "    http-request del-header authorization if !forward { req.fhdr(authorization) -m reg -i ^bearer\\ + }",
        "    http-request set-header X-Accord-Account %[var(txn.account)]",
        "    http-request set-header X-Accord-Tier %[var(txn.tier)]",
        "    use_backend %[var(txn.backend)]",
        "",
        # the theoretical arrival time of each bucket|account a rate-limit action applies to (per instance, or shared
        # with the peers)
        f"backend {RATE_TABLE}",
        f"    stick-table type string len 200 size 1m expire {RATE_EXPIRE}s store gpt0"
        + (f" peers {PEERS}" if options.peers else ""),
        "",
        *[b + "\n" for b in backends],
    ]
    return "\n".join(lines) + "\n"


def _token_buckets(m: dict[str, Path], offset_us: int) -> list[str]:
    """The rate-limit actions as token buckets, GCRA: a request is let through when max(TAT, now) + interval - now
    <= tolerance, and then TAT := max(TAT, now) + interval; a refused request leaves TAT alone (it takes no token)
    and gets Retry-After = the seconds until a token is there, rounded up, as from the gateway. One stick counter
    per action that applies (sc0 for the first, ...), each checked and taken in turn, as the gateway takes them."""
    mask, half = 2**32 - 1, 2**31
    lines = [f"    http-request set-var(txn.rl_now) date({offset_us},us),div({1_000_000 // TICKS_PER_SECOND}),"
             f"and({mask}) "
             f"if {{ var(txn.route),map({m[RATES]}) -m found }}"]
    for sc, name in enumerate(RATE_MAPS):
        v, found = f"txn.rl{sc}", f"{{ var(txn.rl{sc}) -m found }}"
        lines += [
            f"    http-request set-var({v}) var(txn.route),map({m[name]})",
            f"    http-request set-var(txn.rl_key) var({v}),field(1,:),concat(|,txn.account,) if {found}",
            f"    http-request track-sc{sc} var(txn.rl_key) table {RATE_TABLE} if {found}",
            f"    http-request set-var(txn.rl_interval) var({v}),field(2,:) if {found}",
            f"    http-request set-var(txn.rl_tolerance) var({v}),field(3,:) if {found}",
            f"    http-request set-var(txn.rl_tat) sc_get_gpt0({sc}) if {found}",
            # how far the TAT is ahead of now: the difference modulo 2**32, read as signed; behind, or a new entry
            # (gpt0 0), is not ahead at all
            f"    http-request set-var(txn.rl_ahead) var(txn.rl_tat),sub(txn.rl_now),add({half}),and({mask}),"
            f"sub({half}) if {found}",
            f"    http-request set-var(txn.rl_ahead) int(0) if {found} {{ var(txn.rl_ahead) -m int lt 0 }}",
            f"    http-request set-var(txn.rl_ahead) int(0) if {found} {{ var(txn.rl_tat) -m int eq 0 }}",
            f"    http-request set-var(txn.rl_over) var(txn.rl_ahead),add(txn.rl_interval),sub(txn.rl_tolerance) "
            f"if {found}",
            f"    http-request set-var(txn.rl_retry) var(txn.rl_over),add({TICKS_PER_SECOND - 1}),"
            f"div({TICKS_PER_SECOND}) if {found}",
            *_refuse("rate_limited", 429, "throttled", "Too many requests; slow down.",
                     f"{found} {{ var(txn.rl_over) -m int gt 0 }}", " hdr Retry-After %[var(txn.rl_retry)]"),
            f"    http-request sc-set-gpt0({sc}) var(txn.rl_now),add(txn.rl_ahead),add(txn.rl_interval),and({mask}) "
            f"if {found}",
        ]
    return lines


def map_text(entries: dict[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries.items())


def write_atomic(path: Path, text: str) -> None:
    """Replace a file in one rename, so HAProxy (or a reader) never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write(rendered: Rendered, options: Options) -> list[Path]:
    """Write the maps, then the configuration; returns the paths written."""
    written = []
    for name, entries in rendered.maps.items():
        path = options.map_path(name)
        write_atomic(path, map_text(entries))
        written.append(path)
    write_atomic(options.config_path, rendered.config)
    written.append(options.config_path)
    return written
