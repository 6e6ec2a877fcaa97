#!/usr/bin/env python3
"""Where HAProxy's CPU goes when Accord drives it: the rendered configuration, piece by piece, beside nginx.

    python bench/haproxy_cost.py [--seconds 4] [--rounds 3] [--detail]

Issue 21 aims at 0.9 x nginx's throughput for HAProxy driven by Accord (`bench/gateway.py` measures that end to
end). This benchmark says what stands between the two. It renders Accord's configuration (`accord haproxy
render`, one service, one key) and runs Debian's HAProxy on it, one process, one thread, pinned to one core, with
wrk and the upstream on the other, beside nginx's `proxy_pass` (the reference, the same as in
`bench/gateway.py`) and variants of the configuration:

- `accord`: the configuration as rendered, each request's log line through its HAProxy `ring`, forwarded over TCP
  (the default `--log-transport ring`; to a reader that drains it);
- `accord, log over UDP`: rendered with `--log-transport udp`, one datagram a line (to a reader that drains it);
- `accord, no log`: the same without the log line;
- `bare`: a frontend and a backend, no rule: HAProxy itself;
- `bare + log (UDP)` and `bare + log via ring`: that, logging every request with Accord's log format;
- with `--detail`, `accord, no log` without one group of rules at a time (the SHA-256 of the key; the path
  normalisation; the request id; three of the four key maps; the actions: shed, rate, admission, pools).

The variants exist only here, to measure; none of them is what Accord runs (each leaves out something Accord
needs). The figure is HAProxy's CPU time per request (from /proc, steadier than requests/s on a shared machine)
and its ratio to nginx's; the rounds are interleaved and the medians reported. Requests per second are printed
too. Every variant must answer 200 to every request (checked).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gateway as gw  # noqa: E402  (bench/gateway.py: nginx configurations, wrk, CPU time, pinning)

from accord.lib.ports import free_port  # noqa: E402

BARE = """global
    maxconn 4000
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 3000ms
    timeout client 60000ms
    timeout server 30000ms
frontend bare
    bind 127.0.0.1:{port}
{log}
    default_backend upstream
backend upstream
    option forwardfor
    server s1 127.0.0.1:{upstream}
"""
RING = """
ring accordlog
    format rfc3164
    maxlen 8192
    size 4194304
    timeout connect 5s
    timeout server 10s
    server sink 127.0.0.1:{tcp}
