"""Request guards that must run before any view reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


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
                              "'Authorization: Token <token>'; a browser session must send the CSRF token.")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)
