"""Who may sign in to the portal, and the one-time sign-in links mailed to them.

A portal user is a contact of an account (`customers.Contact`) with a sign-in address, an optional password and
the portal-admin flag (sees the whole organisation's tickets, invites colleagues). Portal users are not Django
users: the staff UI and the admin never accept them, and a portal session never carries a staff login.
"""

from __future__ import annotations

import hashlib

from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.utils import timezone

from accord.customers.models import Contact


class PortalUser(models.Model):
    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="portal_user")
    email = models.EmailField(unique=True, help_text="The sign-in address, lower case.")
    password = models.CharField(max_length=128, blank=True, help_text="Django's hash; blank: sign in by link only.")
    is_admin = models.BooleanField(default=False, help_text="Sees every ticket of the account and invites others.")
    active = models.BooleanField(default=True)
    invited_by = models.CharField(max_length=200, blank=True, help_text="Who invited: a staff user or a portal admin.")
    created_at = models.DateTimeField(default=timezone.now)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def set_password(self, raw: str) -> None:
        self.password = make_password(raw)

    def check_password(self, raw: str) -> bool:
        return bool(self.password) and check_password(raw, self.password)

    @property
    def account_id(self) -> int | None:
        return self.contact.account_id


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignInLink(models.Model):
    """A mailed one-time link: only its SHA-256 is stored; used once, then or after `expires_at` it is dead."""

    user = models.ForeignKey(PortalUser, on_delete=models.CASCADE, related_name="links")
    digest = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=10, default="sign-in", help_text="sign-in or invitation")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.purpose} link for {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"
