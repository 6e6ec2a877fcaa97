#!/usr/bin/env python3
"""Benchmark the gateway beside nginx: the same upstream, the same load generator, four paths.

    python bench/gateway.py [--seconds 5] [--connections 16] [--rounds 3] [--profile FILE] [--write-docs]

1. An upstream: an nginx process answering a small fixed body (fast, so it is not what is measured).
2. Direct: wrk straight at the upstream (the floor).
3. nginx as a reverse proxy (proxy_pass with an upstream keep-alive pool), one worker, in a process of its own.
4. `accord gateway` with one worker, identifying the caller by API key, measuring every request into rollups
   (flushed to a SQLite database every 2 s), in front of the same upstream: twice, as two processes, one
   running the data plane compiled by mypyc (`accord gateway-compile`, run first if the build is stale) and one
   running it as Python (ACCORD_DATAPLANE=python). `--python-only` skips the compiled one.
5. HAProxy driven by Accord (`accord haproxy run --threads 1`, Debian's HAProxy): the same key identification (by
   its SHA-256 in a map), routing and headers, every request's log line sent to `accord collector` through
   HAProxy's ring over TCP (the default; `--haproxy-log udp`: one UDP datagram a line, as before), which writes
   the same rollups (measurement on). `--no-haproxy` leaves it out. Issue 21's aim: 0.9 x nginx's throughput,
   with the collector's counts exact.
Goal: the build a default install runs (compiled: `accord gateway` compiles it at start) at least 0.6 x nginx's
throughput in every round, and p50 added latency (its p50 minus the direct p50) under 0.3 ms. Latency is measured twice: at `--connections` (the throughput runs, which saturate the proxy, so
their latency is mostly queueing behind the busy core) and with one connection (one request at a time: what a
request pays for passing through the proxy when it is not queued behind others). nginx and wrk are installed with apt-get when missing. Keep the load low on a shared machine.
The paths are measured in turn, `--rounds` times (interleaved, so machine noise hits each alike; every other
round in reverse order, so neither proxy always runs right after the other), each after a warm-up run; the
figures are the medians of the rounds, and each round's gateway/nginx ratio is reported. Both proxies run one
worker. `--pin` pins the proxy under test to one core and wrk and the upstream to the other (taskset), so
the proxies compete with nothing but the load they serve (on a machine whose cores other work also uses, it
only helps so much). After the run, the gateways are stopped with SIGTERM and their stored
rollups are compared with wrk's count. `--profile FILE` runs the gateway worker under cProfile and prints
where its time goes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    keepalive_requests 1000000;
{servers}
}}
"""
# The upstream and the nginx proxy are two nginx processes, so that every path reaches the same upstream
# process over loopback (served by the proxy's own worker, nginx would skip a process wake-up per request).
UPSTREAM_SERVER = """
    server {{
        listen 127.0.0.1:{upstream} reuseport;
        location / {{ default_type application/json; return 200 '{{"ok": true, "service": "booking"}}'; }}
    }}"""
PROXY_SERVER = """
    upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tools() -> None:
    missing = [pkg for pkg, binary in (("nginx", "nginx"), ("wrk", "wrk"))
               if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists()]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        if subprocess.call(["apt-get", "install", "-y", *missing], stdout=subprocess.DEVNULL) != 0:
            subprocess.check_call(["apt-get", "update"], stdout=subprocess.DEVNULL)
            subprocess.check_call(["apt-get", "install", "-y", *missing], stdout=subprocess.DEVNULL)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process for port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {seconds} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc; Linux)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """A process's children, their children, and so on (HAProxy's runner -> master -> worker)."""
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def free_udp_port() -> int:
    """A port free for UDP and TCP (the collector listens on both)."""
    from accord.lib.ports import BOTH
    from accord.lib.ports import free_port as free

    return free(kind=BOTH)


def settle(log: Path, quiet: float = 2.0, limit: float = 120.0) -> None:
    """Wait until the collector's printed counts (`--report 1`) have not moved for `quiet` seconds: it has read the
    backlog HAProxy's ring still holds (a stopping HAProxy stops forwarding its ring)."""
    last, since, deadline = "", time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if " lines received, " in line]
        now = lines[-1] if lines else ""
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


PIN: dict[str, list[str]] = {"load": [], "proxy": []}  # taskset prefixes, filled in by --pin


