"""Live chat behind Accord's own gateway: the pre-chat form over HTTP and the visitor's WebSocket both pass through
the gateway (real sockets: the gateway in this process, uvicorn serving Accord), and the gateway counts each."""

from __future__ import annotations

import http.client
import json
import os
from typing import Any

import pytest
from websockets.sync.client import connect

from accord.desk.models import Message
from accord.gateway.snapshot import PoolTarget, Route, Snapshot, Upstream
from accord.gateway.tests.conftest import on_loop, start_gateway, stop_gateway, wait_until

from .conftest import session_cookie

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://www.example.com"  # the company's site, where the widget is


def test_a_visitor_chats_through_the_gateway_and_each_connection_is_counted(asgi_server: str, desk: dict[str, Any],
                                                                           settings: Any) -> None:
    settings.ACCORD_CHAT_ORIGINS = [SITE]
    port = int(asgi_server.rsplit(":", 1)[1])
    accord = PoolTarget("primary", "primary", 50, (Upstream("127.0.0.1", port, f"127.0.0.1:{port}".encode()),))
    gw = start_gateway(Snapshot((Route("chat-http", b"/chat", True, {"primary": accord}, accord),
                                 Route("chat-ws", b"/ws/chat", True, {"primary": accord}, accord)), {}))
    # the agent reaches Accord directly (staff sign in on its own origin); the visitor comes through the gateway
    cookie = session_cookie(desk["agent"])[0][1].decode()
    try:
        with connect(f"ws://127.0.0.1:{port}/ws/chat/agent/", origin=asgi_server,  # type: ignore[arg-type]
                     additional_headers={"Cookie": cookie}, open_timeout=20) as agent:
            visit(agent, gw.port)
        assert Message.objects.filter(body_text="Still here, through the tunnel").count() == 1

        def counted() -> dict[tuple[str, str], int]:
            out: dict[tuple[str, str], int] = {}
            for key, tally in gw.gateway.accumulator.tallies.items():
                out[(key[2], key[5])] = out.get((key[2], key[5]), 0) + tally.count
            return out

        wait_until(lambda: on_loop(gw, lambda: gw.gateway.in_flight) == 0, what="the chat's tunnel to end")
        assert on_loop(gw, counted) == {("chat-http", "ok"): 1, ("chat-ws", "ok"): 1}
    finally:
        stop_gateway(gw)


def visit(agent: Any, port: int) -> None:
    """A visitor starts a chat and writes, through the gateway on `port`, while the agent watches."""
    assert json.loads(agent.recv(20))["type"] == "chats"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("POST", "/chat/start/", body=json.dumps({"name": "Grace", "email": "grace@example.com",
                                                          "message": "Hello from behind the gateway"}),
                 headers={"Content-Type": "application/json", "Origin": SITE})
    answer = conn.getresponse()
    started = json.loads(answer.read())
    conn.close()
    assert answer.status == 201 and answer.getheader("Access-Control-Allow-Origin") == SITE, started
    new = json.loads(agent.recv(20))
    assert new["type"] == "new" and new["reference"] == started["reference"]
    agent.send(json.dumps({"type": "join", "ticket": new["ticket"]}))
    with connect(f"ws://127.0.0.1:{port}/ws/chat/visitor/", origin=SITE, open_timeout=20) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "hello", "token": started["token"], "after": 0}))
        welcome = json.loads(ws.recv(20))
        assert welcome["type"] == "welcome", welcome
        assert [m["text"] for m in welcome["messages"]] == ["Hello from behind the gateway"]
        ws.send(json.dumps({"type": "message", "text": "Still here, through the tunnel",
                            "client_id": "through-gateway-1"}))
        while (got := json.loads(ws.recv(20)))["type"] != "ack":
            pass
        assert got["client_id"] == "through-gateway-1"
    while (seen := json.loads(agent.recv(20)))["type"] != "message":
        pass
    assert seen["text"] == "Still here, through the tunnel"  # the agent got it, live
