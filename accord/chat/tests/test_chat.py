"""The chat end to end in process (Channels' communicator): start, talk both ways, clocks, reconnection, limits,
identities, origins and the offline path."""

from __future__ import annotations

import datetime as dt
import json
import time
from fractions import Fraction
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.core import mail
from django.test import Client

from accord.chat import service
from accord.chat.models import AgentConnection, ChatSession
from accord.desk.models import Message, SlaClock, Ticket

from .conftest import ORIGIN, agent_socket, application, visitor_socket

pytestmark = pytest.mark.django_db(transaction=True)


def start(body: dict[str, Any], origin: str = "http://testserver") -> Any:
    return Client().post("/chat/start/", json.dumps(body), content_type="application/json", HTTP_ORIGIN=origin)


def agent_online(desk: dict[str, Any]) -> None:
    AgentConnection.objects.create(user=desk["agent"], channel_name="test-console")


def test_a_visitor_and_an_agent_chat_and_the_first_agent_message_stops_the_clock(desk: dict[str, Any]) -> None:
    async def scenario() -> dict[str, Any]:
        agent = await agent_socket(desk["agent"])
        started = await sync_to_async(start)({"name": "Grace", "email": "grace@globetrotter.example",
                                              "message": "Where is my refund?"})
        assert started.status_code == 201, started.content
        body = started.json()
        new = await agent.receive_json_from(timeout=5)
        assert new["type"] == "new" and new["reference"] == body["reference"]
        visitor, welcome = await visitor_socket(body["token"])
        assert welcome["type"] == "welcome" and [m["text"] for m in welcome["messages"]] == ["Where is my refund?"]
        await agent.send_json_to({"type": "join", "ticket": new["ticket"]})
        joined = await agent.receive_json_from(timeout=5)
        assert joined["type"] == "joined" and joined["messages"][0]["kind"] == "inbound"
        await visitor.send_json_to({"type": "typing"})
        assert (await agent.receive_json_from(timeout=5)) == {"type": "typing", "who": "visitor",
                                                                 "ticket": new["ticket"]}
        await agent.send_json_to({"type": "message", "ticket": new["ticket"], "text": "Looking now, Grace.",
                                  "client_id": "agent-msg-0001"})
        got = await visitor.receive_json_from(timeout=5)
        assert got["type"] == "message" and got["text"] == "Looking now, Grace." and got["author"] == "Ada"
        await visitor.send_json_to({"type": "message", "text": "<b>thanks</b>", "client_id": "visitor-msg-01"})
        ack = await visitor.receive_json_from(timeout=5)
        assert ack["type"] == "ack" and ack["client_id"] == "visitor-msg-01"
        await visitor.disconnect()
        await agent.disconnect()
        return {"ticket": new["ticket"]}

    result = async_to_sync(scenario)()
    ticket = Ticket.objects.get(pk=result["ticket"])
    assert ticket.channel == "chat" and ticket.account is None
    first = SlaClock.objects.get(ticket=ticket, kind="first_response")
    assert first.target_seconds == 30 and first.status == "met"  # the chat objective (30 s), stopped by the agent's message
    assert list(ticket.messages.order_by("id").values_list("kind", "body_text")) == [
        ("inbound", "Where is my refund?"), ("reply", "Looking now, Grace."), ("inbound", "<b>thanks</b>")]
    assert not AgentConnection.objects.exists()  # the console's row goes with its socket


def test_a_dropped_visitor_gets_what_they_missed_and_a_resent_message_is_stored_once(desk: dict[str, Any]) -> None:
    agent_online(desk)
    body = start({"name": "Grace", "email": "g@example.com", "message": "hello"}).json()
    ticket = Ticket.objects.get(chat__isnull=False)

    async def scenario() -> None:
        visitor, welcome = await visitor_socket(body["token"])
        last = welcome["messages"][-1]["id"]
        await visitor.send_json_to({"type": "message", "text": "are you there?", "client_id": "resend-me-1"})
        first_ack = await visitor.receive_json_from(timeout=5)
        await visitor.disconnect()  # the connection drops
        await sync_to_async(reply)(ticket, desk["agent"], "Yes, here!")  # answered while the visitor is away
        again, welcome = await visitor_socket(body["token"], after=last)
        assert [m["text"] for m in welcome["messages"]] == ["are you there?", "Yes, here!"]
        await again.send_json_to({"type": "message", "text": "are you there?", "client_id": "resend-me-1"})
        second_ack = await again.receive_json_from(timeout=5)
        assert second_ack["id"] == first_ack["id"]  # the widget resent an unacknowledged message: stored once
        await sync_to_async(reply)(ticket, desk["agent"], "Written on the desk's ticket page")
        live = await again.receive_json_from(timeout=5)  # reaches the visitor live (the channel layer)
        assert live["type"] == "message" and live["text"] == "Written on the desk's ticket page"
        await again.disconnect()

    async_to_sync(scenario)()
    assert Message.objects.filter(ticket=ticket, body_text="are you there?").count() == 1


