from __future__ import annotations

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Services, operations, pools, endpoints, partners and API credentials (capability C3)."""

    name = "accord.catalog"
    default_auto_field = "django.db.models.BigAutoField"
