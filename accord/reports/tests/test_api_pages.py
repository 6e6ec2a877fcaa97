"""The API and the staff pages of reports and the credit ledger: formats, permissions, bad input."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.test import APIClient

from accord.access.tokens import create as create_token
from accord.customers.models import Account
from accord.reports.credits import compute
from accord.reports.freeze import close, pdf_available
from accord.reports.models import Credit, FrozenReport
from accord.reports.periods import parse_period

from .conftest import traffic

AFTER = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def credit(acme: Account) -> Credit:
    traffic(dt.date(2026, 11, 3), 1000, 20)
    with time_machine.travel(AFTER, tick=False):
        compute([acme], parse_period("2026-11"))
    return Credit.objects.get()


def staff(name: str, *perms: str) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create_token(user).secret}")
    return client


@time_machine.travel(AFTER, tick=False)
def test_api_report_in_each_format_and_bad_periods(acme: Account, api: APIClient) -> None:
    traffic(dt.date(2026, 11, 3), 1000, 10)
    r = api.get("/api/v1/reports/accounts/ACME/?period=2026-11")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["account"] == "ACME" and body["provisional"] is False
    [objective] = body["parts"][0]["objectives"]
    assert (objective["valid_events"], objective["bad_events"], objective["attained"]) == (1000, 10, 99.0)
    assert objective["credit"] == {"percent": 10, "amount": "100.00", "currency": "EUR", "note": ""}
    csv = api.get("/api/v1/reports/accounts/ACME/?period=2026-11&output=csv")
    assert csv["Content-Type"].startswith("text/csv") and b",objective,acme-sla," in csv.content
    if pdf_available():
        pdf = api.get("/api/v1/reports/accounts/ACME/?period=2026-11&output=pdf")
        assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    bad = api.get("/api/v1/reports/accounts/ACME/?period=2026-13")
    assert bad.status_code == 400 and "not a month" in bad.json()["error"]["fields"]["period"][0]
    assert api.get("/api/v1/reports/accounts/NOPE/?period=2026-11").status_code == 404
    assert api.get("/api/v1/reports/accounts/ACME/?output=doc").status_code == 400


@pytest.mark.django_db
def test_api_credits_need_the_permission_to_be_decided_and_every_step_is_audited(credit: Credit) -> None:
    reader = api_as(staff("rita", "view_credit", "view_account"))
    listed = reader.get("/api/v1/reports/credits/?period=2026-11").json()
    assert listed["count"] == 1 and listed["results"][0]["amount"] == "250.00"
    assert listed["results"][0]["steps"][0]["status"] == "computed"
    refused = reader.post(f"/api/v1/reports/credits/{credit.pk}/approve/", {}, format="json")
    assert refused.status_code == 403
    finance = api_as(staff("fran", "view_credit", "view_account", "approve_credit"))
    with time_machine.travel(AFTER + dt.timedelta(days=1), tick=False):
        no_reason = finance.post(f"/api/v1/reports/credits/{credit.pk}/reject/", {}, format="json")
        assert no_reason.status_code == 400 and "needs a reason" in str(no_reason.json())
        ok = finance.post(f"/api/v1/reports/credits/{credit.pk}/approve/", {}, format="json")
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        again = finance.post(f"/api/v1/reports/credits/{credit.pk}/approve/", {}, format="json")
        assert again.status_code == 400
        applied = finance.post(f"/api/v1/reports/credits/{credit.pk}/apply/", {}, format="json")
    assert [(s["status"], s["actor"]) for s in applied.json()["steps"]] == [
        ("computed", "accord"), ("approved", "fran"), ("applied", "fran")]
    assert APIClient().get("/api/v1/reports/credits/").status_code in (401, 403)


@pytest.mark.django_db
def test_pages_reports_and_the_finance_ledger(credit: Credit, client: Client) -> None:
    client.force_login(staff("rita", "view_credit", "view_account"))
    with time_machine.travel(AFTER + dt.timedelta(days=1), tick=False):
        index = client.get("/reports/?period=2026-11").content.decode()
        assert 'href="/reports/accounts/ACME/?period=2026-11"' in index and "Reports</a>" in index
        page = client.get("/reports/accounts/ACME/?period=2026-11").content.decode()
        assert "Service report: Acme (ACME), 2026-11" in page and "250.00 EUR" in page and "<svg" in page
        assert '<label for="id_period">' in page
        bad = client.get("/reports/accounts/ACME/?period=junk").content.decode()
        assert "not a period" in bad
        ledger = client.get("/reports/credits/").content.decode()
        assert f'id="credit-{credit.pk}"' in ledger and "needs the permission" in ledger
        assert client.post(f"/reports/credits/{credit.pk}/decide/", {"decision": "approved"}).status_code == 403
        client.force_login(staff("fran", "view_credit", "view_account", "approve_credit"))
        assert 'for="reason-' in client.get("/reports/credits/").content.decode()
        r = client.post(f"/reports/credits/{credit.pk}/decide/", {"decision": "rejected", "reason": ""}, follow=True)
        assert "needs a reason" in r.content.decode()
        client.post(f"/reports/credits/{credit.pk}/decide/", {"decision": "approved"})
        assert client.get("/reports/accounts/NOPE/").status_code == 404
    credit.refresh_from_db()
    assert credit.status == "approved" and credit.steps.last().actor == "fran"
    client.logout()
    assert client.get("/reports/credits/").status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_staff_page_of_a_closed_month_gives_the_frozen_files_and_says_its_figures_are_recomputed(
        acme: Account, client: Client) -> None:
    traffic(dt.date(2026, 11, 3), 1000, 10)
    with time_machine.travel(AFTER, tick=False):
        close([acme], parse_period("2026-11"), now=AFTER)
    traffic(dt.date(2026, 11, 4), 1000, 500)  # late data: the month as computed now differs from the closed one
    client.force_login(staff("rita", "view_credit", "view_account"))
    with time_machine.travel(AFTER + dt.timedelta(days=1), tick=False):
        page = client.get("/reports/accounts/ACME/?period=2026-11").content.decode()
        assert "These figures and downloads are computed now." in page
        frozen = FrozenReport.objects.get(account=acme, period="2026-11", version=1, fmt="csv")
        assert 'href="/reports/accounts/ACME/closed/2026-11/v1.csv"' in page
        r = client.get("/reports/accounts/ACME/closed/2026-11/v1.csv")
        assert r.status_code == 200 and r["Content-Disposition"] == 'attachment; filename="ACME-2026-11-v1.csv"'
        body = b"".join(r)  # type: ignore[arg-type]
        assert hashlib.sha256(body).hexdigest() == frozen.sha256
        assert client.get("/reports/accounts/ACME/?period=2026-11&output=csv").content != body  # recomputed
        for missing in ("/reports/accounts/ACME/closed/2026-11/v2.csv", "/reports/accounts/ACME/closed/2026-11/v1.doc",
                        "/reports/accounts/NOPE/closed/2026-11/v1.csv"):
            assert client.get(missing).status_code == 404, missing
    client.force_login(User.objects.create_user("nobody", "n@example.com", "pw", is_staff=True))
    assert client.get("/reports/accounts/ACME/closed/2026-11/v1.csv").status_code == 403
