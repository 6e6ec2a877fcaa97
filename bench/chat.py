#!/usr/bin/env python3
"""Benchmark the live chat: many visitors connected at once, messages flowing to an agent's console.

    python bench/chat.py [--visitors 500] [--messages 4] [--rate 100] [--runs 3] [--postgres URL]

Accord serves as in production (`accord serve`: uvicorn, one process, the in-memory channel layer) on a fresh
database (SQLite file, or --postgres). One agent console is connected (with a staff session) and has joined
every chat; --visitors chats are started and each visitor's WebSocket is open at the same time. Then every
visitor sends --messages messages, the whole load spread as a Poisson stream of --rate messages per second
overall; each message carries its send time (CLOCK_MONOTONIC, shared by the processes of this machine) and its
delivery latency is taken when the agent's console receives it (stored on the ticket, a desk message, and
broadcast through the channel layer). Reported: connections held, messages sent and delivered, median, p99 and
max latency. Aim: p99 under 100 ms.

The reference, in the same run, is the floor of the transport: a bare `websockets` server that relays each
visitor frame to the agent's socket with nothing else (no Django, no database), under the same clients and
load. Medians of --runs runs for both; the ratio says what Accord's work (ORM, clocks, channel layer) costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(env: dict[str, str], visitors: int) -> tuple[str, list[str]]:
    """Migrate, create the agent and the chats in-process; the agent's session cookie and the visitors' tokens."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from accord.access.roles import grant
    from accord.chat import service
    from accord.chat.models import AgentConnection

    call_command("migrate", verbosity=0)
    agent = User.objects.create_user("bench-agent", "agent@bench.example", "pw", is_staff=True)
    grant(agent, "agent")
    session = SessionStore()
    session["_auth_user_id"] = str(agent.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = agent.get_session_auth_hash()
    session.create()
    AgentConnection.objects.create(user=agent, channel_name="bench-setup")  # online while the chats start
    tokens = []
    started = time.perf_counter()
    for i in range(visitors):
        tokens.append(service.start(f"Visitor {i}", f"v{i}@bench.example", "hello").token)
        if (i + 1) % 100 == 0:
            print(f"  started {i + 1}/{visitors} chats ({time.perf_counter() - started:.1f} s)", flush=True)
    AgentConnection.objects.all().delete()
    from django.db import connections

    connections.close_all()
    return session.session_key or "", tokens


async def load(url_visitor: str, url_agent: str, tokens: list[str], cookie: str, messages: int, rate: float,
               accord: bool) -> dict[str, Any]:
    import websockets

    origin = url_visitor.replace("ws://", "http://").split("/ws/")[0]
    agent = await websockets.connect(url_agent, additional_headers={"Cookie": f"sessionid={cookie}"},
                                     origin=origin, max_size=None)
    latencies: list[float] = []
    expected = len(tokens) * messages
    done = asyncio.Event()
    joined = {"n": 0, "all": asyncio.Event(), "want": len(tokens)}

    async def agent_reader() -> None:
        async for raw in agent:
            frame = json.loads(raw)
            if frame.get("type") == "joined":
                joined["n"] += 1
                if joined["n"] >= joined["want"]:
                    joined["all"].set()
            if frame.get("type") == "message" and frame.get("kind", "inbound") == "inbound":
                text = frame.get("text", "")
                if text.startswith("t="):
                    latencies.append(time.monotonic() - float(text[2:].split()[0]))
                    if len(latencies) >= expected:
                        done.set()

    reader = asyncio.create_task(agent_reader())  # the only reader of the agent's socket (frames it skips too)
    sockets = []
    for token in tokens:
        ws = await websockets.connect(url_visitor, origin=origin, max_size=None)
        await ws.send(json.dumps({"type": "hello", "token": token}))
        sockets.append(ws)
    if accord:
        for ws in sockets:
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome", welcome
        from asgiref.sync import sync_to_async

        from accord.chat.models import ChatSession

        ids = await sync_to_async(lambda: list(
            ChatSession.objects.filter(status="open").values_list("ticket_id", flat=True)))()
        joined["want"] = len(ids)
        started_joins = time.monotonic()
        for tid in ids:
            await agent.send(json.dumps({"type": "join", "ticket": tid}))
        await asyncio.wait_for(joined["all"].wait(), timeout=300)  # the console has every chat open
        print(f"  the console joined {len(ids)} chats in {time.monotonic() - started_joins:.1f} s", flush=True)

    async def drain(ws: Any) -> None:
        try:
            async for _ in ws:
                pass
        except Exception:
            pass

    drains = [asyncio.create_task(drain(ws)) for ws in sockets]
    plan = [(i % len(sockets), n) for n in range(messages) for i in range(len(sockets))]
    random.Random(7).shuffle(plan)
    rng = random.Random(11)
    started = time.monotonic()
    for i, n in plan:
        await asyncio.sleep(rng.expovariate(rate))
        await sockets[i].send(json.dumps({"type": "message", "text": f"t={time.monotonic()} #{n}",
                                          "client_id": f"bench-{i:05d}-{n:04d}"}))
    sending = time.monotonic() - started
    with contextlib.suppress(TimeoutError):  # what never arrives is counted as not delivered
        await asyncio.wait_for(done.wait(), timeout=60)
    for ws in sockets:
        await ws.close()
    for t in drains:
        t.cancel()
    await agent.close()
    reader.cancel()
    lat = sorted(latencies)
    return {"connections": len(sockets), "sent": len(plan), "delivered": len(lat), "seconds": sending,
            "median_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "max_ms": 1000 * lat[-1] if lat else float("nan")}


REFERENCE = r'''
import asyncio, json, sys, websockets
agents = set()
async def handler(ws):
    path = ws.request.path
    if path.startswith("/agent"):
        agents.add(ws)
        await ws.send(json.dumps({"type": "chats", "chats": []}))
        try:
            async for _ in ws:
                pass
        finally:
            agents.discard(ws)
        return
    async for raw in ws:
        frame = json.loads(raw)
        if frame.get("type") == "hello":
            continue
        out = json.dumps({"type": "message", "kind": "inbound", "text": frame.get("text", "")})
        for a in list(agents):
            await a.send(out)
async def main():
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=None):
        await asyncio.Future()
asyncio.run(main())
'''


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def run_accord(args: argparse.Namespace, run: int) -> dict[str, Any]:
    var = tempfile.mkdtemp(prefix="accord-bench-chat-")
    db = args.postgres or f"sqlite:///{var}/bench.sqlite3"
    env = {"DATABASE_URL": db, "ACCORD_VAR_DIR": var, "ACCORD_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
           "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    if args.postgres:
        env["DATABASE_URL"] = args.postgres
    print(f"run {run}: preparing {args.visitors} chats on {db.split('://')[0]}", flush=True)
    cookie, tokens = prepare(env, args.visitors)
    os.environ.update(env)
    return serve_and_load(args, tokens, cookie)


def serve_and_load(args: argparse.Namespace, tokens: list[str], cookie: str) -> dict[str, Any]:
    """`accord serve` on a free port (this process's environment: the run's database), the load against it."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "accord"), "serve", "--listen", f"127.0.0.1:{port}"],
                              env=dict(os.environ), cwd=ROOT)
    try:
        wait_port(port)
        return asyncio.run(load(f"ws://127.0.0.1:{port}/ws/chat/visitor/", f"ws://127.0.0.1:{port}/ws/chat/agent/",
                                tokens, cookie, args.messages, args.rate, accord=True))
    finally:
        server.terminate()
        server.wait(30)


def run_reference(args: argparse.Namespace, tokens: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", REFERENCE, str(port)])
    try:
        wait_port(port)
        return asyncio.run(load(f"ws://127.0.0.1:{port}/ws/chat/visitor/", f"ws://127.0.0.1:{port}/agent",
                                ["x"] * tokens, "", args.messages, args.rate, accord=False))
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=500)
    parser.add_argument("--messages", type=int, default=4, help="per visitor")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second, all visitors together")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of a fresh SQLite file (its database is reused)")
    args = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    results: dict[str, list[dict[str, Any]]] = {"accord": [], "reference": []}
    for run in range(1, args.runs + 1):
        results["reference"].append(run_reference(args, args.visitors))
        print(f"  reference run {run}: {results['reference'][-1]}", flush=True)
        results["accord"].append(run_accord_once(args, run))
        print(f"  accord run {run}: {results['accord'][-1]}", flush=True)
    print("\nsummary (medians of the runs)")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("median_ms", "p99_ms", "max_ms")}
        sent = sum(r["sent"] for r in rows)
        got = sum(r["delivered"] for r in rows)
        print(f"  {name:9}: {rows[0]['connections']} connections, {got}/{sent} delivered, median {med['median_ms']:.1f} ms,"
              f" p99 {med['p99_ms']:.1f} ms, max {med['max_ms']:.1f} ms")
    a = statistics.median(r["p99_ms"] for r in results["accord"])
    b = statistics.median(r["p99_ms"] for r in results["reference"])
    lost = sum(r["sent"] - r["delivered"] for r in results["accord"])
    met = a < 100 and lost == 0
    print(f"  p99 ratio accord / reference: {a / b:.1f}x; aim p99 < 100 ms with every message delivered: "
          f"{'met' if met else 'NOT met'}" + (f" ({lost} not delivered)" if lost else ""))


_prepared = False


def run_accord_once(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """Django is set up once per process: every run after the first reuses the database, with new chats."""
    global _prepared
    if not _prepared:
        _prepared = True
        return run_accord(args, run)
    from django.contrib.auth.models import User
    from django.db import connections

    from accord.chat import service
    from accord.chat.models import AgentConnection, ChatSession

    ChatSession.objects.update(status="ended")
    agent = User.objects.get(username="bench-agent")
    AgentConnection.objects.create(user=agent, channel_name="bench-setup")
    tokens = [service.start(f"Visitor {i}", f"v{i}@bench.example", "hello").token for i in range(args.visitors)]
    AgentConnection.objects.all().delete()
    from django.contrib.sessions.models import Session

    cookie = Session.objects.order_by("-expire_date").values_list("session_key", flat=True).first() or ""
    connections.close_all()
    return serve_and_load(args, tokens, cookie)


if __name__ == "__main__":
    main()
