"""`accord collector --listen HOST:PORT`: HAProxy's request logs (TCP from its ring, or UDP syslog) into the gateway's
rollups."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.gateway.flusher import BUFFER_KEYS
from accord.haproxy.collector import FLUSH, LIVE, run_collector


class Command(BaseCommand):
    help = ("Receive HAProxy's request log lines, over TCP from HAProxy's ring (RFC 6587 octet-counted or newline "
            "frames, any number of connections) and over UDP (syslog datagrams), both on the --listen port, and write "
            "them into the gateway's rollups, sketches and live signals. It counts what it could not use: lines it "
            "could not parse, duplicates, bad TCP frames (that connection is closed), lines HAProxy's ring dropped "
            "(full; HAProxy announces them), datagrams the kernel dropped.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--listen", default="127.0.0.1:5140",
                            help="HOST:PORT to receive log lines on, TCP (ring) and UDP alike")
        parser.add_argument("--flush", type=float, default=FLUSH, help="seconds between writes of the rollups")
        parser.add_argument("--live", type=float, default=LIVE, help="seconds between live signal writes (0: off)")
        parser.add_argument("--report", type=float, default=60.0,
                            help="seconds between counts printed on stderr (received, written, unparsed, dropped)")
        parser.add_argument("--buffer-keys", type=int, default=BUFFER_KEYS,
                            help="rollup keys kept in memory while the database is away; beyond, the oldest are "
                                 "dropped and counted")

    def handle(self, *args: Any, **options: Any) -> None:
        host, _, port = options["listen"].rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise CommandError(f"--listen '{options['listen']}' is not HOST:PORT, e.g. 127.0.0.1:5140", returncode=2)
        try:
            code = asyncio.run(run_collector(host.strip("[]"), int(port), options["flush"], options["live"],
                                             options["report"], options["buffer_keys"]))
        except OSError as e:  # the port taken (for UDP or for TCP), an address not of this host
            raise CommandError(f"cannot listen on {options['listen']}: {e}") from e
        sys.exit(code)
