"""The API and staff pages of invoices: read in each format, finalise/pay/void with the permission, 409 on an
edit of a finalised invoice; the PDF printed by the reports' WeasyPrint set-up and read back."""

from __future__ import annotations

import datetime as dt
import subprocess
from decimal import Decimal as D

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.test import APIClient

from accord.access.tokens import create as create_token
from accord.billing.models import Invoice
from accord.governance.tests.rollups import add_rollup
from accord.reports.tests.conftest import need_pdf

from .conftest import account, at, plan, run

DECEMBER = dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)


def staff(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="billing"))
    return user


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create_token(user, 'tests').secret}")
    return client


@pytest.fixture
def draft(catalog: object) -> Invoice:
    plan("""
  - name: gold
    currency: EUR
    flat_fee: 99.5
    tiers: [gold]
    prices:
      - {meter: api-calls, unit_price: 0.001}
""")
    account("ACME", catalog)  # type: ignore[arg-type]
    add_rollup(at("2026-11-05T10:00:00+00:00"), count=1234, account="ACME", service="booking")
    return run("2026-11").drafted[0]


@time_machine.travel(DECEMBER, tick=False)
def test_api_reads_and_steps_need_the_change_permission_and_a_finalised_invoice_is_not_edited(draft: Invoice) -> None:
    reader = api_as(staff("rita", "view_invoice"))
    listed = reader.get("/api/v1/billing/invoices/?period=2026-11").json()
    assert [i["total"] for i in listed["results"]] == ["100.73"]  # 99.50 + 1.234 -> 1.23
    one = reader.get(f"/api/v1/billing/invoices/{draft.pk}/").json()
    assert one["status"] == "draft" and one["number"] is None
    assert one["lines"][1] == {"description": "api-calls: 1,234 requests", "meter": "api-calls",
                               "for_period": "2026-11", "quantity": "1234", "unit_price": "0.001",
                               "amount": "1.23"}
    csv = reader.get(f"/api/v1/billing/invoices/{draft.pk}/?output=csv").content.decode()
    assert "api-calls: 1,234 requests" in csv and csv.splitlines()[-1].endswith(",total,,,,100.73,EUR")
    assert reader.post(f"/api/v1/billing/invoices/{draft.pk}/finalise/").status_code == 403
    finance = api_as(staff("fran", "view_invoice", "change_invoice"))
    added = finance.post(f"/api/v1/billing/invoices/{draft.pk}/lines/", {"description": "setup", "amount": "10"},
                         format="json")
    assert added.status_code == 200 and added.json()["total"] == "110.73"
    done = finance.post(f"/api/v1/billing/invoices/{draft.pk}/finalise/").json()
    assert done["number"] == "INV-2026-000001" and done["status"] == "finalised"
    again = finance.post(f"/api/v1/billing/invoices/{draft.pk}/finalise/")
    assert again.status_code == 409 and "only a draft can be finalised" in again.json()["error"]["message"]
    edit = finance.post(f"/api/v1/billing/invoices/{draft.pk}/lines/", {"description": "x", "amount": "1"},
                        format="json")
    assert edit.status_code == 409
    assert edit.json()["error"]["message"] == ("INV-2026-000001 is finalised: it cannot be edited; correct it with "
                                               "a credit note or on the next invoice")
    assert finance.patch(f"/api/v1/billing/invoices/{draft.pk}/", {"total": "1"}, format="json").status_code == 405
    assert finance.post(f"/api/v1/billing/invoices/{draft.pk}/pay/").json()["status"] == "paid"
    assert finance.post(f"/api/v1/billing/invoices/{draft.pk}/void/").status_code == 409
    assert Invoice.objects.get(pk=draft.pk).total == D("110.73")


@time_machine.travel(DECEMBER, tick=False)
def test_pages_list_the_month_show_an_invoice_and_finance_finalises_it(draft: Invoice, client: Client) -> None:
    client.force_login(staff("rita", "view_invoice"))
    index = client.get("/billing/?period=2026-11").content.decode()
    assert f'href="/billing/{draft.pk}/"' in index and "100.73 EUR" in index
    assert "not a month" in client.get("/billing/?period=junk").content.decode()
    page = client.get(f"/billing/{draft.pk}/").content.decode()
    assert "Invoice (draft, not numbered)" in page and "calendar month in UTC" in page and "Finalise" not in page
    assert client.post(f"/billing/{draft.pk}/step/", {"step": "finalise"}).status_code == 403
    client.force_login(staff("fran", "view_invoice", "change_invoice"))
    r = client.post(f"/billing/{draft.pk}/step/", {"step": "finalise"}, follow=True).content.decode()
    assert "Invoice INV-2026-000001" in r
    r = client.post(f"/billing/{draft.pk}/step/", {"step": "finalise"}, follow=True).content.decode()
    assert "only a draft can be finalised" in r
    csv = client.get(f"/billing/{draft.pk}/?output=csv")
    assert csv["Content-Disposition"] == 'attachment; filename="INV-2026-000001.csv"'


@time_machine.travel(DECEMBER, tick=False)
def test_the_pdf_reads_back_with_the_lines_and_total(draft: Invoice, tmp_path: object) -> None:
    binary = need_pdf()
    reader = api_as(staff("rita", "view_invoice"))
    data = reader.get(f"/api/v1/billing/invoices/{draft.pk}/?output=pdf").content
    assert data.startswith(b"%PDF")
    text = subprocess.run([binary, "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()
    assert "api-calls: 1,234" in text and "1.23 EUR" in text and "Total 100.73 EUR" in text