def pin(enabled: bool) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if enabled and len(cores) >= 2 and shutil.which("taskset"):
        PIN["proxy"] = ["taskset", "-c", str(cores[-1])]
        PIN["load"] = ["taskset", "-c", ",".join(str(c) for c in cores[:-1])]


def wrk(url: str, seconds: int, connections: int, headers: list[str]) -> dict[str, float]:
    args = [*PIN["load"], "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "total": total, "p50": lat.get("50", 0.0), "p90": lat.get("90", 0.0),
            "p99": lat.get("99", 0.0), "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
            "socket_errors": 1.0 if errors else 0.0}


def seed_booking(tmp: str, upstream: int, service: str = "booking", base_path: str = "/bookings",
                 **extra_env: str) -> tuple[dict[str, str], Any, str]:
    """A SQLite database in `tmp`, migrated, with the benchmarks' one service (booking at /bookings unless told
    otherwise, one endpoint at the upstream), a gold tier and an account with a key: (the environment the accord
    processes get, the key's credential, the key)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "ACCORD_VAR_DIR": tmp,
           "DJANGO_SETTINGS_MODULE": "accord.settings", **extra_env}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
    from accord.customers.models import Account, Tier

    svc = Service.objects.create(name=service, base_path=base_path)
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=1000)
    Endpoint.objects.create(pool=pool, url=f"http://127.0.0.1:{upstream}")
    tier = Tier.objects.create(name="gold", rank=2)
    credential, key = ApiCredential.issue(Account.objects.create(name="Globex", external_id="GLOBEX", tier=tier))
    return env, credential, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-connections", type=int, default=1,
                        help="connections for the latency runs (default 1: one request at a time)")
    parser.add_argument("--profile", help="write the gateway worker's cProfile stats here and print the top")
    parser.add_argument("--write-docs", action="store_true", help="append the figures to docs/benchmarks.md")
    parser.add_argument("--python-only", action="store_true", help="only the Python data plane, not the compiled one")
    parser.add_argument("--no-haproxy", action="store_true", help="leave HAProxy driven by Accord out")
    parser.add_argument("--haproxy-log", choices=("ring", "udp"), default="ring",
                        help="how HAProxy's log lines reach the collector (`accord haproxy run --log-transport`)")
    parser.add_argument("--pin", action="store_true",
                        help="taskset: the proxies on the last core, wrk and the upstream on the others")
    args = parser.parse_args()
    ensure_tools()
    pin(args.pin)
    tmp = tempfile.mkdtemp(prefix="accord-gw-bench-")
    upstream, proxy = free_port(), free_port()
    accord = str(Path(sys.executable).with_name("accord"))
    # the gateways: name -> ACCORD_DATAPLANE; the compiled one is built (or found current) first
    planes = {"gateway": "compiled", "gateway-python": "python"}
    if args.python_only:
        planes = {"gateway-python": "python"}
    elif subprocess.call([accord, "gateway-compile", "--if-stale"]) != 0:
        raise SystemExit("the data plane did not compile (see above); --python-only runs without it")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    nginxes = {}
    for name, servers in (("upstream", UPSTREAM_SERVER), ("proxy", PROXY_SERVER)):
        conf = Path(tmp, f"{name}.conf")
        conf.write_text(NGINX_CONF.format(tmp=tmp, name=name,
                                          servers=servers.format(upstream=upstream, proxy=proxy)))
        nginxes[name] = subprocess.Popen([*PIN["load" if name == "upstream" else "proxy"], nginx_bin, "-c", str(conf),
                                          "-p", tmp], stderr=subprocess.DEVNULL)
    gateways: dict[str, subprocess.Popen[bytes]] = {}
    haproxy: dict[str, subprocess.Popen[bytes]] = {}  # the runner and the collector
    haproxy_bin = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with_haproxy = not args.no_haproxy and Path(haproxy_bin).exists()
    if not args.no_haproxy and not with_haproxy:
        print("HAProxy is not installed (apt-get install haproxy): measured without it", flush=True)
    try:
        wait_for_port(upstream, nginxes["upstream"])
        wait_for_port(proxy, nginxes["proxy"])
        env, _cred, key = seed_booking(tmp, upstream)
        from accord.catalog.models import ApiCredential
        from accord.customers.models import Account, Tier
        from accord.gateway.models import Rollup

        tier = Tier.objects.get(name="gold")
        auth = [f"Authorization: Bearer {key}"]
        # HAProxy's requests go under an account of their own, so its rollups are counted apart from the gateways'
        _hcred, haproxy_key = ApiCredential.issue(Account.objects.create(name="Initech", external_id="HAPROXY",
                                                                         tier=tier))
        paths = [
            ("direct", f"http://127.0.0.1:{upstream}/bookings/1", []),
            ("nginx", f"http://127.0.0.1:{proxy}/bookings/1", []),
        ]
        for name, plane in planes.items():
            port = free_port()
            gw_env = {**env, "ACCORD_DATAPLANE": plane,
                      **({"ACCORD_GATEWAY_PROFILE": str(Path(f"{args.profile}.{plane}").resolve())}
                         if args.profile else {})}
            gateways[name] = subprocess.Popen([*PIN["proxy"], accord, "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "1",
                                               "--flush", "2"], env=gw_env, stdout=subprocess.DEVNULL)
            wait_for_port(port, gateways[name])
            paths.append((name, f"http://127.0.0.1:{port}/bookings/1", auth))
        if with_haproxy:
            # `python -m accord` of this checkout (the console script may belong to another install)
            module, hp_env = [sys.executable, "-m", "accord"], {**env, "PYTHONPATH": str(ROOT)}
            udp, port = free_udp_port(), free_port()
            with open(f"{tmp}/collector.log", "wb") as log:
                haproxy["collector"] = subprocess.Popen([*PIN["load"], *module, "collector", "--listen",
                                                         f"127.0.0.1:{udp}", "--flush", "2", "--report", "1"],
                                                        env=hp_env, stdout=subprocess.DEVNULL, stderr=log)
            # the runner waits for the collector's TCP port before it starts HAProxy (--wait-collector)
            haproxy["runner"] = subprocess.Popen([*PIN["proxy"], *module, "haproxy", "run", "--dir", f"{tmp}/haproxy",
                                                  "--listen", f"127.0.0.1:{port}", "--collector", f"127.0.0.1:{udp}",
                                                  "--threads", "1", "--log-transport", args.haproxy_log,
                                                  "--wait-collector", "60"], env=hp_env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for_port(port, haproxy["runner"])
            paths.append(("haproxy", f"http://127.0.0.1:{port}/bookings/1", [f"Authorization: Bearer {haproxy_key}"]))
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _u, _h in paths}
        latency: dict[str, list[dict[str, float]]] = {name: [] for name, _u, _h in paths}
        warmup_total = haproxy_warmup = 0
        wrk_runs = haproxy_runs = 0
        # CPU per request is steadier than requests/s on a shared machine: the gateway worker's, and nginx's
        cpu_pids = {"direct": [nginxes["upstream"].pid, *children(nginxes["upstream"].pid)],
                    "nginx": [nginxes["proxy"].pid, *children(nginxes["proxy"].pid)],
                    **{name: [gw.pid, *children(gw.pid)] for name, gw in gateways.items()},
                    **({"haproxy": descendants(haproxy["runner"].pid)} if haproxy else {})}
        for n in range(args.rounds):
            for name, url, headers in (paths if n % 2 == 0 else paths[::-1]):
                warm = wrk(url, 1, args.connections, headers)  # warm up
                before = cpu_seconds(cpu_pids[name])
                r = wrk(url, args.seconds, args.connections, headers)
                r["cpu_us"] = (cpu_seconds(cpu_pids[name]) - before) / max(1, r["total"]) * 1e6
                rounds[name].append(r)
                print(f"round {n + 1} {name:8} {r['rps']:>10.0f} req/s  p50 {r['p50']:.3f} ms  "
                      f"p99 {r['p99']:.3f} ms  cpu {r['cpu_us']:.1f} us/req  non-2xx {r['non2xx']:.0f}", flush=True)
                one = wrk(url, args.seconds, args.latency_connections, headers)
                latency[name].append(one)
                print(f"        {name:8} {args.latency_connections} connection(s): p50 {one['p50']:.3f} ms  "
                      f"p99 {one['p99']:.3f} ms  ({one['rps']:.0f} req/s)", flush=True)
                if name in gateways:
                    warmup_total += int(warm["total"]) + int(one["total"])
                    wrk_runs += 3
                elif name == "haproxy":
                    haproxy_warmup += int(warm["total"]) + int(one["total"])
                    haproxy_runs += 3
        results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()}
        unloaded = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in latency.items()}
        for name, r in results.items():
            print(f"median   {name:8} {r['rps']:>10.0f} req/s  p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  "
                  f"cpu {r['cpu_us']:.1f} us/req", flush=True)
        for gw in gateways.values():
            gw.send_signal(signal.SIGTERM)
        for gw in gateways.values():
            gw.wait(60)
        if haproxy:  # the collector reads what HAProxy logged (the ring's backlog too) and writes everything; then
            # HAProxy stops (stopping, it no longer forwards its ring)
            settle(Path(f"{tmp}/collector.log"))
            haproxy["collector"].send_signal(signal.SIGTERM)
            haproxy["collector"].wait(60)
            haproxy["runner"].send_signal(signal.SIGTERM)
            haproxy["runner"].wait(60)
        ok = Rollup.objects.per_account_minutes().filter(outcome="ok")
        counted = sum(ok.exclude(account="HAPROXY").values_list("count", flat=True))
        sent = int(sum(r["total"] for name in gateways for r in rounds[name])) + warmup_total
        haproxy_counted = sum(ok.filter(account="HAPROXY").values_list("count", flat=True))
        haproxy_sent = int(sum(r["total"] for r in rounds.get("haproxy", []))) + haproxy_warmup
        collector_summary = [line for line in Path(f"{tmp}/collector.log").read_text().splitlines()
                             if " lines received, " in line][-1:] if haproxy else []
    finally:
        for gw in [*gateways.values(), *haproxy.values()]:
            if gw.poll() is None:
                gw.kill()
        for nginx in nginxes.values():
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(20)
            except subprocess.TimeoutExpired:
                nginx.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    labels = {"gateway": "gateway, compiled (what a default install runs)", "gateway-python": "gateway, Python",
              "haproxy": f"HAProxy driven by Accord, collector on ({args.haproxy_log})"}
    proxies = [*gateways, *(["haproxy"] if haproxy else [])]
    added = {name: results[name]["p50"] - results["direct"]["p50"] for name in ("nginx", *proxies)}
    one = {name: unloaded[name]["p50"] - unloaded["direct"]["p50"] for name in ("nginx", *proxies)}
    ratios = {name: results[name]["rps"] / results["nginx"]["rps"] for name in gateways}
    per_round_ratio = {name: ", ".join(f"{g['rps'] / n['rps']:.3f}" for g, n in zip(rounds[name], rounds["nginx"],
                                                                                  strict=True)) for name in gateways}
    # wrk counts the requests answered before its deadline; the gateway also answers (and counts) those in flight
    # at that moment: at most one per connection per wrk run
    in_flight_max = wrk_runs * max(args.connections, args.latency_connections)
    every = {name: min(g["rps"] / n["rps"] for g, n in zip(rounds[name], rounds["nginx"], strict=True))
             for name in gateways}
    for name in gateways:
        print(f"{labels[name]} / nginx throughput: {ratios[name]:.3f} median; per round {per_round_ratio[name]}; "
              f"lowest {every[name]:.3f} ({'every round at 0.6 or more' if every[name] >= 0.6 else 'BELOW 0.6 in a round'})")
    print("CPU per request: " + "; ".join(f"{labels[name]} {results[name]['cpu_us']:.1f} us" for name in gateways)
          + f"; nginx as proxy {results['nginx']['cpu_us']:.1f} us; the upstream {results['direct']['cpu_us']:.1f} us")
    print(f"p50 added latency at {args.connections} connections (saturated): "
          + "; ".join(f"{labels.get(name, name)} {added[name]:.3f} ms" for name in added))
    print(f"p50 added latency at {args.latency_connections} connection(s): "
          + "; ".join(f"{labels.get(name, name)} {one[name]:.3f} ms" for name in one) + " (goal for the gateway < 0.3)")
    exact = 0 <= counted - sent <= in_flight_max
    print(f"rollups counted {counted} answered requests; wrk completed {sent} (all gateway runs) plus up to "
          f"{in_flight_max} in flight at wrk's deadlines: {'exact' if exact else 'MISMATCH'}")
    if haproxy:
        hp_ratio = results["haproxy"]["rps"] / results["nginx"]["rps"]
        hp_rounds = ", ".join(f"{h['rps'] / n['rps']:.3f}" for h, n in zip(rounds["haproxy"], rounds["nginx"],
                                                                           strict=True))
        hp_in_flight = haproxy_runs * max(args.connections, args.latency_connections)
        hp_exact = 0 <= haproxy_counted - haproxy_sent <= hp_in_flight
        print(f"{labels['haproxy']} / nginx throughput: {hp_ratio:.3f} median; per round {hp_rounds} (aim 0.9); CPU "
              f"{results['haproxy']['cpu_us']:.1f} us/request (HAProxy; the collector runs beside wrk)")
        print(f"collector: rollups counted {haproxy_counted} answered requests; wrk completed {haproxy_sent} plus up "
              f"to {hp_in_flight} in flight: {'exact' if hp_exact else 'MISMATCH'}; {' '.join(collector_summary)}")
    if args.profile:
        for plane in planes.values():
            print(f"\ngateway worker profile ({args.profile}.{plane}), top 25 by own time:")
            pstats.Stats(f"{args.profile}.{plane}").sort_stats("tottime").print_stats(25)
    if args.write_docs:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown CPU")
        rows = "\n".join(
            f"| {labels.get(name, name)} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p90']:.3f} | {r['p99']:.3f} | "
            f"{r['cpu_us']:.1f} | {unloaded[name]['p50']:.3f} | {unloaded[name]['p99']:.3f} |"
            for name, r in results.items()
        )
        per_round = "; ".join(
            f"{labels.get(name, name)} " + ", ".join(f"{r['rps'] / 1000:.1f}k" for r in rs) for name, rs in rounds.items())
        throughput = "\n".join(
            f"- {labels[name]}: throughput **{ratios[name]:.3f} x nginx's** (medians; per round {per_round_ratio[name]};"
            f" lowest {every[name]:.3f}: {'every round at 0.6 or more' if every[name] >= 0.6 else 'below 0.6 in a round'};"
            f" goal for the default, compiled build: 0.6 in every round); CPU {results[name]['cpu_us']:.1f} µs per request; busy share of one core "
            f"{results[name]['cpu_us'] * results[name]['rps'] / 1e6:.2f}." for name in gateways)
        latency = "; ".join(f"{labels.get(name, name)} **{one[name]:.3f} ms**" for name in one)
        saturated = "; ".join(f"{labels.get(name, name)} {added[name]:.3f} ms" for name in added)
        text = f"""
