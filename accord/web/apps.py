from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    """The staff web UI: login, dashboard, account pages."""

    name = "accord.web"
