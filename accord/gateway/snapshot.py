"""The gateway's view of the database: routes, credentials, tiers and active actions, read once into plain objects.

The proxy never touches the ORM per request: it looks things up in an immutable Snapshot, and a new snapshot
replaces the old one in a single assignment when the data changes (`SnapshotVersion` goes up, or an action
expires). Runtime state that must survive a reload (in-flight counts, token buckets) lives in the Gateway.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from accord.catalog.models import ApiCredential, Service

from .models import GatewayAction, SnapshotVersion

_HEADER_UNSAFE = re.compile(rb"[^\x21-\x7e]")
POLICY_CACHE_SIZE = 50_000
OPERATION_CACHE_SIZE = 20_000


def header_value(text: str) -> bytes:
    """A value safe to put in a header line: visible ASCII only, anything else percent-encoded."""
    return _HEADER_UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], text.encode())


@dataclass(frozen=True)
class Upstream:
    """One endpoint: where to connect and what to send as Host."""

    host: str
    port: int
    host_header: bytes
    # The Host line and the blank line that end a request head sent to it, built once.
    host_line: bytes = field(init=False, repr=False, compare=False)
    # "host:port", what kept-alive connections are pooled by: a str caches its hash, where this frozen
    # dataclass's own __hash__ is a Python call (twice a request: take and put back)
    address: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "host_line", b"Host: " + self.host_header + b"\r\n\r\n")
        object.__setattr__(self, "address", f"{self.host}:{self.port}")


@dataclass
class PoolTarget:
    """A pool's enabled endpoints, expanded by weight for round robin."""

    name: str
    role: str
    capacity: int
    endpoints: tuple[Upstream, ...]
    _cycle: itertools.cycle[Upstream] | None = field(default=None, repr=False)
    # every endpoint in catalog order, (upstream, weight, enabled), disabled ones too: HAProxy keeps those as servers
    # in maintenance, so enabling one is a Runtime API command, not a reload (the gateway reads `endpoints`)
    members: tuple[tuple[Upstream, int, bool], ...] = field(default=(), repr=False, compare=False)
    # (gateway, its PoolGate for this pool), set by `Gateway.gate` on first use
    gate: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)

    def order(self) -> Sequence[Upstream]:
        """Endpoints to try, starting at the next one in weighted round robin, each distinct one once."""
        if len(self.endpoints) <= 1:
            return self.endpoints
        if self._cycle is None:
            self._cycle = itertools.cycle(self.endpoints)
        first = next(self._cycle)
        out = [first]
        for ep in self.endpoints:
            if ep not in out:
                out.append(ep)
        return out


@dataclass(frozen=True)
class OperationMatcher:
    """An operation: a method ('*' for any) and a path pattern with {placeholders} for one segment each."""

    name: str
    method: bytes
    regex: re.Pattern[bytes]
    specificity: tuple[int, int]

    @classmethod
    def compile(cls, name: str, method: str, pattern: str) -> OperationMatcher:
        parts = re.split(r"(\{[^{}/]*\})", pattern.rstrip("/") or "/")
        regex = "".join("[^/]+" if p.startswith("{") and p.endswith("}") else re.escape(p) for p in parts)
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        return cls(name, method.encode(), re.compile(f"^{regex}/?$".encode()), (literal, method != "*"))


@dataclass
class Route:
    """A service as the gateway routes it."""

    name: str
    base_path: bytes
    allow_anonymous: bool
    pools: dict[str, PoolTarget]
    primary: PoolTarget | None
    operations: tuple[OperationMatcher, ...] = ()
    forward_credentials: bool = False  # the client's X-Api-Key / Authorization: Bearer go upstream too
    _op_cache: dict[tuple[bytes, bytes], str] = field(default_factory=dict, repr=False)

    def operation(self, method: bytes, path: bytes) -> str:
        """The name of the most specific operation matching the call, or ''."""
        key = (method, path)
        name = self._op_cache.get(key)
        if name is None:
            name = ""
            for op in self.operations:
                if (op.method == method or op.method == b"*") and op.regex.match(path):
                    name = op.name
                    break
            if len(self._op_cache) >= OPERATION_CACHE_SIZE:
                self._op_cache.clear()
            self._op_cache[key] = name
        return name


@dataclass(frozen=True)
class Identity:
    """Who is calling: an account and its tier (rank 1 is the highest), or anonymous.

    What every request of the caller needs is built once, with the snapshot: the account and tier as text (for
    the measurements), the admission priority, and the `X-Accord-Account`/`X-Accord-Tier` lines for the upstream.
    """

    account: bytes
    tier: bytes
    tier_rank: int
    credential: int = 0  # the API key's id, for its usage count (0: anonymous)
    key: str = field(init=False, repr=False, compare=False)
    tier_name: str = field(init=False, repr=False, compare=False)
    priority: int = field(init=False, repr=False, compare=False)  # admission order: lower first, no tier last
    header_lines: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "key", self.account.decode())
        set_(self, "tier_name", self.tier.decode())
        set_(self, "priority", self.tier_rank if self.tier_rank > 0 else 1 << 30)
        set_(self, "header_lines", b"X-Accord-Account: " + self.account + b"\r\nX-Accord-Tier: " + self.tier + b"\r\n")


ANONYMOUS = Identity(b"anonymous", b"", 0)


