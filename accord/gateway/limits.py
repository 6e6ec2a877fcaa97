"""What a client may send to the gateway and how long it waits: shared by both builds of the data plane.

Kept out of proxy.py, which may run compiled (see dataplane.py): a compiled dataclass has no class-level
defaults to read, and the command line reads these as its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """What a client may send, and how long the gateway waits."""

    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    connect_timeout: float = 3.0
    upstream_timeout: float = 30.0
    tunnel_idle_timeout: float = 300.0  # a WebSocket silent both ways this long is closed
    max_connections: int = 10_000
    max_idle_upstream: int = 256  # idle kept-alive connections per upstream
    underscores_in_headers: bool = False  # forward header names with underscores (never X_Accord_* ones)
