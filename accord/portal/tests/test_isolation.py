"""Strict isolation: a contact of one account never sees, counts or guesses another account's rows.

Signed in as each organisation in turn, every portal URL is requested with the other organisation's ids (GET and
POST): every answer is 404, exactly as for an id that does not exist, and the other's words appear nowhere, not
in lists, searches, counts or files. The portal's views reach customer data through `scope.Scope` only.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import URLPattern
from django.utils import timezone

from accord.desk.models import Ticket
from accord.portal import urls
from accord.portal.scope import PATHS
from accord.reports.models import FrozenReport
from accord.reports.periods import current_month

from .conftest import Org, signed_in

pytestmark = pytest.mark.django_db

PORTAL = Path(urls.__file__).parent


def other_ids(other: Org) -> dict[str, object]:
    # `pk` is an attachment's or an invoice's id (accord/billing/tests/test_portal.py checks another account's
    # finalised invoice by its own id); `fmt` is a file's format
    return {"reference": other.ticket.reference, "pk": other.attachment.pk, "key": other.key.pk, "fmt": "csv"}


def fill(pattern: URLPattern, ids: dict[str, object]) -> str:
    route = str(pattern.pattern)
    return "/portal/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


@pytest.mark.parametrize("who", ["admin", "user"])
def test_every_portal_url_with_the_other_accounts_ids_is_404(orgs: tuple[Org, Org], who: str) -> None:
    for me, other in (orgs, orgs[::-1]):
        client = signed_in(getattr(me, who))
        checked = 0
        for pattern in urls.urlpatterns:
            if not re.search(r"<(?:\w+:)?(reference|pk|key)>", str(pattern.pattern)):
                continue  # no id in it (a report's month is always the signed-in account's own)
            url = fill(pattern, other_ids(other))
            for method in (client.get, client.post):
                data = {"message": "hijack"} if method == client.post else {}
                answer = method(url, data)
                nowhere = fill(pattern, {"reference": "ACC-999999", "pk": 999999, "key": 999999, "fmt": "csv"})
                missing = method(nowhere, data)
                # 404, or 405 for a GET of a POST-only action: either way the same as for a row that does not exist
                assert answer.status_code == missing.status_code, (method.__name__, url, answer.status_code)
                assert answer.status_code == 404 or (method == client.get and answer.status_code == 405), url
                assert answer.content.replace(url.encode(), b"URL") == missing.content.replace(nowhere.encode(), b"URL"), \
                    "another account's row answers like a missing one (the page names the path asked for, no more)"
                checked += 1
        assert checked >= 8  # 4 URLs with ids, GET and POST
        assert Ticket.objects.get(pk=other.ticket.pk).messages.filter(body_text="hijack").count() == 0
        assert Ticket.objects.get(pk=other.ticket.pk).status != "solved"


def test_no_page_list_search_or_count_shows_the_other_accounts_words(orgs: tuple[Org, Org]) -> None:
    for me, other in (orgs, orgs[::-1]):
        client = signed_in(me.admin)
        secrets = [other.key.prefix, other.account.name, other.ticket.subject, other.word, other.ticket.reference, other.user.email,
                   other.credit.period]
        month = current_month().label
        FrozenReport.objects.get_or_create(account=other.account, period=month, version=1, fmt="csv", defaults={
            "content": f"{other.account.name} {other.word}".encode(), "sha256": "0" * 64, "closed_at": timezone.now(),
            "closed_by": "test"})
        pages = ["/portal/", "/portal/tickets/?status=all", f"/portal/tickets/?q={other.word}&status=all",
                 f"/portal/tickets/?q={other.ticket.reference}&status=all", "/portal/credits/", "/portal/team/",
                 "/portal/reports/", f"/portal/reports/{month}/csv/", "/portal/keys/"]
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 200, path
            html = answer.content.decode()
            asked = parse_qs(urlsplit(path).query).get("q", [""])[0]  # the search box shows what was typed
            for secret in secrets:
                assert secret == asked or secret not in html, (path, secret)
        assert "0 tickets" in client.get(f"/portal/tickets/?q={other.word}&status=all").content.decode()


def test_the_portals_views_read_customer_data_through_the_scope_only() -> None:
    source = (PORTAL / "views.py").read_text(encoding="utf-8")
    scoped = {m.__name__ for m in PATHS}
    direct = set(re.findall(r"\b(\w+)\.objects\b", source)) | set(re.findall(r"\b(\w+)\._default_manager\b", source))
    # PortalUser: whether an address is taken at all (a yes/no the invitation form must answer), nothing more
    assert direct & scoped <= {"PortalUser"}, f"views query {sorted(direct & scoped)} directly, not through Scope"
    # What the views may still query directly, each for a reason that involves no other account's data:
    assert direct <= {
        "PortalUser",  # is an address already taken (a yes/no that the invitation form must answer)
        "Contact", "ContactPoint",  # creating the invited colleague's contact in the admin's own account
        "Policy", "AuditEvent",  # the tier's protections: the company's policies, not any account's rows
    }, direct
