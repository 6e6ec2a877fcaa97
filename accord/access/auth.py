"""API authentication by staff token (`Authorization: Bearer acc_…` or `Token acc_…`), throttled per account and
per address, and the sign-in form with the same throttle."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accord.lib.net import client_ip

from . import tokens
from .models import ApiToken
from .strikes import signin_failed, signin_wait

KEYWORDS = (b"bearer", b"token")


class Throttled(exceptions.Throttled):
    def __init__(self, seconds: int) -> None:
        super().__init__(wait=seconds, detail=f"Too many failed attempts; try again in {seconds} seconds.")


class TokenAuthentication(BaseAuthentication):
    """A staff token: live (not expired, not revoked), its user active; failures are counted."""

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in KEYWORDS:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: give 'Bearer <token>'.")
        try:
            raw = auth[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        address = client_ip(request)
        prefix = tokens.split(raw)
        owner = (
            ApiToken.objects.filter(prefix=prefix).values_list("user__username", flat=True).first()
            if prefix
            else None
        )
        if wait := signin_wait("token", owner, address):
            raise Throttled(wait)
        token = tokens.check(raw)
        if token is None or not token.user.is_active:
            signin_failed("token", owner, address)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses to check a password while the account or the address has too many recent failures."""

    throttled = 0

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if wait := signin_wait("login", username, client_ip(self.request)):
            self.throttled = wait
            minutes = max(1, round(wait / 60))
            raise forms.ValidationError(
                f"Too many failed sign-ins for this account or from this address. Try again in about {minutes} "
                f"minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        return super().clean()


class ThrottledLoginView(LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "web/login.html"

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "throttled", 0):
            response.status_code = 429
            response["Retry-After"] = str(form.throttled)
        return response


class TokenScheme(OpenApiAuthenticationExtension):
    """The staff token in the OpenAPI schema: an HTTP bearer token."""

    target_class = TokenAuthentication
    name = "staffToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A staff token `acc_<prefix>_<secret>` (accord token create, /api/v1/me/tokens/)",
        }
