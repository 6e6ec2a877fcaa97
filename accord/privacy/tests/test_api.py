"""The privacy API: export for who may change contacts, erase for who may delete them, 409 for open tickets."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from accord.access.tokens import create
from accord.customers.models import Contact

from .conftest import NAME

pytestmark = pytest.mark.django_db


def client_with(*codenames: str) -> APIClient:
    user = User.objects.create_user(f"u{len(codenames)}{'-'.join(codenames)}"[:150], "u@example.com", "pw",
                                    is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create(user, 'privacy').secret}")
    return client


def test_export_and_erase_need_their_permissions(grace: Contact) -> None:
    reader = client_with("view_contact")
    assert reader.get(f"/api/v1/privacy/contacts/{grace.pk}/export/").status_code == 403
    assert reader.post(f"/api/v1/privacy/contacts/{grace.pk}/erase/", {}, format="json").status_code == 403
    editor = client_with("change_contact")
    answer = editor.get(f"/api/v1/privacy/contacts/{grace.pk}/export/")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    assert NAME in zipfile.ZipFile(io.BytesIO(answer.content)).read("person.json").decode()
    assert editor.post(f"/api/v1/privacy/contacts/{grace.pk}/erase/", {}, format="json").status_code == 403
    assert Contact.objects.get(pk=grace.pk).name == NAME


def test_erase_is_409_with_open_tickets_until_confirmed(grace: Contact) -> None:
    admin = client_with("delete_contact")
    refused = admin.post(f"/api/v1/privacy/contacts/{grace.pk}/erase/", {}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    assert "confirm_open" in refused.json()["error"]["message"] and Contact.objects.get(pk=grace.pk).name == NAME
    bad = admin.post(f"/api/v1/privacy/contacts/{grace.pk}/erase/", {"confirm_open": "perhaps"}, format="json")
    assert bad.status_code == 400 and "confirm_open" in bad.json()["error"]["fields"]
    done = admin.post(f"/api/v1/privacy/contacts/{grace.pk}/erase/", {"confirm_open": True}, format="json")
    assert done.status_code == 200 and done.json()["pseudonym"].startswith("erased-")
    assert Contact.objects.get(pk=grace.pk).name == done.json()["pseudonym"]
    assert admin.post("/api/v1/privacy/contacts/999999/erase/", {"confirm_open": True},
                      format="json").status_code == 404
