from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The customer-aware HTTP gateway: identify, route, measure, enforce (capability C4)."""

    name = "accord.gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals  # checks: registers the rollups check with `accord doctor`

        del checks

        signals.connect()