"""


def drain_udp(sock: socket.socket) -> None:
    while True:
        sock.recv(65536)


def drain_tcp(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=lambda c=conn: [None for _ in iter(lambda: c.recv(1 << 20), b"")], daemon=True).start()


def variants(rendered: str, rendered_udp: str, tcp: int, port: int, upstream: int, key: str, key_hash: str,
             maps: Path, detail: bool) -> dict[str, str]:
    log_line = next(line for line in rendered_udp.splitlines() if line.strip().startswith("log "))
    log_format = next(line for line in rendered.splitlines() if line.strip().startswith("log-format "))
    ring_line = re.sub(r"log \S+ ", "log ring@accordlog ", log_line)
    no_log = rendered_udp.replace(log_line + "\n", "")
    out = {
        "accord": rendered,
        "accord, log over UDP": rendered_udp,
        "accord, no log": no_log,
        "bare": BARE.format(port=port, upstream=upstream, log=""),
        "bare + log (UDP)": BARE.format(port=port, upstream=upstream, log=f"{log_line}\n{log_format}"),
        "bare + log via ring": BARE.format(port=port, upstream=upstream, log=f"{ring_line}\n{log_format}")
        + RING.format(tcp=tcp),
    }
    if detail:
        raw = maps / "raw"
        raw.mkdir(exist_ok=True)
        no_sha = no_log.replace(",sha2(256),hex,lower", "")
        for name in ("keys", "tiers", "ranks", "credentials"):
            (raw / f"{name}.map").write_text((maps / f"{name}.map").read_text().replace(key_hash, key))
            no_sha = no_sha.replace(str(maps / f"{name}.map"), str(raw / f"{name}.map"))
        lines = no_log.splitlines()

        def without(pattern: str) -> str:
            return "\n".join(line for line in lines if not re.search(pattern, line)) + "\n"

        out.update({
            "  - the key's SHA-256 (plain key in the maps)": no_sha,
            "  - path normalisation": without(r"normalize-uri|hidden_dot_segment|txn\.query"),
            "  - the request id": without(r"request_id|unique-id|X-Request-Id"),
            "  - 3 of the 4 key maps": without(r"(tiers|ranks|credentials)\.map"),
            "  - the actions (shed, rate, admission, pools)": without(r"shed|rate|admit|priority|pools\.map"),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--detail", action="store_true", help="also leave out one group of rules at a time")
    args = parser.parse_args()
    gw.ensure_tools()
    haproxy_bin = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy_bin).exists():
        raise SystemExit("HAProxy is not installed (apt-get install haproxy)")
    gw.pin(True)
    tmp = tempfile.mkdtemp(prefix="accord-hp-cost-")
    upstream, proxy, port, tcp = free_port(), free_port(), free_port(), free_port()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    nginxes = {}
    for name, servers in (("upstream", gw.UPSTREAM_SERVER), ("proxy", gw.PROXY_SERVER)):
        conf = Path(tmp, f"{name}.conf")
        conf.write_text(gw.NGINX_CONF.format(tmp=tmp, name=name, servers=servers.format(upstream=upstream, proxy=proxy)))
        nginxes[name] = subprocess.Popen([*gw.PIN["load" if name == "upstream" else "proxy"], nginx_bin, "-c",
                                          str(conf), "-p", tmp], stderr=subprocess.DEVNULL)
    # the log readers: they only drain (their CPU is not HAProxy's); on the load core, in this process
    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    udp_sock.bind(("127.0.0.1", 0))
    udp = udp_sock.getsockname()[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", tcp))
    listener.listen()
    threading.Thread(target=drain_udp, args=(udp_sock,), daemon=True).start()
    threading.Thread(target=drain_tcp, args=(listener,), daemon=True).start()
    if gw.PIN["load"]:
        os.sched_setaffinity(0, {int(c) for c in gw.PIN["load"][-1].split(",")})
    running: subprocess.Popen[bytes] | None = None
    try:
        gw.wait_for_port(upstream, nginxes["upstream"])
        gw.wait_for_port(proxy, nginxes["proxy"])
        env, cred, key = gw.seed_booking(tmp, upstream, PYTHONPATH=str(ROOT))
        maps = Path(tmp, "haproxy")
        texts = []
        for transport, collector in (("ring", tcp), ("udp", udp)):  # the ring forwards to the TCP reader
            subprocess.run([sys.executable, "-m", "accord", "haproxy", "render", "--dir", str(maps), "--listen",
                            f"127.0.0.1:{port}", "--collector", f"127.0.0.1:{collector}", "--threads", "1",
                            "--log-transport", transport], env=env, check=True, stdout=subprocess.DEVNULL)
            # one HAProxy process (no master), started per measurement; no health checks to count against it
            texts.append((maps / "haproxy.cfg").read_text().replace(" check inter 1000ms fall 2 rise 1", ""))
        configs = variants(texts[0], texts[1], tcp, port, upstream, key, cred.key_hash, maps, args.detail)
        for n, (name, text) in enumerate(configs.items()):
            path = Path(tmp, f"variant-{n}.cfg")
            path.write_text(text)
            check = subprocess.run([haproxy_bin, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
            if check.returncode != 0:
                raise SystemExit(f"{name}: haproxy -c refused the configuration:\n{check.stderr}")
        headers = [f"Authorization: Bearer {key}"]
        names = ["nginx", *configs]
        cpu: dict[str, list[float]] = {name: [] for name in names}
        rps: dict[str, list[float]] = {name: [] for name in names}
        nginx_pids = [nginxes["proxy"].pid, *gw.children(nginxes["proxy"].pid)]
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                url = f"http://127.0.0.1:{proxy if name == 'nginx' else port}/bookings/1"
                if name == "nginx":
                    pids = nginx_pids
                else:
                    path = Path(tmp, f"variant-{list(configs).index(name)}.cfg")
                    running = subprocess.Popen([*gw.PIN["proxy"], haproxy_bin, "-db", "-f", str(path)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    gw.wait_for_port(port, running)
                    pids = [running.pid]
                gw.wrk(url, 1, args.connections, headers)
                before = gw.cpu_seconds(pids)
                result = gw.wrk(url, args.seconds, args.connections, headers)
                used = gw.cpu_seconds(pids) - before
                if running is not None:
                    running.terminate()
                    running.wait()
                    running = None
                    time.sleep(0.2)
                if result["non2xx"] or result["socket_errors"]:
                    raise SystemExit(f"{name}: {result['non2xx']:.0f} answers were not 2xx (or socket errors)")
                cpu[name].append(used / result["total"] * 1e6)
                rps[name].append(result["rps"])
                print(f"round {r + 1} {name:48} {result['rps']:>9.0f} req/s  cpu {cpu[name][-1]:5.1f} us/req",
                      flush=True)
        ref = statistics.median(cpu["nginx"])
        print("\n| configuration | CPU µs/request (median) | rounds | nginx's CPU / this one's | median req/s |")
        print("|---|---:|---|---:|---:|")
        for name in names:
            c = statistics.median(cpu[name])
            rounds = ", ".join(f"{x:.1f}" for x in cpu[name])
            print(f"| {name.strip()} | {c:.1f} | {rounds} | {ref / c:.2f} | {statistics.median(rps[name]):,.0f} |")
        load = os.getloadavg()[0]
        print(f"\nload average at the end: {load:.2f}; command: python bench/haproxy_cost.py --seconds {args.seconds} "
              f"--rounds {args.rounds}{' --detail' if args.detail else ''}")
    finally:
        if running is not None:
            running.kill()
        for proc in nginxes.values():
            proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
