"""A port to give a server that cannot be told to listen on port 0 (HAProxy, aiosmtpd, a child process).

The port is chosen below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`) and checked free by
binding it. A port from the ephemeral range (what binding port 0 hands out) can be taken, between the check and
the server's own bind, as the local end of any outgoing connection on the machine: with test suites running side
by side, each making thousands of loopback connections, HAProxy once failed to start with "Address already in
use". Below that range the kernel never hands a port out by itself, so only another explicit bind can take it.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # above the well-known and the usual registered service ports (PostgreSQL, Redis, AMQP, ...)


def _ephemeral_start() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


BOTH = -1  # `kind` for a port free for TCP and for UDP at once (`accord collector` listens on both)


def _free(host: str, port: int, kinds: tuple[int, ...]) -> bool:
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            s = stack.enter_context(socket.socket(socket.AF_INET, kind))
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1", *, kind: int = socket.SOCK_STREAM) -> int:
    """A port on `host` that was free a moment ago, outside the ephemeral range when there is room below it; `kind`
    SOCK_STREAM (TCP), SOCK_DGRAM (UDP) or BOTH."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if kind == BOTH else (kind,)
    top = _ephemeral_start()
    if top - _LOWEST >= 1000:
        for port in random.sample(range(_LOWEST, top), 50):
            if _free(host, port, kinds):
                return port
    for _ in range(50):  # no room below the range (or all 50 tries taken): any port the kernel hands out
        with socket.socket(socket.AF_INET, kinds[0]) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if _free(host, port, kinds):
            return port
    raise OSError(f"no port free for {len(kinds)} protocol(s) on {host}")
