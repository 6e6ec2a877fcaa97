"""The staff page of a person's data: who may open it, the export download, and the erasure's confirmations."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accord.access.roles import grant
from accord.customers.models import Contact

from .conftest import NAME

pytestmark = pytest.mark.django_db


def staff(role: str) -> Client:
    user = User.objects.create_user(f"{role}-privacy", f"{role}@accord.example", "pw", is_staff=True)
    grant(user, role)
    client = Client()
    client.force_login(user)
    return client


def test_a_manager_exports_and_erases_after_both_confirmations_and_an_agent_cannot(grace: Contact) -> None:
    agent = staff("agent")
    assert agent.get(f"/privacy/contacts/{grace.pk}/").status_code == 403
    assert agent.get(f"/privacy/contacts/{grace.pk}/export/").status_code == 403
    manager = staff("manager")
    page = manager.get(f"/privacy/contacts/{grace.pk}/").content.decode()
    assert "1 open" in page and 'id="erase-form"' in page
    assert NAME in manager.get(f"/accounts/{grace.account_id}/").content.decode()
    export = manager.get(f"/privacy/contacts/{grace.pk}/export/")
    assert NAME in zipfile.ZipFile(io.BytesIO(export.content)).read("person.json").decode()
    manager.post(f"/privacy/contacts/{grace.pk}/erase/", {"confirm_name": "Grace", "confirm_open": "on"})
    assert Contact.objects.get(pk=grace.pk).name == NAME  # the name was not typed exactly
    refused = manager.post(f"/privacy/contacts/{grace.pk}/erase/", {"confirm_name": NAME}, follow=True)
    assert "Tick the box" in refused.content.decode() and Contact.objects.get(pk=grace.pk).name == NAME
    done = manager.post(f"/privacy/contacts/{grace.pk}/erase/", {"confirm_name": NAME, "confirm_open": "on"},
                        follow=True).content.decode()
    assert "Erased: the contact is now erased-" in done and 'id="erased-note"' in done
    assert "privacy-erase" in done and "privacy-export" in done  # the page's history
    assert Contact.objects.get(pk=grace.pk).name.startswith("erased-")
    assert manager.get("/privacy/contacts/999999/").status_code == 404