def reply(ticket: Ticket, user: Any, text: str) -> None:
    from accord.desk.actions import do_reply

    do_reply(ticket, user, text)


def test_oversize_flooding_and_frames_out_of_order_are_refused_and_nothing_is_stored(desk: dict[str, Any]) -> None:
    agent_online(desk)
    body = start({"name": "Grace", "email": "g@example.com", "message": "hello"}).json()

    async def scenario() -> list[str]:
        raw = WebsocketCommunicator(application(), "/ws/chat/visitor/", headers=ORIGIN)
        await raw.connect()
        await raw.send_json_to({"type": "message", "text": "before hello", "client_id": "early-000001"})
        codes = [(await raw.receive_json_from(timeout=5))["code"]]
        await raw.send_json_to({"type": "hello", "token": "forged-token"})
        codes.append((await raw.receive_json_from(timeout=5))["code"])
        visitor, _welcome = await visitor_socket(body["token"])
        await visitor.send_json_to({"type": "message", "text": "x" * 2001, "client_id": "too-long-0001"})
        codes.append((await visitor.receive_json_from(timeout=5))["code"])
        await visitor.send_json_to({"type": "message", "text": "hi", "client_id": "bad id!"})
        codes.append((await visitor.receive_json_from(timeout=5))["code"])
        for i in range(11):
            await visitor.send_json_to({"type": "message", "text": f"flood {i}", "client_id": f"flood-{i:06d}"})
            frame = await visitor.receive_json_from(timeout=5)
            while frame["type"] == "message":  # its own message, echoed to everyone in the chat
                frame = await visitor.receive_json_from(timeout=5)
            codes.append(frame["type"])
        await visitor.disconnect()
        return codes

    codes = async_to_sync(scenario)()
    assert codes[:4] == ["hello_first", "unknown_chat", "bad_text", "bad_client_id"]
    assert codes[4:] == ["ack"] * 10 + ["error"]  # the 11th within 10 s: slow down, the widget sends it later
    ticket = Ticket.objects.get(chat__isnull=False)
    assert not ticket.messages.filter(body_text__in=["before hello", "x" * 2001, "flood 10"]).exists()


def test_origins_are_checked_for_the_socket_and_the_form(desk: dict[str, Any], settings: Any) -> None:
    agent_online(desk)
    assert start({"name": "G", "email": "g@example.com", "message": "hi"}, origin="https://evil.example").status_code == 403
    settings.ACCORD_CHAT_ORIGINS = ["https://www.globetrotter.example"]
    allowed = start({"name": "G", "email": "g@example.com", "message": "hi"}, origin="https://www.globetrotter.example")
    assert allowed.status_code == 201 and allowed["Access-Control-Allow-Origin"] == "https://www.globetrotter.example"

    async def scenario() -> tuple[bool, int | None, bool]:
        evil = WebsocketCommunicator(application(), "/ws/chat/visitor/",
                                     headers=[(b"origin", b"https://evil.example"), (b"host", b"testserver")])
        ok, code = await evil.connect()
        anonymous = WebsocketCommunicator(application(), "/ws/chat/agent/", headers=ORIGIN)
        agent_ok, _ = await anonymous.connect()
        return ok, code, agent_ok

    ok, code, agent_ok = async_to_sync(scenario)()
    assert not ok and code == 4403 and not agent_ok  # a foreign page, and a console without a staff login


def test_the_form_refuses_bad_fields_and_floods(desk: dict[str, Any]) -> None:
    agent_online(desk)
    bad = start({"name": "", "email": "nope", "message": "x" * 2001})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"name", "email", "message"}
    assert Client().post("/chat/start/", "{not json", content_type="application/json",
                         HTTP_ORIGIN="http://testserver").status_code == 400
    for _ in range(10):
        assert start({"name": "G", "email": "g@example.com", "message": "hi"}).status_code == 201
    assert start({"name": "G", "email": "g@example.com", "message": "hi"}).status_code == 429
    assert Ticket.objects.count() == 10


