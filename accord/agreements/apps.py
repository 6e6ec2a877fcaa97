from __future__ import annotations

from django.apps import AppConfig


class AgreementsConfig(AppConfig):
    """Business calendars, agreements, objectives and credit schedules (capability C2)."""

    name = "accord.agreements"
    default_auto_field = "django.db.models.BigAutoField"
