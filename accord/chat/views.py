"""The chat's HTTP side: the widget's pre-chat form (`start`, CORS for the allowed origins) and the console."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from accord.access.strikes import Limit, strike, wait
from accord.lib.net import client_ip
from accord.lib.views import needs, staff_required

from . import service
from .consumers import AGENTS

STARTS = Limit(10, 600)  # chats (or offline messages) one address may start in ten minutes


def _allowed_origin(request: HttpRequest) -> str:
    origin = request.headers.get("Origin", "").rstrip("/")
    if origin and (origin in settings.ACCORD_CHAT_ORIGINS or urlsplit(origin).netloc == request.get_host()):
        return origin
    return ""


def _cors(response: HttpResponse, origin: str) -> HttpResponse:
    if origin:  # no cookies cross origins: the widget's token travels in the body and the socket's first frame
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Vary"] = "Origin"
    return response


def _error(origin: str, status: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> HttpResponse:
    return _cors(JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status),
                 origin)


@csrf_exempt  # a public form posted from the host site's page, with no session: throttled per address instead
def start(request: HttpRequest) -> HttpResponse:
    origin = _allowed_origin(request)
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204), origin)
    if request.method != "POST":
        return _error(origin, 405, "method_not_allowed", "POST the pre-chat form as JSON.")
    if request.headers.get("Origin") and not origin:
        return _error("", 403, "forbidden", "This site may not embed the chat (ACCORD_CHAT_ORIGINS).")
    key = f"chat:addr:{client_ip(request)}"
    if seconds := wait(key, STARTS):
        return _error(origin, 429, "throttled", f"Too many chats from here; try again in {seconds} s.")
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return _error(origin, 400, "bad_request", "The body is not JSON.")
    if not isinstance(data, dict):
        return _error(origin, 400, "bad_request", "The body is a JSON object.")
    fields: dict[str, list[str]] = {}
    name, email, text = (str(data.get(k) or "").strip() for k in ("name", "email", "message"))
    if not name or len(name) > 200:
        fields["name"] = ["Your name, 1 to 200 characters."]
    try:
        validate_email(email)
    except ValidationError:
        fields["email"] = ["An e-mail address, so we can answer if the chat drops."]
    if not text or len(text) > service.MAX_TEXT or "\x00" in text:
        fields["message"] = [f"Your question, 1 to {service.MAX_TEXT} characters."]
    if fields:
        return _error(origin, 400, "invalid", "The form has invalid fields.", fields)
    raw_identity = data.get("identity")
    identity: dict[str, Any] = raw_identity if isinstance(raw_identity, dict) else {}
    strike(key, STARTS)
    started = service.start(name, email, text, origin=origin, identity=(
        str(identity.get("id") or ""), str(identity.get("ts") or ""), str(identity.get("sig") or "")))
    body: dict[str, Any] = {"reference": started.ticket.reference, "offline": started.offline}
    if started.identity_note:
        body["identity"] = f"refused: {started.identity_note}; the chat goes on as a guest"
    if started.offline:
        body["message"] = (f"{started.why_offline}. Your message is ticket {started.ticket.reference}: we answer "
                           f"by e-mail to {email}.")
    else:
        body.update(token=started.token, socket="/ws/chat/visitor/")
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(AGENTS, {"type": "chat.new", "ticket": started.ticket.pk,
                                                     "reference": started.ticket.reference, "visitor": name,
                                                     "known": "identity" not in body and bool(identity)})
    return _cors(JsonResponse(body, status=201), origin)


@staff_required
@needs("desk.change_ticket")
def console(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/console.html", {"online": service.agents_online()})


def demo_page(request: HttpRequest) -> HttpResponse:
    """A page embedding the widget as a customer's site would (the demo and the browser tests)."""
    return render(request, "chat/demo.html")
