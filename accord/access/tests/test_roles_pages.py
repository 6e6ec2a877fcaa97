"""Roles in the staff pages: each page needs the view permission of what it shows."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accord.access import roles

pytestmark = pytest.mark.django_db

PAGES = {
    "/": "customers.view_account",
    "/accounts/": "customers.view_account",
    "/agreements/": "agreements.view_agreement",
    "/services/": "catalog.view_service",
    "/desk/": "desk.view_ticket",
    "/governance/": "governance.view_policy",
    "/insight/": "insight.view_healthscore",
    "/reports/": "reports.view_credit",
    "/reports/credits/": "reports.view_credit",
}


def login(role: str | None) -> Client:
    user = User.objects.create_user(f"p-{role}", is_staff=True)
    if role:
        roles.grant(user, role)
    client = Client()
    client.force_login(user)
    return client


def test_a_staff_user_without_a_role_sees_no_page() -> None:
    client = login(None)
    for url in PAGES:
        assert client.get(url).status_code == 403, url


@pytest.mark.parametrize("role", list(roles.ROLES))
def test_each_role_sees_the_pages_its_permissions_allow(role: str) -> None:
    client = login(role)
    user = User.objects.get(username=f"p-{role}")
    for url, perm in PAGES.items():
        expected = 200 if user.has_perm(perm) else 403
        assert client.get(url).status_code == expected, (role, url, perm)


def test_what_each_role_sees_is_what_the_brief_says() -> None:
    clients = {role: login(role) for role in roles.ROLES}
    seen = {role: {url for url in PAGES if c.get(url).status_code == 200} for role, c in clients.items()}
    assert seen["agent"] == set(PAGES) - {"/reports/", "/reports/credits/"}
    assert seen["manager"] == seen["finance"] == seen["administrator"] == set(PAGES)


def test_an_agent_cannot_override_a_policy_from_the_page() -> None:
    r = login("agent").post("/governance/policies/any/override/", {"minutes": 5, "on": "1"})
    assert r.status_code == 403
