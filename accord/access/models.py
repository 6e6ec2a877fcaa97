"""Staff API tokens (hashed, expiring, revocable) and strikes (failed sign-ins, failed tokens, public-form
posts), stored in the database so every process sees the same counts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A staff member's API token `acc_<prefix>_<secret>`: only the prefix and the secret's SHA-256 are stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"acc_{self.prefix}_… ({self.user})"

    @property
    def live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class Strike(models.Model):
    """One counted event against a key (`login:user:alice`, `login:addr:192.0.2.1`, `webform:addr:…`)."""

    key = models.CharField(max_length=200)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["key", "at"])]

    def __str__(self) -> str:
        return f"{self.key} at {self.at:%Y-%m-%d %H:%M:%S}"


class UsedNonce(models.Model):
    """A single-use token's nonce, recorded when it is spent (the public form's token); kept until it expires."""

    scope = models.CharField(max_length=40)
    nonce = models.CharField(max_length=64)
    used_at = models.DateTimeField(default=timezone.now)
    result = models.CharField(
        max_length=100, blank=True, help_text="what spending it made (a ticket reference)"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "nonce"], name="access_nonce_once")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.nonce}"