def test_a_signed_identity_links_the_contact_and_a_forged_or_old_one_is_refused(desk: dict[str, Any]) -> None:
    agent_online(desk)
    now = int(time.time())
    good = start({"name": "Grace", "email": "g@example.com", "message": "hi",
                  "identity": {"id": "visitor-42", "ts": now, "sig": service.sign("visitor-42", now)}}).json()
    assert "identity" not in good
    assert ChatSession.objects.get(ticket__pk=int(good["reference"][4:])).contact == desk["contact"]
    old = now - 301
    stale = start({"name": "Grace", "email": "g@example.com", "message": "hi",
                   "identity": {"id": "visitor-42", "ts": old, "sig": service.sign("visitor-42", old)}}).json()
    assert "expired" in stale["identity"] and stale["token"]  # refused, the chat goes on as a guest
    forged = start({"name": "Grace", "email": "g@example.com", "message": "hi",
                    "identity": {"id": "visitor-42", "ts": now, "sig": service.sign("visitor-42", now, "guess")}}).json()
    assert "does not match" in forged["identity"]
    assert ChatSession.objects.filter(contact__isnull=True).count() == 2


def test_offline_the_message_becomes_an_email_ticket_and_the_transcript_is_mailed(desk: dict[str, Any]) -> None:
    offline = start({"name": "Grace", "email": "grace@globetrotter.example", "message": "Call me back"})
    assert offline.status_code == 201 and offline.json()["offline"] is True
    assert "No agent is online" in offline.json()["message"] and "token" not in offline.json()
    ticket = Ticket.objects.get()
    assert ticket.channel == "email" and not ChatSession.objects.exists()
    assert SlaClock.objects.get(ticket=ticket, kind="first_response").target_minutes == 240
    agent_online(desk)
    body = start({"name": "Grace", "email": "grace@globetrotter.example", "message": "Now?"}).json()

    async def scenario() -> dict[str, Any]:
        visitor, _welcome = await visitor_socket(body["token"])
        await visitor.send_json_to({"type": "transcript"})
        answer = await visitor.receive_json_from(timeout=5)
        await visitor.disconnect()
        return answer

    assert async_to_sync(scenario)() == {"type": "transcript", "sent": True}
    assert mail.outbox[-1].to == ["grace@globetrotter.example"] and "Grace: Now?" in mail.outbox[-1].body


def test_a_chat_objective_in_seconds_runs_its_clock_to_the_second_and_says_so(desk: dict[str, Any]) -> None:
    agent_online(desk)
    body = start({"name": "Grace", "email": "g@example.com", "message": "quick one"}).json()
    ticket = Ticket.objects.get(chat__isnull=False)
    assert ticket.reference == body["reference"]
    first = SlaClock.objects.get(ticket=ticket, kind="first_response")
    assert (first.target_seconds, first.target_minutes) == (30, Fraction(1, 2))
    assert first.due_at - first.started_at == dt.timedelta(seconds=30)  # the 24x7 calendar: 30 s of business time
    staff = Client()
    staff.force_login(desk["agent"])
    assert "<td>30 s</td>" in staff.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    clocks = staff.get(f"/api/v1/tickets/{ticket.pk}/").json()["clocks"]
    assert {"kind": "first_response", "target_minutes": 0.5, "target_seconds": 30}.items() <= next(
        c for c in clocks if c["kind"] == "first_response").items()


def test_support_targets_are_minutes_to_the_second_and_anything_finer_is_refused() -> None:
    from decimal import Decimal

    from accord.agreements.models import objective_errors

    def errors(target: str) -> list[tuple[str, str]]:
        return objective_errors("first_response", Decimal(target), None, has_service=False, has_operation=False,
                                channel="chat", priority=None)

    assert errors("0.5") == [] and errors("0.25") == [] and errors("240") == []  # 30 s, 15 s, 4 h
    assert errors("0.1667") == []  # 10 s, as 4 decimals write it
    from accord.agreements.models import Objective
    from accord.desk.clocks import target_seconds

    assert [target_seconds(Objective(target=Decimal(t))) for t in ("0.1667", "0.5", "240")] == [10, 30, 14400]
    for bad in ("0", "-1", "0.001", "1.005"):
        assert errors(bad) == [("target", "a support target is a positive number of business minutes, to the "
                                          "second (0.5 is 30 seconds)")], bad
