"""Every page is under axe-core: each URL pattern of the project that answers a GET with HTML is checked by one of
the accessibility tests (test_accessibility.py's registries), and what claims to be no page shows it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from rest_framework.views import APIView

from accord.billing.models import Invoice
from accord.customers.models import Account, Contact
from accord.desk.actions import Inbound, do_open_ticket
from accord.desk.models import Attachment, SupportGroup
from accord.outreach.models import Campaign, Purpose, Segment
from accord.portal import auth as portal_auth
from accord.portal.models import PortalUser
from accord.reports.models import FrozenReport

from .test_accessibility import ADMIN_NOT_PAGES, ELSEWHERE, NOT_PAGES, SWEPT, admin_paths

ROOT = Path(__file__).resolve().parents[3]


def patterns(resolvers: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, Any]]:
    """(route, namespaced name or "", callback) of every URL pattern, walking included resolvers. The admin's
    unnamed ones redirect (`<object_id>/` to the change form, any other path to the index)."""
    for p in resolvers:
        if isinstance(p, URLResolver):
            inner = ":".join(filter(None, [namespace, p.namespace or ""]))
            yield from patterns(p.url_patterns, prefix + str(p.pattern), inner)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), ":".join(filter(None, [namespace, p.name])) if p.name else "", p.callback


def drf_view(callback: Any) -> bool:
    """A DRF view (a viewset's action or an APIView): its HTML is the browsable API, drawn by one template and
    checked by test_the_browsable_api_has_no_critical_or_serious_violation."""
    cls = getattr(callback, "cls", None)
    return isinstance(cls, type) and issubclass(cls, APIView) and not cls.__module__.startswith("drf_spectacular")


def test_every_html_page_is_checked_by_axe() -> None:
    unknown, twice = [], []
    for route, name, callback in patterns(get_resolver().url_patterns):
        if route.startswith("admin/") or drf_view(callback):
            continue  # the admin's own sweep (test_the_admin_covers_every_admin_page) and the browsable API
        name = name or route  # an unnamed pattern goes by its route
        homes = [n for n in (name in SWEPT, name in ELSEWHERE, name in NOT_PAGES) if n]
        if not homes:
            unknown.append(f"{name} ({route})")
        elif len(homes) > 1:
            twice.append(name)
    assert not unknown, ("URL patterns that no accessibility test checks: add each to the sweep (SWEPT and "
                         f"staff_pages in test_accessibility.py), to ELSEWHERE, or to NOT_PAGES: {unknown}")
    assert not twice, f"in more than one of SWEPT, ELSEWHERE and NOT_PAGES: {twice}"


def test_the_tests_named_in_elsewhere_exist_and_visit_their_page() -> None:
    routes = {name: route for route, name, _ in patterns(get_resolver().url_patterns)}
    wrong = []
    for name, where in ELSEWHERE.items():
        path, _, test = where.partition("::")
        source = (ROOT / path).read_text() if (ROOT / path).exists() else ""
        match = re.search(rf"^def {re.escape(test)}\(.*?(?=^def |\Z)", source, re.S | re.M)
        prefix = "/" + routes.get(name, "?").split("<")[0]
        if match is None or "axe" not in match.group(0) or prefix not in match.group(0):
            wrong.append(f"{name}: {where} (no such test, no axe in it, or {prefix} not visited)")
    assert not wrong, wrong


@pytest.mark.django_db
def test_what_is_said_to_be_no_page_is_none(alice: User) -> None:
    """GET on each of NOT_PAGES, as a superuser and as a signed-in portal user, gets no HTML page (200)."""
    alice.is_superuser = True
    alice.save()
    account = Account.objects.create(name="Acme Travel", external_id="ACME")
    contact = Contact.objects.create(account=account, name="Grace")
    customer = PortalUser(contact=contact, email="grace@acme.example", is_admin=True)
    customer.save()
    ticket = do_open_ticket(Inbound(channel="web", subject="Bookings fail", body_text="help",
                                    from_address=customer.email), contact=contact, account=account)
    attachment = Attachment.objects.create(message=ticket.first_message, filename="a.log", size=2, data=b"ok")  # type: ignore[attr-defined]
    invoice = Invoice.objects.create(account=account, period="2026-11", currency="EUR", status="finalised",
                                     number="INV-2026-000001", plan_names="gold")
    group = SupportGroup.objects.create(name="tier-2")
    FrozenReport.objects.create(account=account, period="2026-11", version=1, fmt="csv", content=b"account\n",
                                sha256="0" * 64, closed_at=timezone.now(), closed_by="test")
    campaign = Campaign.objects.create(name="News", purpose=Purpose.objects.create(name="news", title="News"),
                                       segment=Segment.objects.create(name="all", spec={}), subject="News",
                                       html="<p>Hi</p>", text="Hi")
    samples: dict[str, dict[str, Any]] = {
        "portal:attachment": {"reference": ticket.reference, "pk": attachment.pk},
        "portal:invoice-file": {"pk": invoice.pk, "fmt": "csv"},
        "portal:report-file": {"period": f"{timezone.now():%Y-%m}", "fmt": "csv"},
        "portal:close-ticket": {"reference": ticket.reference},
        "portal:revoke-key": {"key": 1},
        "privacy:export": {"pk": contact.pk}, "privacy:erase": {"pk": contact.pk},
        "desk:settings-members": {"pk": group.pk},
        "outreach:campaign-schedule": {"pk": campaign.pk},
        "reports:closed-version": {"external_id": "ACME", "period": "2026-11", "version": 1, "fmt": "csv"},
    }
    staff = Client()
    staff.force_login(alice)
    portal = Client()
    assert portal.post(reverse("portal:link", args=[portal_auth.issue_link(customer)])).status_code == 302
    pages = []
    for route, name, _callback in patterns(get_resolver().url_patterns):
        if (name or route) not in NOT_PAGES:
            continue
        kwargs = samples.get(name) or {key: "x" if kind in ("slug", "str") else 0
                                       for kind, key in re.findall(r"<(?:(\w+):)?(\w+)>", route)}
        path = reverse(name, kwargs=kwargs) if name else "/" + route.replace("^(?P<unknown>.*)$", "no-such-thing/")
        client = portal if name.startswith("portal:") else staff
        answer = client.get(path)
        html = answer["Content-Type"].startswith("text/html") if answer.has_header("Content-Type") else False
        if answer.status_code in (200, 404) and html:  # a page, or one that the sample could not reach
            pages.append(f"{name} ({path}): {answer.status_code} {answer.get('Content-Type')}")
    assert not pages, f"NOT_PAGES that answer a GET with a page (or cannot be asked): {pages}"


@pytest.mark.django_db
def test_the_admin_sweep_reaches_every_admin_page() -> None:
    """admin_paths() holds a page of every admin URL pattern (of every model), each answering 200 to a superuser."""
    from django.contrib import admin

    call_command("seed-demo", "--accounts", "10", stdout=StringIO())  # as the admin's browser test does
    refused: list[str] = []
    paths = admin_paths(refused)
    reached = {resolve(path).view_name for path in paths + refused}
    wanted = {name for route, name, _ in patterns(get_resolver().url_patterns)
              if route.startswith("admin/") and name} - set(ADMIN_NOT_PAGES) - {"admin:login"}
    assert wanted - reached == set(), f"admin pages the sweep does not reach: {sorted(wanted - reached)}"
    assert len(wanted) > 5 * len(admin.site._registry)
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(root)
    wrong = [f"{path}: {answer.status_code}" for path in paths if (answer := client.get(path)).status_code != 200]
    wrong += [f"{path}: {answer.status_code}, not refused" for path in refused
              if (answer := client.get(path)).status_code != 403]
    assert not wrong, wrong
    assert len(paths) > 300
