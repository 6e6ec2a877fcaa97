"""The portal's invoices page: the account's finalised invoices and credit notes only (no drafts, nobody
else's), each as CSV and PDF."""

from __future__ import annotations

import datetime as dt

import time_machine

from accord.billing.actions import do_finalise, do_run
from accord.billing.models import Invoice
from accord.customers.models import Account
from accord.lib.manifest import apply_manifest
from accord.portal.tests.conftest import Org, signed_in


def test_a_customer_sees_its_own_finalised_invoices_only(orgs: tuple[Org, Org]) -> None:
    alpha, beta = orgs
    apply_manifest("plans:\n  - {name: flat, currency: EUR, flat_fee: 123.45, tiers: [gold]}\n")
    with time_machine.travel(dt.datetime(2026, 12, 2, tzinfo=dt.UTC), tick=False):
        drafted = {i.account_id: i for i in do_run("2026-11", Account.objects.filter(pk__in=[alpha.account.pk,
                                                                                        beta.account.pk])).drafted}
        do_finalise(drafted[beta.account.pk].pk)
    client = signed_in(beta.user)
    page = client.get("/portal/invoices/").content.decode()
    assert "INV-2026-000001" in page and "123.45 EUR" in page
    csv = client.get(f"/portal/invoices/{drafted[beta.account.pk].pk}/csv/")
    assert csv.status_code == 200 and csv["Content-Disposition"] == 'attachment; filename="INV-2026-000001.csv"'
    other = signed_in(alpha.user)
    assert "No invoices yet." in other.get("/portal/invoices/").content.decode()  # its draft is not shown
    assert other.get(f"/portal/invoices/{drafted[alpha.account.pk].pk}/csv/").status_code == 404  # a draft
    assert other.get(f"/portal/invoices/{drafted[beta.account.pk].pk}/csv/").status_code == 404  # not its own
    assert Invoice.objects.filter(status="finalised").count() == 1
