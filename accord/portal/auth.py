"""Signing in to the portal: by password or by a mailed one-time link; sessions that expire; throttled.

The portal keeps its own keys in Django's session (`portal.user`, `portal.since`, `portal.seen`), apart from the
staff login: signing in here never signs anyone in to the staff UI, and a staff login is no portal login. A
session ends `ACCORD_PORTAL_IDLE` seconds after its last request (default 2 h) and `ACCORD_PORTAL_MAX_AGE`
seconds after sign-in (default 12 h). Failed sign-ins count against the address typed and the client's IP
(`accord.access.strikes`, kind `portal`): past the limit every attempt is refused with 429 until the window
passes, whether the password is right or not.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from accord.access.strikes import signin_failed, signin_wait
from accord.lib.net import client_ip

from .models import PortalUser, SignInLink, token_digest
from .scope import Scope

USER, SINCE, SEEN = "portal.user", "portal.since", "portal.seen"
LINK_MINUTES = {"sign-in": 30, "invitation": 7 * 24 * 60}


def idle_seconds() -> float:
    return float(getattr(settings, "ACCORD_PORTAL_IDLE", 2 * 3600))


def max_age_seconds() -> float:
    return float(getattr(settings, "ACCORD_PORTAL_MAX_AGE", 12 * 3600))


def throttled(request: HttpRequest, email: str) -> int:
    """Seconds this address and client must wait before a sign-in is even checked (0: go ahead)."""
    return signin_wait("portal", email or None, client_ip(request))


def failed(request: HttpRequest, email: str) -> None:
    signin_failed("portal", email or None, client_ip(request))


def find(email: str) -> PortalUser | None:
    return (PortalUser.objects.select_related("contact__account")
            .filter(email=email.strip().lower(), active=True, contact__account__isnull=False).first())


def sign_in(request: HttpRequest, user: PortalUser) -> None:
    request.session.cycle_key()  # a new session id: no fixation of one set before sign-in
    now = time.time()
    request.session[USER], request.session[SINCE], request.session[SEEN] = user.pk, now, now
    PortalUser.objects.filter(pk=user.pk).update(last_login=timezone.now())


def sign_out(request: HttpRequest) -> None:
    for key in (USER, SINCE, SEEN):
        request.session.pop(key, None)
    request.session.cycle_key()


def current(request: HttpRequest) -> PortalUser | None:
    """The signed-in portal user, or None (never signed in, expired, deactivated, moved out of the account)."""
    pk, since, seen = (request.session.get(k) for k in (USER, SINCE, SEEN))
    if pk is None:
        return None
    now = time.time()
    if not isinstance(since, float | int) or not isinstance(seen, float | int) \
            or now - since > max_age_seconds() or now - seen > idle_seconds():
        sign_out(request)
        return None
    user = PortalUser.objects.select_related("contact__account").filter(pk=pk, active=True).first()
    if user is None or user.contact.account_id is None:
        sign_out(request)
        return None
    request.session[SEEN] = now
    return user


def portal_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view gets `request.portal` (the `Scope` of the signed-in user); anyone else goes to the sign-in page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = current(request)
        if user is None:
            return redirect(f"{reverse('portal:login')}?next={request.path}")
        request.portal = Scope(user)  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def issue_link(user: PortalUser, purpose: str = "sign-in") -> str:
    """A new one-time link's token (what goes in the URL); only its digest is stored."""
    token = secrets.token_urlsafe(32)
    SignInLink.objects.create(user=user, digest=token_digest(token), purpose=purpose,
                              expires_at=timezone.now() + dt.timedelta(minutes=LINK_MINUTES[purpose]))
    return token


def mail_link(request: HttpRequest | None, user: PortalUser, purpose: str = "sign-in", inviter: str = "") -> str:
    """Issue a link and mail it; returns the token (the tests follow it)."""
    token = issue_link(user, purpose)
    path = reverse("portal:link", args=[token])
    url = request.build_absolute_uri(path) if request is not None else f"{settings.ACCORD_PUBLIC_URL.rstrip('/')}{path}"
    minutes = LINK_MINUTES[purpose]
    company = user.contact.account.name if user.contact.account else "your organisation"
    valid = f"{minutes // 60 // 24} days" if minutes >= 24 * 60 else f"{minutes} minutes"
    if purpose == "invitation":
        subject = f"You are invited to the {company} support portal"
        intro = f"{inviter or 'Our support team'} invited you to the support portal of {company}."
    else:
        subject = "Your sign-in link"
        intro = "Someone (we hope you) asked to sign in to the support portal with this address."
    body = (f"{intro}\n\nSign in: {url}\n\nThe link works once, for {valid}. If you did not ask for it, ignore "
            "this message: nobody can sign in without it.\n")
    send_mail(subject, body, None, [user.email])
    return token


def use_link(token: str) -> PortalUser | None:
    """Spend a link: the user it signs in, or None when it is unknown, used or expired (all the same to a caller)."""
    now = timezone.now()
    with transaction.atomic():
        link = (SignInLink.objects.select_for_update().select_related("user__contact")
                .filter(digest=token_digest(token)).first())
        if link is None or link.used_at is not None or link.expires_at <= now or not link.user.active:
            return None
        link.used_at = now
        link.save(update_fields=["used_at"])
        return link.user
