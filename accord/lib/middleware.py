"""Request guards that must run before any view reads the body."""

from __future__ import annotations

import sys
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.template import loader

# Seconds a client is asked to wait when the database cannot be reached (a restart, a failover, a full disk).
RETRY_AFTER = 10


class ApiPayloadLimitMiddleware:
    """Answer 413 with the API's error shape when a declared API body exceeds the limit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "bad_request", "Content-Length is not a number.")
            if limit is not None and length > limit:
                return error_response(
                    413, "payload_too_large", f"Request body of {length} bytes exceeds the limit of {limit} bytes."
                )
        return self.get_response(request)


def error_response(status: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> JsonResponse:
    """The one JSON error shape of the API."""
    return JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals: the API's JSON shape under /api/, Django's page elsewhere (settings.CSRF_FAILURE_VIEW)."""
    if request.path.startswith("/api/"):
        return error_response(403, "csrf_failed", f"CSRF check failed ({reason}). API clients authenticate with "
                              "'Authorization: Bearer <token>'; a browser session must send the CSRF token.")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether an error means the database cannot be reached or written now, rather than a bug."""
    return isinstance(exc, OperationalError | InterfaceError)


def database_full(exc: BaseException | None) -> bool:
    """Whether an error means the database has no room left (SQLite's SQLITE_FULL, PostgreSQL's disk_full)."""
    text = str(exc).lower()
    return database_unavailable(exc) and ("database or disk is full" in text or "no space left on device" in text
                                          or getattr(getattr(exc, "__cause__", None), "sqlstate", "") == "53100")


def database_problem(exc: BaseException | None) -> str:
    """What to tell a person about a database error: that it is full, or cannot be reached."""
    if database_full(exc):
        return "The database is full (no disk space left)"
    return "The database cannot be reached right now"


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database that is down or full answers 503 with a page that says so and when to retry (JSON
    under /api/); any other error is a 500 (JSON under /api/). Rendered without the request's context, which
    would read the session and the user from the database."""
    exc = sys.exc_info()[1]
    unavailable = database_unavailable(exc)
    full = database_full(exc)
    if request.path.startswith("/api/"):
        if unavailable:
            response: HttpResponse = error_response(503, "database_full" if full else "unavailable",
                                                    f"{database_problem(exc)}; nothing was changed. Try again in "
                                                    f"{RETRY_AFTER} s.")
        else:
            response = error_response(500, "server_error", "The server failed to handle this request; it has been "
                                      "logged.")
    elif unavailable:
        response = HttpResponse(loader.get_template("503.html").render({"retry_after": RETRY_AFTER, "full": full}),
                                status=503)
    else:
        response = HttpResponseServerError(loader.get_template("500.html").render({}))
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER)
    return response
