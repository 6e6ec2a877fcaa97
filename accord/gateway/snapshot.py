"""The gateway's view of the database: routes, credentials and tiers, read once into plain objects.

The proxy never touches the ORM per request: it looks things up in an immutable Snapshot, and a new snapshot
replaces the old one in a single assignment when the data changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from accord.catalog.models import ApiCredential, Service


@dataclass(frozen=True)
class Upstream:
    """One endpoint: where to connect and what to send as Host."""

    host: str
    port: int
    host_header: bytes


@dataclass
class PoolTarget:
    """A pool's enabled endpoints, expanded by weight for round robin."""

    name: str
    role: str
    capacity: int
    endpoints: tuple[Upstream, ...]
    _cycle: itertools.cycle[Upstream] | None = field(default=None, repr=False)

    def order(self) -> list[Upstream]:
        """Endpoints to try, starting at the next one in weighted round robin, each distinct one once."""
        if not self.endpoints:
            return []
        if self._cycle is None:
            self._cycle = itertools.cycle(self.endpoints)
        first = next(self._cycle)
        seen = {first}
        out = [first]
        for ep in self.endpoints:
            if ep not in seen:
                seen.add(ep)
                out.append(ep)
        return out


@dataclass(frozen=True)
class Route:
    """A service as the gateway routes it."""

    name: str
    base_path: bytes
    allow_anonymous: bool
    pools: dict[str, PoolTarget]
    primary: PoolTarget | None


@dataclass(frozen=True)
class Identity:
    """Who is calling: an account and its tier, or anonymous."""

    account: bytes
    tier: bytes
    tier_rank: int


ANONYMOUS = Identity(b"anonymous", b"", 0)


@dataclass(frozen=True)
class Snapshot:
    """Everything a request needs, by lookup."""

    routes: tuple[Route, ...]  # longest base path first
    credentials: dict[str, Identity]  # sha256 hex of the key -> identity

    def route(self, path: bytes) -> Route | None:
        """The service with the longest base path that prefixes the path (on a segment boundary)."""
        for route in self.routes:
            base = route.base_path
            if path == base or (path.startswith(base) and path[len(base) : len(base) + 1] in (b"/", b"?")):
                return route
            if base == b"/":
                return route
        return None


def _upstream(url: str) -> Upstream:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "127.0.0.1"
    default = (parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443)
    return Upstream(host, port, (host if default else f"{host}:{port}").encode())


def load_snapshot() -> Snapshot:
    """Read routes and live credentials from the database."""
    routes = []
    for svc in Service.objects.prefetch_related("pools__endpoints"):
        pools = {}
        for pool in svc.pools.all():
            endpoints = tuple(
                ep for e in pool.endpoints.all() if e.enabled for ep in [_upstream(e.url)] * max(1, e.weight)
            )
            pools[pool.name] = PoolTarget(pool.name, pool.role, pool.capacity, endpoints)
        primary = next((p for p in pools.values() if p.role == "primary"), None)
        routes.append(Route(svc.name, svc.base_path.encode(), svc.allow_anonymous, pools, primary))
    routes.sort(key=lambda r: len(r.base_path), reverse=True)
    credentials = {}
    for cred in ApiCredential.objects.filter(revoked_at__isnull=True).select_related("account__tier"):
        tier = cred.account.tier
        account = (cred.account.external_id or str(cred.account.pk)).encode()
        credentials[cred.key_hash] = Identity(account, tier.name.encode() if tier else b"", tier.rank if tier else 0)
    return Snapshot(tuple(routes), credentials)
