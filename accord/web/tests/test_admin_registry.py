"""Every model Accord stores is in the admin (for superusers); those without an admin of their own read only."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client

from accord.web.admin import ReadOnlyAdmin


def test_every_model_of_accord_is_registered() -> None:
    models = [m for m in apps.get_models() if m.__module__.startswith("accord.")]
    assert len(models) > 50
    assert [m._meta.label for m in models if m not in admin.site._registry] == []


@pytest.mark.django_db
def test_the_read_only_ones_cannot_be_changed_here() -> None:
    from accord.gateway.models import Rollup

    assert isinstance(admin.site._registry[Rollup], ReadOnlyAdmin)
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-1")
    client = Client()
    client.force_login(root)
    assert client.get("/admin/gateway/rollup/").status_code == 200
    assert client.get("/admin/gateway/rollup/add/").status_code == 403
    assert "latency_sketch" not in admin.site._registry[Rollup].list_display
