from __future__ import annotations

from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """A person's data across every app: export on request, erasure by pseudonym, retention (C9, GDPR)."""

    name = "accord.privacy"
    default_auto_field = "django.db.models.BigAutoField"
