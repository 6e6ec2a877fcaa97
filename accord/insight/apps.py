from __future__ import annotations

from django.apps import AppConfig


class InsightConfig(AppConfig):
    """Learning from every customer: orders, lifetime value, 80/20, touchpoints, health (capability C8)."""

    name = "accord.insight"
    default_auto_field = "django.db.models.BigAutoField"
