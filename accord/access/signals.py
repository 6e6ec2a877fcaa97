"""A failed sign-in counts against the account and the address (accord.access.strikes)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from accord.lib.net import client_ip

from .strikes import signin_failed


@receiver(user_login_failed, dispatch_uid="accord.access.login_failed")
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if request is None:
        return
    signin_failed("login", str(credentials.get("username") or "") or None, client_ip(request))
