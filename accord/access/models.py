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


class AuditEntry(models.Model):
    """One change made by a person (or a command) to a configuration or customer record: who, when, what.

    Written by `accord.access.audit.record()` from the staff UI, the API and the command line; never edited.
    `changes` maps a field to `[before, after]` (`{}` for a creation or deletion, which `summary` describes);
    a code object's YAML edit stores its diff in `summary`.
    """

    class Source(models.TextChoices):
        UI = "ui", "staff UI"
        API = "api", "API"
        CLI = "cli", "command line"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    source = models.CharField(max_length=4, choices=Source.choices, default=Source.UI)
    action = models.CharField(max_length=40, help_text="create, update, delete, apply, issue-key, revoke-key, ...")
    object_type = models.CharField(max_length=60, help_text="app_label.model of what changed")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "at"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        who = self.user.get_username() if self.user else "system"
        return f"{self.at:%Y-%m-%d %H:%M} {who} {self.action} {self.object_type} {self.object_repr}"
