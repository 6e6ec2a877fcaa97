"""The chat's WebSockets (Django Channels): the visitor's widget and the agents' console.

Frames are JSON objects with a `type`. Visitor: `hello` {token, after} first (the chat's token and the last
message id it has: what it missed is sent again, so a dropped connection loses nothing), then `message` {text,
client_id} (acknowledged with `ack`; a message sent twice with one client_id is stored once, so the widget
resends whatever was not acknowledged), `typing`, `transcript` (mailed to the visitor), `end`. Agent: `ping`
(every 20 s: online), `join` {ticket} (its history and the canned replies, filled), `message` {ticket, text,
client_id}, `typing` {ticket}, `transfer` {ticket, to} (another agent's user name). Every message is a desk
message on the chat's ticket, so the first agent message stops the first-response clock like any reply.
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from accord.desk.actions import Inbound, do_add_customer_message, do_reply
from accord.desk.canned import for_ticket
from accord.desk.models import Message, Ticket
from accord.desk.outbound import chat_group
from accord.desk.ticket_actions import do_assign

from . import service
from .models import AgentConnection, ChatSession

AGENTS = "chat-agents"
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
FLOOD_COUNT, FLOOD_SECONDS = 10, 10.0  # at most this many messages per connection in this many seconds


def header(scope: dict[str, Any], name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), "")


def origin_allowed(scope: dict[str, Any], *, own_only: bool) -> bool:
    """The page that opened the socket: this server's own origin, or (visitors only) ACCORD_CHAT_ORIGINS."""
    origin = header(scope, b"origin").rstrip("/")
    if not origin:
        return False
    if urlsplit(origin).netloc == header(scope, b"host"):
        return True
    return not own_only and origin in settings.ACCORD_CHAT_ORIGINS


def message_frame(m: Message) -> dict[str, Any]:
    author = ""
    if m.author_user is not None:
        author = m.author_user.get_full_name() or m.author_user.get_username()
    return {"type": "message", "ticket": m.ticket_id, "id": m.pk, "kind": m.kind, "text": m.body_text,
            "author": author, "at": m.created_at.isoformat()}


def _history(ticket_id: int, after: int) -> list[dict[str, Any]]:
    rows = (Message.objects.filter(ticket_id=ticket_id, pk__gt=after).exclude(kind=Message.Kind.NOTE)
            .select_related("author_user").order_by("created_at", "id"))
    return [message_frame(m) for m in rows]


