"""The staff pages of a fresh install, before any data: they must explain, not fail."""

from __future__ import annotations

import pytest
from django.test import Client

from accord.customers.models import Account

pytestmark = pytest.mark.django_db


def test_the_dashboard_of_an_empty_database_says_so(staff: Client) -> None:
    response = staff.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No accounts yet." in html and "No tier changes yet." in html
    assert 'id="top-share">\u2013<' in html  # an en dash: no figure yet


def test_the_other_pages_of_an_empty_database_say_so(staff: Client) -> None:
    assert Account.objects.count() == 0
    expected = {
        "/accounts/": "No accounts match.",
        "/agreements/": "No agreements.",
        "/services/": "No services yet.",
    }
    for url, text in expected.items():
        response = staff.get(url)
        assert response.status_code == 200 and text in response.content.decode(), url
