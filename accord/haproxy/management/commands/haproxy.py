"""`accord haproxy render|run`: HAProxy as Accord's data plane, configured from the gateway's snapshot."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accord.gateway.snapshot import load_snapshot
from accord.haproxy.render import (
    LOG_TRANSPORTS,
    RING_MAX,
    RING_MIN,
    RING_SIZE,
    Options,
    render,
    too_many_rate_limits,
    write,
)
from accord.haproxy.run import HAPROXY, LIVE, POLL, DataPlane, check_config, parse_peers


def _address(text: str, flag: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{flag} '{text}' is not HOST:PORT, e.g. 127.0.0.1:8080")
    return text


def _size(text: str) -> int:
    """Bytes from `8388608`, `8192k`, `32M` or `1G` (powers of 1024); a bad size exits 2."""
    digits, unit = text.strip(), 1
    if digits[-1:].lower() in ("k", "m", "g"):
        unit = 1024 ** ("kmg".index(digits[-1].lower()) + 1)
        digits = digits[:-1]
    if not digits.isdigit():
        raise CommandError(f"--ring-size '{text}' is not a size in bytes, e.g. 32M, 65536k or 33554432", returncode=2)
    size = int(digits) * unit
    if not RING_MIN <= size <= RING_MAX:
        raise CommandError(f"--ring-size '{text}' is {size} bytes: give {RING_MIN} (16k) to {RING_MAX} (1G)",
                           returncode=2)
    return size


def _collector_listens(address: str, seconds: float) -> bool:
    """Whether the collector accepts a TCP connection at `address` within `seconds` (tried every 0.1 s)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _options(options: dict[str, Any]) -> Options:
    output = Path(options["output"]).resolve() if options.get("output") else None
    directory = Path(options["dir"]).resolve() if options.get("dir") else (output.parent if output else
                                                                          settings.VAR_DIR / "haproxy")
    return Options(directory=directory, config=output, listen=_address(options["listen"], "--listen"),
                   collector=_address(options["collector"], "--collector"),
                   log_transport=options["log_transport"], ring_size=_size(options["ring_size"]),
                   runtime=Path(options["runtime"]).resolve() if options.get("runtime") else None,
                   threads=options["threads"])


def _peers(options: dict[str, Any]) -> dict[str, Any]:
    """The DataPlane's peers arguments from --rates, --peer-ports, --peers and --peer-name; bad input exits 2."""
    rates, ports, peers, names, instances = (options["rates"], options["peer_ports"], options["peers"],
                                             options["peer_name"], options["instances"])
    if rates == "instance":
        if ports or peers or names:
            raise CommandError("--peer-ports, --peers and --peer-name are for --rates shared", returncode=2)
        return {}
    if ports and (peers or names):
        raise CommandError("give --peer-ports (instances on this host) or --peers and --peer-name, not both",
                           returncode=2)
    if peers or names:
        if not peers:
            raise CommandError("--peer-name needs --peers NAME=HOST:PORT,... (every instance that shares the limits)",
                               returncode=2)
        try:
            listed, local = parse_peers(peers, names)
        except ValueError as e:
            raise CommandError(str(e), returncode=2) from e
        if len(local) != instances:
            raise CommandError(f"--peer-name names {len(local)} instance(s) for --instances {instances}: give one "
                               "name per instance", returncode=2)
        return {"peers": listed, "local_peers": local}
    parts = [p.strip() for p in ports.split(",") if p.strip()]
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
        raise CommandError(f"--peer-ports '{ports}' is not a list of ports, e.g. 10001,10002", returncode=2)
    if len(parts) != instances or len(set(parts)) != len(parts):
        raise CommandError(f"--rates shared needs --peer-ports with {instances} different port(s), one per instance, "
                           "or --peers and --peer-name", returncode=2)
    return {"peer_ports": tuple(int(p) for p in parts)}


