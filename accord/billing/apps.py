from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Usage meters, price plans and invoices (C10: operate as a service)."""

    name = "accord.billing"
    default_auto_field = "django.db.models.BigAutoField"
