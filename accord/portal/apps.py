from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The customer portal (C7, second half): a contact's own tickets and service level, at /portal/."""

    name = "accord.portal"
    default_auto_field = "django.db.models.BigAutoField"