## Gateway

`python bench/gateway.py --seconds {args.seconds} --connections {args.connections} --rounds {args.rounds}{' --pin' if args.pin else ''} --write-docs`
on {datetime.date.today()}, {os.cpu_count()} shared cores ({cpu}). wrk with 1 thread; per path and round a 1 s
warm-up, {args.seconds} s at {args.connections} keep-alive connections (throughput, CPU), then {args.seconds} s at
{args.latency_connections} connection(s) (latency unloaded); {args.rounds} interleaved rounds (every other one in reverse
order), medians shown{'; proxies pinned to one core, wrk and the upstream to the other' if PIN['proxy'] else ''}. The
upstream is an nginx process returning a 34-byte JSON body; nginx proxies from a second nginx process (an upstream
keep-alive pool, one worker);
`accord gateway` runs one worker, identifies the caller by API key and measures every request into rollups
flushed to SQLite every 2 s, once with the data plane compiled by mypyc and once as Python (two processes).
wrk, the upstream and the proxy under test share the 2 cores.

| path | requests/s | p50 ms | p90 ms | p99 ms | CPU µs/request (server side) | p50 ms, {args.latency_connections} conn. | p99 ms, {args.latency_connections} conn. |
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}

Requests/s per round: {per_round}.

{throughput}
- nginx as a proxy: {results['nginx']['cpu_us']:.1f} µs per request, busy share
  {results['nginx']['cpu_us'] * results['nginx']['rps'] / 1e6:.2f} (below 1, nginx is held back by the load generator
  and the upstream on the other core rather than by its own CPU); the upstream (a separate nginx process, the same
  for every path) {results['direct']['cpu_us']:.1f} µs.
- p50 added latency over direct, one request at a time: {latency} (goal for the gateway: under 0.3 ms). At
  {args.connections} connections, where the proxy's core is saturated and a request waits behind the others:
  {saturated}.
- Exact measurement under load: after SIGTERM the stored rollups held {counted:,} answered requests; wrk
  completed {sent:,} before its deadlines in the gateways' runs and warm-ups, with at most {in_flight_max} more in
  flight at those deadlines ({'exact' if exact else 'MISMATCH'}).
"""
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write(text)
        print("appended to docs/benchmarks.md")


if __name__ == "__main__":
    main()
