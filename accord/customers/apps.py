from __future__ import annotations

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    """Accounts, contacts, commitments and tiers (capability C1)."""

    name = "accord.customers"
    default_auto_field = "django.db.models.BigAutoField"
