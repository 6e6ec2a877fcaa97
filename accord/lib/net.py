"""The real client address of a request behind trusted proxies (ACCORD_TRUSTED_PROXIES, CIDRs)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in spec if s.strip())


def trusted_networks() -> tuple[Network, ...]:
    return _networks(tuple(getattr(settings, "ACCORD_TRUSTED_PROXIES", ())))


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(request: Any) -> str:
    """The socket's address, unless it is a trusted proxy: then X-Forwarded-For read right to left, skipping
    trusted proxies; the first address that is not one is the client. A malformed entry stops the walk (the
    address before it, a trusted proxy's view, is used)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    networks = trusted_networks()
    current = _parse(remote)
    if current is None:
        return remote or "unknown"
    if not networks or not any(current in n for n in networks):
        return str(current)
    forwarded = ",".join(request.META.get("HTTP_X_FORWARDED_FOR", "").split(","))
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = _parse(hop)
        if address is None:
            break
        current = address
        if not any(address in n for n in networks):
            break
    return str(current)
