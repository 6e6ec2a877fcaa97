"""What every staff page shares: the navigation offers only what the role may open, a breadcrumb on every
detail page, a favicon (the browser checks are in test_layout_browser.py)."""

from __future__ import annotations

import os
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accord.access import roles

from .test_accessibility import staff_pages

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def login(role: str) -> tuple[Client, User]:
    user = User.objects.create_user(f"nav-{role}", is_staff=True)
    roles.grant(user, role)
    client = Client()
    client.force_login(user)
    return client, user


def nav_links(html: str) -> dict[str, str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S)
    assert nav, "no main navigation"
    return {" ".join(re.sub(r"<[^>]+>", "", label).split()): href
            for href, label in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', nav.group(1), re.S)}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["agent", "manager", "finance"])
def test_the_navigation_shows_only_pages_the_role_may_open(role: str) -> None:
    client, user = login(role)
    links = nav_links(client.get("/", SERVER_NAME="localhost").content.decode())
    assert {"Dashboard", "Accounts", "Desk"} <= set(links)
    for label, href in links.items():
        assert client.get(href, SERVER_NAME="localhost").status_code == 200, (role, label, href)
    # and nothing it may open is missing
    assert ("Reports" in links) == user.has_perm("reports.view_credit")
    assert ("Governance" in links) == user.has_perm("governance.view_policy")
    if role == "agent":
        assert "Reports" not in links and client.get("/reports/").status_code == 403


@pytest.mark.django_db
def test_a_favicon_is_linked_shipped_and_served_at_the_root(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/vnd.microsoft.icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header
    login_page = client.get("/login/").content.decode()
    admin_page = client.get("/admin/login/").content.decode()
    for html in (login_page, admin_page):
        svg = re.search(r'<link rel="icon" href="([^"]+\.svg)"', html)
        png = re.search(r'<link rel="icon" href="([^"]+\.png)"', html)
        assert svg and png
    assert client.post("/favicon.ico").status_code == 405


DETAIL_PAGES = ["account", "account insight", "agreement", "service", "ticket", "account report", "credit ledger"]


@pytest.mark.django_db
def test_every_detail_page_has_one_breadcrumb_ending_at_the_page(staff: Client, demo: None) -> None:
    pages = staff_pages("")
    for name in DETAIL_PAGES:
        html = staff.get(pages[name]).content.decode()
        crumbs = re.findall(r'<nav class="crumbs" aria-label="Breadcrumb">(.*?)</nav>', html, re.S)
        assert len(crumbs) == 1, name
        items = re.findall(r"<li>(.*?)</li>", crumbs[0], re.S)
        assert items[0].startswith('<a href="/">Dashboard'), name
        assert 'aria-current="page"' in items[-1] and all('aria-current' not in i for i in items[:-1]), name
