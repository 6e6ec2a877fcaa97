#!/usr/bin/env python3
"""System calls and user/system CPU per request: the gateway's worker beside nginx's `proxy_pass`, same load.

    python bench/gateway_syscalls.py [--seconds 4] [--rounds 2] [--no-strace]

The upstream, the nginx proxy and the database are bench/gateway.py's (its NGINX_CONF, UPSTREAM_SERVER,
PROXY_SERVER and seed_booking()); the gateway runs compiled (ACCORD_DATAPLANE=python for the Python build), one
worker, pinned as `bench/gateway.py --pin` pins it. Per round and proxy: a 1 s warm-up, then `--seconds` of wrk at
16 connections with the user and system CPU of the proxy's processes read from /proc before and after. Then, unless
`--no-strace`, `strace -c -f` on each proxy for 3 s of the same load (strace slows the proxy; the counts per
request do not depend on its speed): each system call's count divided by the requests wrk completed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as bench  # bench/gateway.py


def times(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes so far."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_round(name: str, url: str, pids: list[int], headers: list[str], seconds: int) -> None:
    bench.wrk(url, 1, 16, headers)
    u0, s0 = times(pids)
    r = bench.wrk(url, seconds, 16, headers)
    u1, s1 = times(pids)
    n = r["total"]
    print(f"{name:8} {r['rps']:>8.0f} req/s  user {(u1 - u0) / n * 1e6:5.1f} us  system {(s1 - s0) / n * 1e6:5.1f} us "
          "per request", flush=True)


def syscalls(name: str, url: str, pids: list[int], headers: list[str], tmp: str) -> None:
    bench.wrk(url, 1, 16, headers)
    out = f"{tmp}/{name}.strace"
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, *[a for p in pids for a in ("-p", str(p))]],
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = bench.wrk(url, 3, 16, headers)
    tracer.send_signal(2)
    tracer.wait()
    n = r["total"]
    counts = {}
    for line in Path(out).read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1)) / n
    shown = ", ".join(f"{call} {per:.3f}" for call, per in sorted(counts.items(), key=lambda c: -c[1]) if per >= 0.01)
    print(f"{name:8} {sum(counts.values()):.2f} system calls a request ({n} requests under strace): {shown}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-strace", action="store_true")
    args = parser.parse_args()
    bench.ensure_tools()
    bench.pin(True)
    tmp = tempfile.mkdtemp(prefix="accord-syscalls-")
    upstream, proxy, port = bench.free_port(), bench.free_port(), bench.free_port()
    accord = str(Path(sys.executable).with_name("accord"))
    if subprocess.call([accord, "gateway-compile", "--if-stale"]) != 0:
        raise SystemExit("the data plane did not compile (see above)")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, servers in (("upstream", bench.UPSTREAM_SERVER), ("proxy", bench.PROXY_SERVER)):
            conf = Path(tmp, f"{name}.conf")
            conf.write_text(bench.NGINX_CONF.format(tmp=tmp, name=name,
                                                    servers=servers.format(upstream=upstream, proxy=proxy)))
            procs[name] = subprocess.Popen([*bench.PIN["load" if name == "upstream" else "proxy"], "nginx", "-c",
                                            str(conf), "-p", tmp], stderr=subprocess.DEVNULL)
        bench.wait_for_port(upstream, procs["upstream"])
        bench.wait_for_port(proxy, procs["proxy"])
        env, _credential, key = bench.seed_booking(tmp, upstream)
        procs["gateway"] = subprocess.Popen([*bench.PIN["proxy"], accord, "gateway", "--listen", f"127.0.0.1:{port}",
                                             "--workers", "1", "--flush", "2"],
                                            env={**env, "ACCORD_DATAPLANE": os.environ.get("ACCORD_DATAPLANE",
                                                                                           "compiled")},
                                            stdout=subprocess.DEVNULL)
        bench.wait_for_port(port, procs["gateway"])
        targets = [("nginx", f"http://127.0.0.1:{proxy}/bookings/1", [procs["proxy"].pid], []),
                   ("gateway", f"http://127.0.0.1:{port}/bookings/1", [procs["gateway"].pid],
                    [f"Authorization: Bearer {key}"])]
        targets = [(name, url, [*pids, *bench.children(pids[0])], headers) for name, url, pids, headers in targets]
        for n in range(args.rounds):
            print(f"round {n + 1}", flush=True)
            for name, url, pids, headers in targets:
                cpu_round(name, url, pids, headers, args.seconds)
        if not args.no_strace:
            for name, url, pids, headers in targets:
                syscalls(name, url, pids, headers, tmp)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)


if __name__ == "__main__":
    main()
