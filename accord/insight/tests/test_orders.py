"""`accord import orders`: upserts by (order_id, sku), line-numbered rejections, refunds, currencies, --strict."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.customers.models import Account
from accord.insight.models import ExchangeRate, OrderLine
from accord.insight.orders import CurrencyError, import_orders, orders

pytestmark = pytest.mark.django_db

HEADER = "order_id,account,ordered_at,amount,currency,sku,quantity\n"


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return (header + "".join(line + "\n" for line in lines)).encode()


@pytest.fixture
def accounts() -> tuple[Account, Account]:
    return (Account.objects.create(name="Acme", external_id="A1", timezone="Europe/Paris"),
            Account.objects.create(name="Bolt", external_id="B2", timezone="America/New_York"))


def run_import(tmp_path: Path, data: bytes, *args: str) -> tuple[str, str, int]:
    path = tmp_path / "orders.csv"
    path.write_bytes(data)
    out, err = StringIO(), StringIO()
    try:
        call_command("import", "orders", str(path), *args, stdout=out, stderr=err)
        code = 0
    except CommandError as e:
        err.write(str(e))
        code = e.returncode
    return out.getvalue(), err.getvalue(), code


def test_it_imports_order_lines_then_updates_them_by_order_and_sku(tmp_path: Path, accounts: tuple[Account, Account]) -> None:
    out, err, code = run_import(tmp_path, csv_bytes(
        "O1,A1,2026-03-01,100.00,EUR,FL-1,2", "O1,A1,2026-03-01,50.00,EUR,HT-1,1", "O2,B2,2026-03-02T23:30:00,20,,,"))
    assert (code, err) == (0, "")
    assert out.strip().endswith("imported 3, updated 0, rejected 0 (unchanged 0)")
    line = OrderLine.objects.get(order_id="O1", sku="FL-1")
    # A date is midnight in the account's zone; a date-time without offset too.
    assert line.ordered_at == dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC)
    assert line.ordered_on == dt.date(2026, 3, 1) and line.quantity == 2
    late = OrderLine.objects.get(order_id="O2")
    assert late.ordered_on == dt.date(2026, 3, 2) and late.currency == "EUR" and late.quantity == 1
    out, err, code = run_import(tmp_path, csv_bytes(
        "O1,A1,2026-03-01,120.00,EUR,FL-1,2", "O1,A1,2026-03-01,50.00,EUR,HT-1,1"))
    assert out.strip().endswith("imported 0, updated 1, rejected 0 (unchanged 1)")
    assert OrderLine.objects.get(order_id="O1", sku="FL-1").amount == Decimal("120.00")
    assert OrderLine.objects.count() == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("O9,NOPE,2026-03-01,10,,,", "account 'NOPE' is not an account"),
        ("O9,A1,01/03/2026,10,,,", "ordered_at '01/03/2026' is not an ISO date"),
        ("O9,A1,2026-02-30,10,,,", "ordered_at '2026-02-30' is not an ISO date"),
        ("O9,A1,2026-03-01,ten,,,", "amount 'ten' is not a number"),
        ("O9,A1,2026-03-01,1.234,,,", "amount '1.234' has more than 2 decimals"),
        ("O9,A1,2026-03-01,-10,,,", "negative amount -10.00 where there is nothing to refund"),
        ("O9,A1,2026-03-01,-10,,,3", "amount -10.00 is negative but quantity 3 is not: a refund line has a quantity"),
        ("O9,A1,2026-03-01,10,euro,,", "currency 'euro' is not a currency code like EUR"),
        ("O9,A1,2026-03-01,10,,,two", "quantity 'two' is not a whole number"),
        (",A1,2026-03-01,10,,,", "order_id is required"),
        ("O9,A1,2026-03-01", "expected 7 fields, found 3"),
    ],
)
def test_a_bad_row_is_rejected_with_its_line_and_reason(tmp_path: Path, accounts: tuple[Account, Account], line: str,
                                                        reason: str) -> None:
    out, err, code = run_import(tmp_path, csv_bytes("OK1,A1,2026-03-01,10,,,", line))
    assert code == 1
    assert f"orders.csv:3: rejected: {reason}" in err
    assert "imported 1, updated 0, rejected 1" in out
    assert OrderLine.objects.filter(order_id="OK1").exists()


def test_a_refund_nets_against_its_order_and_may_not_exceed_it(tmp_path: Path, accounts: tuple[Account, Account]) -> None:
    _out, err, code = run_import(tmp_path, csv_bytes(
        "O1,A1,2026-03-01,100,,FL-1,1", "O1,A1,2026-03-05,-40,,FL-1:refund,-1",
        "O2,A1,2026-03-02,30,,FL-2,1", "O2,A1,2026-03-06,-31,,FL-2:refund,0",
        "O3,A1,2026-03-03,25,,FL-3,1", "O3,A1,2026-03-07,-25,,FL-3:refund,-1"))
    assert code == 1
    assert "orders.csv:5: rejected: refunds of 31.00 exceed order 'O2''s value of 30.00" in err
    found = {o.order_id: o for o in orders()}
    assert found["O1"].value == Decimal("60.00") and found["O1"].day == dt.date(2026, 3, 1)
    assert "O3" not in found  # refunded in full: no purchase
    # A refund of a stored order, in a later file, is accepted too.
    _out, err, code = run_import(tmp_path, csv_bytes("O2,A1,2026-03-06,-10,,FL-2:refund,0"))
    assert code == 0 and {o.order_id: o.value for o in orders()}["O2"] == Decimal("20.00")


def test_one_order_has_one_account_and_one_currency(tmp_path: Path, accounts: tuple[Account, Account]) -> None:
    run_import(tmp_path, csv_bytes("O1,A1,2026-03-01,100,EUR,FL-1,1"))
    _out, err, code = run_import(tmp_path, csv_bytes("O1,B2,2026-03-01,10,EUR,HT-1,1", "O1,A1,2026-03-01,10,USD,CAR,1",
                                                    "O1,A1,2026-03-01,10,,FL-1,1", "O1,A1,2026-03-01,10,,FL-1,1"))
    assert "orders.csv:2: rejected: order 'O1' belongs to another account (already stored)" in err
    assert "orders.csv:3: rejected: order 'O1' is in EUR (already stored); this line is in USD" in err
    assert "orders.csv:5: rejected: order 'O1' has sku 'FL-1' twice (first on line 4)" in err
    assert code == 1


def test_strict_exits_2_and_changes_nothing(tmp_path: Path, accounts: tuple[Account, Account]) -> None:
    run_import(tmp_path, csv_bytes("O1,A1,2026-03-01,100,,FL-1,1"))
    _out, err, code = run_import(tmp_path, csv_bytes("O1,A1,2026-03-01,999,,FL-1,1", "O2,NOPE,2026-03-01,5,,,"),
                                "--strict")
    assert code == 2
    assert "orders.csv:3: rejected: account 'NOPE'" in err and "nothing was imported" in err
    assert OrderLine.objects.get().amount == Decimal("100.00")


def test_it_reads_files_like_the_account_import(tmp_path: Path, accounts: tuple[Account, Account]) -> None:
    # UTF-16 with a byte-order mark, and a formula-escaped sku, through the shared reading helpers.
    data = (HEADER + "O1,A1,2026-03-01,10,,'=SUM(1),1\n").encode("utf-16")
    _out, err, code = run_import(tmp_path, data)
    assert code == 0, err
    assert OrderLine.objects.get().sku == "=SUM(1)"
    _out, err, code = run_import(tmp_path, b"order_id,account\nO1,A1\n")
    assert code == 2 and "missing required column(s): ordered_at, amount" in err


def test_currencies_are_converted_by_the_rate_table_or_refused(accounts: tuple[Account, Account]) -> None:
    import_orders(csv_bytes("O1,A1,2026-03-01,100,EUR,,", "O2,B2,2026-03-01,100,USD,,", "O3,B2,2026-03-02,50,USD,,"))
    with pytest.raises(CurrencyError, match=r"no exchange rate to EUR for USD \(2 orders\)"):
        orders()
    ExchangeRate.objects.create(currency="USD", rate=Decimal("0.9"))
    assert sorted(o.value for o in orders()) == [Decimal("45.00"), Decimal("90.00"), Decimal("100.00")]
