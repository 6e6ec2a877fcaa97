"""`/healthz/details`: `accord doctor`'s findings as JSON for staff (503 when a check fails)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from . import checks


@never_cache
def health_details(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect_to_login(request.get_full_path())
    if not user.has_perm("ops.view_heartbeat"):
        raise PermissionDenied("Your role does not allow this page (it needs ops.view_heartbeat).")
    result = checks.summary(checks.run())
    return JsonResponse(result, status=200 if result["healthy"] else 503, json_dumps_params={"indent": 2})
