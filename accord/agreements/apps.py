from __future__ import annotations

from django.apps import AppConfig


class AgreementsConfig(AppConfig):
    """Business calendars, agreements, objectives and credit schedules (capability C2)."""

    name = "accord.agreements"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the catalog asks before deleting a service or an operation that objectives are scoped to (catalog/uses.py)
        from accord.catalog.uses import register_objectives

        from .models import Objective

        register_objectives(lambda where: Objective.objects.filter(where))
