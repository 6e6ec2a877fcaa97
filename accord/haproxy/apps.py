from __future__ import annotations

from django.apps import AppConfig


class HaproxyConfig(AppConfig):
    """HAProxy as Accord's data plane: its configuration rendered from the gateway's snapshot, changed at run time
    through the Runtime API, and its logs folded into the gateway's rollups (issue 21)."""

    name = "accord.haproxy"
    label = "haproxy"
    default_auto_field = "django.db.models.BigAutoField"
