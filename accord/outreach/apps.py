from __future__ import annotations

from django.apps import AppConfig


class OutreachConfig(AppConfig):
    """Permission-based outreach (C9): consent per contact and purpose, one-click unsubscribe, suppression."""

    name = "accord.outreach"
    default_auto_field = "django.db.models.BigAutoField"
