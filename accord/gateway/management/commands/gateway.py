"""`accord gateway --listen HOST:PORT [--workers N] [--admin HOST:PORT]`: the customer-aware HTTP gateway."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.gateway import dataplane
from accord.gateway.exposition import MAX_SERIES
from accord.gateway.flusher import BUFFER_KEYS
from accord.gateway.limits import Limits
from accord.gateway.server import Supervisor, WorkerConfig


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"'{text}' is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def _check_bindable(host: str, port: int, what: str) -> None:
    """Fail before forking when the address cannot be listened on (taken, or not an address of this host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise CommandError(f"cannot listen on {host}:{port} ({what}): {e.strerror or e}") from e


class Command(BaseCommand):
    help = "Run the customer-aware HTTP gateway in front of the catalog's services."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
        parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
        parser.add_argument("--admin", default="", help="HOST:PORT for /healthz, /readyz and /metrics")
        parser.add_argument("--poll", type=float, default=0.25, help="seconds between snapshot version checks")
        parser.add_argument("--reload", type=float, default=10.0,
                            help="seconds between full snapshot reloads (catches bulk writes that send no signal)")
        parser.add_argument("--flush", type=float, default=2.0, help="seconds between writes of measurements")
        parser.add_argument("--buffer-keys", type=int, default=BUFFER_KEYS,
                            help="rollup keys a worker keeps in memory while the database is away; beyond, the "
                                 "oldest are dropped and counted (accord_gateway_dropped_total)")
        parser.add_argument("--metrics-series", type=int, default=MAX_SERIES,
                            help="per-account label sets a worker keeps for /metrics; requests beyond are counted in "
                                 "accord_gateway_account_series_dropped_requests_total")
        parser.add_argument("--live", type=float, default=1.0,
                            help="seconds between writes of live signals for governance (0: off)")
        parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish requests on SIGTERM")
        parser.add_argument("--max-body", type=int, default=Limits.max_body_bytes, help="largest request body (bytes)")
        parser.add_argument("--header-timeout", type=float, default=Limits.header_timeout,
                            help="seconds a client has to send its request head")
        parser.add_argument("--upstream-timeout", type=float, default=Limits.upstream_timeout,
                            help="seconds an upstream has to answer")
        parser.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout,
                            help="seconds a kept-alive connection may sit idle, and between two reads of a body")
        parser.add_argument("--tunnel-idle-timeout", type=float, default=Limits.tunnel_idle_timeout,
                            help="seconds an open WebSocket may stay silent both ways before it is closed")
        parser.add_argument("--connect-timeout", type=float, default=Limits.connect_timeout,
                            help="seconds to open a connection to an upstream")
        parser.add_argument("--max-header-bytes", type=int, default=Limits.max_header_bytes,
                            help="largest request line and headers (bytes)")
        parser.add_argument("--max-connections", type=int, default=Limits.max_connections,
                            help="open client connections a worker takes")
        parser.add_argument("--max-idle-upstream", type=int, default=Limits.max_idle_upstream,
                            help="idle kept-alive connections a worker keeps per upstream")
        parser.add_argument("--underscores-in-headers", action="store_true",
                            help="forward header names with underscores (dropped by default, as nginx does; "
                                 "X_Accord_* ones always are)")
        parser.add_argument("--no-compile", action="store_true",
                            help="do not compile the data plane at start when its build is missing or stale")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _address(options["listen"])
        admin = _address(options["admin"]) if options["admin"] else None
        workers = options["workers"]
        if not 1 <= workers <= 64:
            raise CommandError("--workers must be between 1 and 64")
        for name in ("poll", "reload", "flush", "grace", "header_timeout", "upstream_timeout", "idle_timeout",
                     "tunnel_idle_timeout", "connect_timeout"):
            if not 0 < options[name] <= 86_400:
                raise CommandError(f"--{name.replace('_', '-')} must be a number of seconds above 0")
        if not 0 <= options["live"] <= 3600:
            raise CommandError("--live must be a number of seconds between 0 (off) and 3600")
        if not 1 <= options["buffer_keys"] <= 100_000_000:
            raise CommandError("--buffer-keys must be between 1 and 100000000")
        if not 0 <= options["metrics_series"] <= 10_000_000:
            raise CommandError("--metrics-series must be between 0 (none) and 10000000")
        if options["max_body"] < 0:
            raise CommandError("--max-body must be 0 or more")
        for name in ("max_header_bytes", "max_connections", "max_idle_upstream"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be 1 or more")
        mode = os.environ.get("ACCORD_DATAPLANE", "auto").strip().lower() or "auto"
        if not options["no_compile"] and mode in ("auto", "compiled"):
            # before anything imports a stale build (one loaded, a process cannot load the new one)
            dataplane.ensure_compiled(self._say)
        try:
            plane = dataplane.choose()  # each worker chooses the same way; a bad ACCORD_DATAPLANE fails here
        except dataplane.DataPlaneError as e:
            raise CommandError(str(e)) from e
        _check_bindable(host, port, "--listen")
        if admin is not None:
            if admin == (host, port):
                raise CommandError("--admin must differ from --listen")
            _check_bindable(*admin, "--admin")
        limits = Limits(max_body_bytes=options["max_body"], header_timeout=options["header_timeout"],
                        upstream_timeout=options["upstream_timeout"], idle_timeout=options["idle_timeout"],
                        connect_timeout=options["connect_timeout"], max_header_bytes=options["max_header_bytes"],
                        max_connections=options["max_connections"], max_idle_upstream=options["max_idle_upstream"],
                        underscores_in_headers=options["underscores_in_headers"],
                        tunnel_idle_timeout=options["tunnel_idle_timeout"])
        config = WorkerConfig(host, port, reuse_port=True, workers=workers, poll=options["poll"],
                              full_reload=options["reload"], grace=options["grace"],
                              flush_interval=options["flush"],
                              buffer_keys=options["buffer_keys"], live_interval=options["live"], limits=limits,
                              metrics_series=options["metrics_series"])
        self.stdout.write(f"gateway listening on {host}:{port} with {workers} worker(s)"
                          + (f", admin on {admin[0]}:{admin[1]}" if admin else "")
                          + f"; data plane: {plane.name} ({plane.reason})")
        self.stdout.flush()
        code = Supervisor(config, workers, admin).run()
        if code:
            sys.exit(code)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