@dataclass(frozen=True)
class ActionRule:
    """An active GatewayAction as the hot path needs it: scopes as sets (None = any) and typed params."""

    name: str
    kind: str
    tiers: frozenset[str] | None
    accounts: frozenset[str] | None
    services: frozenset[str] | None
    operations: frozenset[str] | None
    pool: str = ""
    rps: float = 0.0
    burst: float = 0.0
    retry_after: int = 1
    max_wait: float = 1.0

    def applies(self, tier: str, account: str, service: str, operation: str) -> bool:
        return (
            (self.tiers is None or tier in self.tiers)
            and (self.accounts is None or account in self.accounts)
            and (self.services is None or service in self.services)
            and (self.operations is None or operation in self.operations)
        )

    @classmethod
    def from_action(cls, action: GatewayAction) -> ActionRule:
        p: dict[str, Any] = action.params if isinstance(action.params, dict) else {}

        def scope(values: Any) -> frozenset[str] | None:
            return frozenset(str(v) for v in values) if isinstance(values, list) and values else None

        rps = float(p.get("rps") or 0.0)
        return cls(
            name=action.name, kind=action.kind, tiers=scope(action.tiers), accounts=scope(action.accounts),
            services=scope(action.services), operations=scope(action.operations), pool=str(p.get("pool") or ""),
            rps=rps, burst=float(p.get("burst") or max(1.0, rps)), retry_after=int(p.get("retry_after") or 1),
            max_wait=float(p.get("max_wait_ms", 1000)) / 1000.0,
        )


@dataclass(frozen=True)
class Policy:
    """What the active actions say about one (account, service, operation): the first match of each kind wins."""

    pool: str = ""
    shed: ActionRule | None = None
    rate_limits: tuple[ActionRule, ...] = ()
    admission: ActionRule | None = None


NO_POLICY = Policy()


@dataclass
class Snapshot:
    """Everything a request needs, by lookup. Treated as immutable once built; caches fill in as it serves."""

    routes: tuple[Route, ...]  # longest base path first
    credentials: dict[str, Identity]  # sha256 hex of the key -> identity
    actions: tuple[ActionRule, ...] = ()
    version: int = 0
    next_expiry: float = math.inf  # epoch seconds when an action runs out: reload then
    _policies: dict[tuple[bytes, str, str], Policy] = field(default_factory=dict, repr=False)

    def route(self, path: bytes) -> Route | None:
        """The service with the longest base path that prefixes the path (on a segment boundary)."""
        for route in self.routes:
            base = route.base_path
            if path == base or (path.startswith(base) and path[len(base) : len(base) + 1] in (b"/", b"?")):
                return route
            if base == b"/":
                return route
        return None

    def policy(self, identity: Identity, service: str, operation: str) -> Policy:
        """The actions that apply to this caller on this operation, cached."""
        if not self.actions:
            return NO_POLICY
        key = (identity.account, service, operation)
        policy = self._policies.get(key)
        if policy is None:
            tier, account = identity.tier.decode(), identity.key
            matching = [a for a in self.actions if a.applies(tier, account, service, operation)]
            policy = Policy(
                pool=next((a.pool for a in matching if a.kind == "route"), ""),
                shed=next((a for a in matching if a.kind == "shed"), None),
                rate_limits=tuple(a for a in matching if a.kind == "rate_limit"),
                admission=next((a for a in matching if a.kind == "admission"), None),
            )
            if len(self._policies) >= POLICY_CACHE_SIZE:
                self._policies.clear()
            self._policies[key] = policy
        return policy


def _upstream(url: str) -> Upstream:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "127.0.0.1"
    default = (parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443)
    return Upstream(host, port, (host if default else f"{host}:{port}").encode())


def current_version() -> int:
    """The snapshot version in the database: one indexed read, cheap enough to poll several times a second."""
    row = SnapshotVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(row or 0)


def account_key(external_id: str | None, pk: int) -> str:
    """How an account is named on the wire and in rollups: its external id, else its id."""
    return external_id or str(pk)


def load_snapshot() -> Snapshot:
    """Read routes, live credentials and live actions from the database."""
    version = current_version()  # read first: the data below is at least this new
    routes = []
    for svc in Service.objects.prefetch_related("pools__endpoints", "operations"):
        pools = {}
        for pool in svc.pools.all():
            endpoints = tuple(
                ep for e in pool.endpoints.all() if e.enabled for ep in [_upstream(e.url)] * max(1, e.weight)
            )
            members = tuple((_upstream(e.url), max(1, e.weight), e.enabled) for e in pool.endpoints.all())
            pools[pool.name] = PoolTarget(pool.name, pool.role, pool.capacity, endpoints, members=members)
        primary = next((p for p in pools.values() if p.role == "primary"), None)
        ops = sorted(
            (OperationMatcher.compile(op.name, op.method, op.path_pattern) for op in svc.operations.all()),
            key=lambda o: o.specificity, reverse=True,
        )
        routes.append(Route(svc.name, svc.base_path.encode(), svc.allow_anonymous, pools, primary, tuple(ops),
                            svc.forward_credentials))
    routes.sort(key=lambda r: len(r.base_path), reverse=True)
    credentials = {}
    for cred in ApiCredential.objects.filter(revoked_at__isnull=True).select_related("account__tier"):
        tier = cred.account.tier
        account = header_value(account_key(cred.account.external_id, cred.account.pk))
        credentials[cred.key_hash] = Identity(account, tier.name.encode() if tier else b"", tier.rank if tier else 0,
                                              cred.pk)
    actions = []
    next_expiry = math.inf
    for action in GatewayAction.live().order_by("priority", "name"):
        actions.append(ActionRule.from_action(action))
        if action.expires_at is not None:
            next_expiry = min(next_expiry, action.expires_at.timestamp())
    return Snapshot(tuple(routes), credentials, tuple(actions), version, next_expiry)
