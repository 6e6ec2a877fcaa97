from __future__ import annotations

from django.apps import AppConfig


class DeskConfig(AppConfig):
    """The multi-channel service desk on SLA clocks (capability C6)."""

    name = "accord.desk"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # registers the SMTP and mailbox checks with `accord doctor`

        del checks
