"""Every model of Accord in the admin: those its own app does not register are listed here, read only.

The admin is for superusers (staff work happens in the staff UI); it should still show everything Accord stores.
Django's admin imports each app's `admin` module in INSTALLED_APPS order and this app comes last, so what is
not registered by now has no admin of its own: it gets a read-only one (no add, change or delete), listing
its first plain fields.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

SHOWN = 6


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _listed(model: type[models.Model]) -> tuple[str, ...]:
    plain = [f.name for f in model._meta.concrete_fields
             if not isinstance(f, models.BinaryField | models.JSONField | models.TextField) and not f.primary_key]
    return ("__str__", *plain[: SHOWN - 1])


for _model in apps.get_models():
    if _model.__module__.startswith("accord.") and _model not in admin.site._registry:
        admin.site.register(_model, type(f"{_model.__name__}Admin", (ReadOnlyAdmin,), {"list_display": _listed(_model)}))
