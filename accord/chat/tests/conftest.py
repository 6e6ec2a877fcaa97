"""A desk with a chat objective, an agent, helpers to open the visitor's and the agent's sockets in process, and
Accord's ASGI application served by uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from accord.access.roles import grant
from accord.agreements.testing import always_agreement
from accord.customers.models import Account, Contact, ContactPoint

ORIGIN = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


def application() -> Any:
    from accord.asgi import application as app

    return app


@pytest.fixture
def desk(db: None, settings: Any) -> dict[str, Any]:
    settings.ACCORD_CHAT_SECRET = "host-site-secret"
    settings.ACCORD_CHAT_AGREEMENT = "gold-sla"
    agreement = always_agreement("gold", {"name": "chat-first", "kind": "first_response", "target": 0.5, "channel": "chat"},
                                 {"name": "mail-first", "kind": "first_response", "target": 240})
    calendar, tier = agreement.calendar, agreement.tier
    account = Account.objects.create(name="Globetrotter", external_id="GLOBE", tier=tier)
    contact = Contact.objects.create(account=account, name="Grace", external_id="visitor-42")
    ContactPoint.objects.create(contact=contact, kind="email", value="grace@globetrotter.example")
    agent = User.objects.create_user("ada", "ada@accord.example", "pw", is_staff=True, first_name="Ada")
    grant(agent, "agent")
    return {"agent": agent, "contact": contact, "account": account, "calendar": calendar}


def session_cookie(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def agent_socket(user: User) -> WebsocketCommunicator:
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(session_cookie)(user)
    socket = WebsocketCommunicator(application(), "/ws/chat/agent/", headers=ORIGIN + cookie)
    connected, _ = await socket.connect()
    assert connected
    first = await socket.receive_json_from(timeout=5)
    assert first["type"] == "chats"
    return socket


async def visitor_socket(token: str, after: int = 0, origin: list[tuple[bytes, bytes]] | None = None) -> tuple[
        WebsocketCommunicator, dict[str, Any]]:
    socket = WebsocketCommunicator(application(), "/ws/chat/visitor/", headers=origin or ORIGIN)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to({"type": "hello", "token": token, "after": after})
    return socket, await socket.receive_json_from(timeout=5)


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[str]:
    """Accord's ASGI application (HTTP with its static files, and the chat's WebSockets) on uvicorn."""
    import uvicorn
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from accord.chat.routing import websocket_urlpatterns

    app = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(get_asgi_application()),
                              "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns))})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                          ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
