from __future__ import annotations

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Period reports per account, the service-credit ledger, partner SLAs (C7: prove the promise)."""

    name = "accord.reports"
    default_auto_field = "django.db.models.BigAutoField"