class VisitorConsumer(AsyncJsonWebsocketConsumer):
    session: ChatSession | None = None

    async def connect(self) -> None:
        if not origin_allowed(self.scope, own_only=False):
            await self.close(code=4403)
            return
        self.session = None
        self.recent: deque[float] = deque()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            await self.channel_layer.group_discard(chat_group(self.session.ticket_id), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "code": "bad_frame", "message": "Frames are JSON objects."})
            return
        kind = content.get("type")
        if self.session is None:
            await self._hello(content) if kind == "hello" else await self.send_json(
                {"type": "error", "code": "hello_first", "message": "Send hello with the chat's token first."})
            return
        if kind == "message":
            await self._message(content)
        elif kind == "typing":
            await self.channel_layer.group_send(chat_group(self.session.ticket_id),
                                                {"type": "chat.typing", "ticket": self.session.ticket_id,
                                                 "who": "visitor"})
        elif kind == "transcript":
            sent = await database_sync_to_async(service.mail_transcript)(self.session)
            await self.send_json({"type": "transcript", "sent": sent})
        elif kind == "end":
            await database_sync_to_async(ChatSession.objects.filter(pk=self.session.pk).update)(
                status=ChatSession.Status.ENDED, ended_at=timezone.now())
            await self.channel_layer.group_send(chat_group(self.session.ticket_id),
                                                {"type": "chat.ended", "ticket": self.session.ticket_id})
        else:
            await self.send_json({"type": "error", "code": "unknown_type", "message": f"Unknown type {kind!r}."})

    async def _hello(self, content: dict[str, Any]) -> None:
        token = str(content.get("token") or "")
        session = await database_sync_to_async(
            lambda: ChatSession.objects.select_related("ticket").filter(
                token_hash=service.token_hash(token), status=ChatSession.Status.OPEN).first())()
        if session is None:
            await self.send_json({"type": "error", "code": "unknown_chat", "message": "This chat has ended."})
            await self.close(code=4404)
            return
        self.session = session
        await self.channel_layer.group_add(chat_group(session.ticket_id), self.channel_name)
        after = content.get("after") if isinstance(content.get("after"), int) else 0
        history = await database_sync_to_async(_history)(session.ticket_id, after)
        await self.send_json({"type": "welcome", "reference": session.ticket.reference, "messages": history})

    async def _message(self, content: dict[str, Any]) -> None:
        assert self.session is not None
        text, client_id = content.get("text"), str(content.get("client_id") or "")
        if not CLIENT_ID.match(client_id):
            await self.send_json({"type": "error", "code": "bad_client_id", "message": "client_id: 8-64 of A-Z a-z 0-9 _ -"})
            return
        if not isinstance(text, str) or not text.strip() or len(text) > service.MAX_TEXT or "\x00" in text:
            await self.send_json({"type": "error", "code": "bad_text", "client_id": client_id,
                                  "message": f"A message is 1 to {service.MAX_TEXT} characters of text."})
            return
        now = time.monotonic()
        while self.recent and now - self.recent[0] > FLOOD_SECONDS:
            self.recent.popleft()
        if len(self.recent) >= FLOOD_COUNT:
            await self.send_json({"type": "error", "code": "slow_down", "client_id": client_id,
                                  "message": "Too many messages at once: this one is sent again in a moment."})
            return
        self.recent.append(now)
        message, new = await database_sync_to_async(_store_visitor)(self.session, text, client_id)
        await self.send_json({"type": "ack", "client_id": client_id, "id": message.pk})
        if new:
            await self.channel_layer.group_send(chat_group(self.session.ticket_id),
                                                {**message_frame(message), "type": "chat.message"})
            await self.channel_layer.group_send(AGENTS, {"type": "chat.activity", "ticket": self.session.ticket_id})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "message"})

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("who") != "visitor":
            await self.send_json({"type": "typing", "who": "agent"})

    async def chat_ended(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "ended"})


def _store_visitor(session: ChatSession, text: str, client_id: str) -> tuple[Message, bool]:
    """The visitor's message on the chat's ticket, once per client_id (a resent message is not stored twice)."""
    message_id = f"<{client_id}@chat-{session.pk}.accord>"
    existing = Message.objects.filter(message_id=message_id).first()
    if existing is not None:
        return existing, False
    inbound = Inbound(channel=Ticket.Channel.CHAT, subject="", body_text=text, from_name=session.visitor_name,
                      message_id=message_id)
    return do_add_customer_message(session.ticket, inbound, contact=session.contact), True


class AgentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        allowed = bool(user and user.is_authenticated and user.is_staff) and await database_sync_to_async(
            user.has_perm)("desk.change_ticket")
        if not allowed or not origin_allowed(self.scope, own_only=True):
            await self.close(code=4403)
            return
        self.user = user
        await self.accept()
        await database_sync_to_async(AgentConnection.objects.update_or_create)(
            channel_name=self.channel_name, defaults={"user": user, "seen_at": timezone.now()})
        await self.channel_layer.group_add(AGENTS, self.channel_name)
        await self.send_json({"type": "chats", "chats": await database_sync_to_async(_open_chats)()})

    async def disconnect(self, code: int) -> None:
        await database_sync_to_async(AgentConnection.objects.filter(channel_name=self.channel_name).delete)()
        await self.channel_layer.group_discard(AGENTS, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        ticket_id = content.get("ticket") if isinstance(content.get("ticket"), int) else None
        if kind == "ping":
            await database_sync_to_async(AgentConnection.objects.filter(channel_name=self.channel_name).update)(
                seen_at=timezone.now())
            await self.send_json({"type": "pong"})
            return
        if ticket_id is None or not await database_sync_to_async(
                ChatSession.objects.filter(ticket_id=ticket_id).exists)():
            await self.send_json({"type": "error", "code": "unknown_chat", "message": "No such chat."})
            return
        if kind == "join":
            await self.channel_layer.group_add(chat_group(ticket_id), self.channel_name)
            history, canned = await database_sync_to_async(_joined)(ticket_id, self.user)
            await self.send_json({"type": "joined", "ticket": ticket_id, "messages": history, "canned": canned})
        elif kind == "message":
            await self._message(ticket_id, content)
        elif kind == "typing":
            await self.channel_layer.group_send(chat_group(ticket_id),
                                                {"type": "chat.typing", "ticket": ticket_id, "who": "agent"})
        elif kind == "transfer":
            error = await database_sync_to_async(_transfer)(ticket_id, str(content.get("to") or ""), self.user)
            if error:
                await self.send_json({"type": "error", "code": "transfer", "message": error})
            else:
                await self.channel_layer.group_send(AGENTS, {"type": "chat.transferred", "ticket": ticket_id,
                                                             "to": content.get("to"), "by": self.user.get_username()})
        else:
            await self.send_json({"type": "error", "code": "unknown_type", "message": f"Unknown type {kind!r}."})

    async def _message(self, ticket_id: int, content: dict[str, Any]) -> None:
        text, client_id = content.get("text"), str(content.get("client_id") or "")
        if not CLIENT_ID.match(client_id) or not isinstance(text, str) or not text.strip() \
                or len(text) > service.MAX_TEXT:
            await self.send_json({"type": "error", "code": "bad_text", "client_id": client_id,
                                  "message": f"A message is 1 to {service.MAX_TEXT} characters of text."})
            return
        message_id = await database_sync_to_async(_store_agent)(ticket_id, self.user, text, client_id)
        await self.send_json({"type": "ack", "client_id": client_id, "id": message_id, "ticket": ticket_id})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "message"})

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("who") == "visitor":
            await self.send_json({"type": "typing", "who": "visitor", "ticket": event["ticket"]})

    async def chat_new(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "new"})

    async def chat_activity(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "activity"})

    async def chat_ended(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "ended", "ticket": event["ticket"]})

    async def chat_transferred(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "transferred"})


def _open_chats() -> list[dict[str, Any]]:
    return [{"ticket": s.ticket_id, "reference": s.ticket.reference, "visitor": s.visitor_name,
             "known": s.contact_id is not None, "since": s.created_at.isoformat()}
            for s in ChatSession.objects.filter(status=ChatSession.Status.OPEN).select_related("ticket")[:100]]


def _joined(ticket_id: int, user: Any) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    ticket = Ticket.objects.get(pk=ticket_id)
    return _history(ticket_id, 0), [{"title": r.title, "text": text} for r, text in for_ticket(ticket, user)]


def _store_agent(ticket_id: int, user: Any, text: str, client_id: str) -> int:
    """An agent's reply (do_reply: it stops the first-response clock, and goes to the visitor through the
    channel layer after the commit), once per client_id."""
    message_id = f"<{client_id}@chat-agent.accord>"
    existing = Message.objects.filter(message_id=message_id).values_list("pk", flat=True).first()
    if existing is not None:
        return existing
    try:
        return do_reply(Ticket.objects.get(pk=ticket_id), user, text, message_id=message_id).pk
    except ValidationError as e:
        raise ValueError(" ".join(e.messages)) from e


def _transfer(ticket_id: int, username: str, by: Any) -> str:
    other = get_user_model().objects.filter(username=username, is_active=True).first()
    if other is None:
        return f"No agent {username!r}."
    try:
        do_assign(Ticket.objects.get(pk=ticket_id), user=other, by=by)
    except ValidationError as e:
        return " ".join(e.messages)
    return ""
