from __future__ import annotations

from django.apps import AppConfig


class LabConfig(AppConfig):
    """Tools for trying governance out: simulated upstreams, open-loop load, the RTA scenario, the capacity
    what-if, and the removal of what they made up. Nothing in the product depends on them."""

    name = "accord.lab"
    default_auto_field = "django.db.models.BigAutoField"
