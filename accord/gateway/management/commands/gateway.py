"""`accord gateway --listen HOST:PORT [--workers N]`: the customer-aware HTTP gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from accord.gateway.proxy import Gateway, Limits, serve
from accord.gateway.snapshot import load_snapshot


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"'{text}' is not HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


async def run_worker(host: str, port: int, reuse_port: bool, reload_seconds: float, grace: float) -> None:
    """One worker: serve, reload the snapshot every `reload_seconds`, stop gracefully on SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    gateway = Gateway(await loop.run_in_executor(None, _fresh_snapshot), Limits())
    server = await serve(gateway, host, port, reuse_port=reuse_port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def reload() -> None:
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), reload_seconds)
            if stopping.is_set():
                return
            try:
                gateway.snapshot = await loop.run_in_executor(None, _fresh_snapshot)
            except Exception as e:  # the database may be restarting: keep serving the last snapshot
                print(f"gateway: snapshot reload failed, keeping the last one: {e}", file=sys.stderr, flush=True)

    reloader = loop.create_task(reload())
    await stopping.wait()
    server.close()  # stop accepting; requests in flight finish
    deadline = time.monotonic() + grace
    while any((c.task is not None and not c.task.done() and not c.queue.empty()) or (c.current is not None and not c.closed)
              for c in gateway.connections) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if all(c.queue.empty() for c in gateway.connections):
            break
    for conn in list(gateway.connections):
        if conn.transport is not None:
            conn.transport.close()
    gateway.pool.close()
    reloader.cancel()


def _fresh_snapshot() -> Any:
    try:
        return load_snapshot()
    finally:
        connections.close_all()


class Command(BaseCommand):
    help = "Run the customer-aware HTTP gateway in front of the catalog's services."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
        parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
        parser.add_argument("--reload", type=float, default=1.0, help="seconds between snapshot reloads")
        parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish requests on SIGTERM")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _address(options["listen"])
        workers = options["workers"]
        if not 1 <= workers <= 64:
            raise CommandError("--workers must be between 1 and 64")
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
            pass
        connections.close_all()  # never share a database connection across fork
        if workers == 1:
            self.stdout.write(f"gateway listening on {host}:{port}")
            self.stdout.flush()
            asyncio.run(run_worker(host, port, False, options["reload"], options["grace"]))
            return
        children = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                try:
                    asyncio.run(run_worker(host, port, True, options["reload"], options["grace"]))
                finally:
                    os._exit(0)
            children.append(pid)
        self.stdout.write(f"gateway listening on {host}:{port} with {workers} workers")
        self.stdout.flush()

        def forward(signum: int, frame: object) -> None:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for child in children:
            os.waitpid(child, 0)