class Command(BaseCommand):
    help = ("Render HAProxy's configuration from the gateway's snapshot (render), or run HAProxy with it and push "
            "key and action changes through its Runtime API (run).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True)
        for name, text in (("render", "write haproxy.cfg and its map files"),
                           ("run", "start HAProxy and keep it in step with the snapshot, without reloads for keys "
                                   "and actions")):
            p = sub.add_parser(name, help=text)
            p.add_argument("--dir", help="directory of the map files (and the configuration); default "
                                         "$ACCORD_VAR_DIR/haproxy, or the directory of --output")
            p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT HAProxy listens on")
            p.add_argument("--collector", default="127.0.0.1:5140",
                           help="HOST:PORT of `accord collector`, where each request's log line goes")
            p.add_argument("--log-transport", choices=LOG_TRANSPORTS, default="ring",
                           help="ring (default): each line into a memory ring that HAProxy forwards to the collector "
                                "over TCP (octet-counted); lines the ring drops are counted by the collector. udp: "
                                "one syslog datagram a line (the kernel may drop them when the collector falls behind)")
            p.add_argument("--ring-size", default=f"{RING_SIZE // (1024 * 1024)}M",
                           help="with --log-transport ring: the ring's size per HAProxy worker, bytes or with k/M/G "
                                f"(default {RING_SIZE // (1024 * 1024)}M, about 4 s of one instance's peak)")
            p.add_argument("--runtime", help="the Runtime API socket (default DIR/admin.sock)")
            p.add_argument("--threads", type=int, default=0,
                           help="HAProxy's threads per instance (nbthread; default: one per CPU)")
            if name == "render":
                p.add_argument("--output", help="the configuration file (default DIR/haproxy.cfg)")
                p.add_argument("--check", action="store_true", help="then run `haproxy -c` on it")
            else:
                p.add_argument("--instances", type=int, default=1,
                               help="HAProxy instances sharing the port (SO_REUSEPORT), each with its own socket")
                p.add_argument("--poll", type=float, default=POLL, help="seconds between snapshot version checks")
                p.add_argument("--reload", type=float, default=10.0, help="seconds between full snapshot reloads")
                p.add_argument("--grace", type=float, default=30.0, help="seconds to finish requests on SIGTERM")
                p.add_argument("--rates", choices=("instance", "shared"), default="instance",
                               help="rate limits counted by each instance alone (default), or shared between the "
                                    "instances through HAProxy peers (needs --peer-ports, or --peers and "
                                    "--peer-name)")
                p.add_argument("--peer-ports", default="",
                               help="with --rates shared: PORT,PORT,... one per instance, where each instance's "
                                    "peers connection listens (on the --listen host)")
                p.add_argument("--peers", default="",
                               help="with --rates shared, instances on several hosts: NAME=HOST:PORT,... every "
                                    "instance of every host that shares the limits, where its peers connection "
                                    "listens (the same list on every host)")
                p.add_argument("--peer-name", default="",
                               help="with --peers: NAME[,NAME...] this runner's instance(s) among them, one per "
                                    "instance")
                p.add_argument("--wait-collector", type=float, default=10.0,
                               help="with --log-transport ring: seconds to wait for the collector to accept TCP "
                                    "connections before starting HAProxy (HAProxy 2.6's ring forwarder can stay "
                                    "stuck after a refused first connection); 0: do not wait")
                p.add_argument("--live", type=float, default=LIVE,
                               help="seconds between writes of the pools' live signals (in flight, busy time, "
                                    "queued: governance's pool utilisation); 0: none")

    def handle(self, *args: Any, **options: Any) -> None:
        opts = _options(options)
        if options["command"] == "render":
            snapshot = load_snapshot()
            rendered = render(snapshot, opts)
            written = write(rendered, opts)
            self.stdout.write(f"wrote {opts.config_path} and {len(written) - 1} map files in {opts.directory} "
                              f"(snapshot {rendered.version}, {len(rendered.maps['keys.map'])} live keys, hashed)")
            overflow = too_many_rate_limits(snapshot)
            if overflow:
                self.stderr.write(f"more than three rate-limit actions apply to {', '.join(overflow)}: HAProxy "
                                  "enforces the first three of each (one stick counter each)")
            if options["check"]:
                ok, said = check_config(opts.config_path)
                self.stdout.write(said)
                if not ok:
                    raise CommandError(f"HAProxy refuses {opts.config_path}")
            return
        if options["instances"] < 1:
            raise CommandError("--instances must be at least 1")
        if options["live"] < 0:
            raise CommandError("--live must be 0 (no live signals) or more seconds")
        if opts.runtime and options["instances"] > 1:
            raise CommandError("--runtime names one socket; with --instances N each instance gets DIR/admin-I.sock")
        if options["wait_collector"] < 0:
            raise CommandError("--wait-collector must be 0 (do not wait) or more seconds", returncode=2)
        plane = DataPlane(opts, options["instances"], HAPROXY, options["poll"], options["reload"],
                          live=options["live"], **_peers(options))
        if opts.log_transport == "ring" and options["wait_collector"] > 0 and not _collector_listens(
                opts.collector, options["wait_collector"]):
            print(f"haproxy: the collector at {opts.collector} does not accept TCP connections after "
                  f"{options['wait_collector']:g} s; starting anyway (the ring keeps the newest lines until HAProxy "
                  "connects)", file=sys.stderr, flush=True)
        stopping = threading.Event()  # set before the start: a SIGTERM during it still stops what started
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        try:
            plane.start()
        except RuntimeError as e:
            plane.stop(grace=5)
            raise CommandError(str(e)) from e
        pids = ", ".join(str(i.process.pid) for i in plane.running if i.process)
        print(f"haproxy: {options['instances']} instance(s) on {opts.listen} (masters {pids}), logging to "
              f"{opts.collector} ({opts.log_transport}), snapshot {plane.rendered.version if plane.rendered else 0}", file=sys.stderr,
              flush=True)
        failed = ""
        try:
            plane.watch(stopping)
        except RuntimeError as e:
            failed = str(e)
        plane.stop(options["grace"])
        print(f"haproxy: stopped ({plane.runtime_changes} map changes through the Runtime API, {plane.reloads} "
              f"reloads)", file=sys.stderr, flush=True)
        if failed:
            raise CommandError(failed)
