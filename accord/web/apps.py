from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    """The staff web UI: login, dashboard, account pages."""

    name = "accord.web"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.site_header = "Accord administration"
        admin.site.site_title = "Accord administration"
        admin.site.index_title = "Superusers' tools (staff work happens in the staff UI)"
