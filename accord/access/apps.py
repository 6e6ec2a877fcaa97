from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "accord.access"
    label = "access"
    verbose_name = "Access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="accord.access.sync_roles")
        from . import signals  # noqa: F401  (records failed sign-ins)


def _sync_roles(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After every migrate (and every test flush): the role groups hold exactly their table's permissions."""
    from .roles import sync

    sync(using=using)
