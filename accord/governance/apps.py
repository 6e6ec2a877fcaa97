from __future__ import annotations

from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Live service levels, error budgets, and the policies that switch gateway actions on and off (C5)."""

    name = "accord.governance"
    default_auto_field = "django.db.models.BigAutoField"
