"""CSV import and export: upserts, line-numbered rejections, strict mode, bad files, round trip."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from accord.customers.csvio import (
    CsvFileError,
    export_accounts,
    export_contacts,
    import_accounts,
    import_contacts,
)
from accord.customers.models import Account, Contact, ContactPoint
from accord.lib.testing import accord_command, subprocess_env

pytestmark = pytest.mark.django_db

HEADER = "external_id,name,kind,timezone,revenue_12m,cost_to_serve_12m,owner\n"


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return (header + "".join(line + "\n" for line in lines)).encode()


def test_it_creates_then_updates_by_external_id() -> None:
    User.objects.create_user("maria")
    first = import_accounts(csv_bytes("A1,Acme Travel,organisation,Europe/Paris,1200000.50,300000,maria", "A2,Bob,person,,,,"))
    assert first.summary() == "imported 2, updated 0, rejected 0 (unchanged 0)"
    acme = Account.objects.get(external_id="A1")
    assert (acme.name, acme.timezone, acme.revenue_12m, acme.owner.username) == (  # type: ignore[union-attr]
        "Acme Travel", "Europe/Paris", Decimal("1200000.50"), "maria",
    )
    assert Account.objects.get(external_id="A2").timezone == "UTC"
    second = import_accounts(csv_bytes("A1,Acme Travel SA,organisation,Europe/Paris,1200000.50,300000,maria", "A2,Bob,person,,,,"))
    assert second.summary() == "imported 0, updated 1, rejected 0 (unchanged 1)"
    acme.refresh_from_db()
    assert acme.name == "Acme Travel SA" and Account.objects.count() == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (",No id,,,,,", "external_id is required"),
        ("X1,,,,,,", "name is required"),
        ("X1,Name,company,,,,", "kind 'company' must be one of organisation, person"),
        ("X1,Name,,Mars/Olympus,,,", "timezone 'Mars/Olympus' is not an IANA time zone"),
        ("X1,Name,,,12abc,,", "revenue_12m '12abc' is not a number"),
        ("X1,Name,,,-5,,", "revenue_12m '-5' must be a non-negative amount"),
        ("X1,Name,,,1.234,,", "revenue_12m '1.234' has more than 2 decimals"),
        ("X1,Name,,,,NaN,", "cost_to_serve_12m 'NaN' must be a non-negative amount"),
        ("X1,Name,,,,,nobody", "owner 'nobody' is not a user"),
        ("X1,Name,organisation", "expected 7 fields, found 3"),
        ("X1," + "n" * 201 + ",,,,,", "name is 201 characters long; at most 200"),
    ],
)
def test_each_bad_row_is_rejected_with_its_line_and_reason(line: str, reason: str) -> None:
    report = import_accounts(csv_bytes("G1,Good,,,,,", line, "G2,Good too,,,,,"))
    assert len(report.rejected) == 1
    assert report.rejected[0][0] == 3
    assert report.rejected[0][1].startswith(reason)
    assert set(Account.objects.values_list("external_id", flat=True)) == {"G1", "G2"}


def test_duplicate_ids_in_the_file_are_rejected_naming_the_first_line() -> None:
    report = import_accounts(csv_bytes("D1,First,,,,,", "D2,Other,,,,,", "D1,Second,,,,,"))
    assert report.rejected == [(4, "duplicate external_id 'D1' (first on line 2)")]
    assert Account.objects.get(external_id="D1").name == "First"


def test_line_numbers_count_quoted_fields_that_span_lines() -> None:
    report = import_accounts(csv_bytes('M1,"Multi\nLine\nName",,,,,', "M2,Fine,,,,,", "M3,,,,,,"))
    assert report.rejected == [(6, "name is required")]
    assert Account.objects.get(external_id="M1").name == "Multi\nLine\nName"


def test_strict_imports_nothing_when_a_row_is_rejected() -> None:
    report = import_accounts(csv_bytes("S1,Fine,,,,,", "S2,Bad,,Nowhere/Zone,,,"), strict=True)
    assert not report.written and report.rejected[0][0] == 3
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"name,kind\nAcme,person\n", "line 1: missing required column(s): external_id"),
        (b"external_id,name,colour\n1,a,red\n", "line 1: unknown column(s): 'colour'"),
        (b"external_id,name,name\n1,a,b\n", "line 1: column 'name' appears twice"),
        (HEADER.encode() + b"E1,Caf\xe9 Paris,,,,,\n", "line 2: byte 0xe9 is not valid utf-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1: byte 0x89 is not valid utf-8"),
        (b"external_id,name\n1,a\x00b\n", "line 2: the file contains NUL characters"),
    ],
)
def test_a_file_that_cannot_be_read_imports_nothing(data: bytes, message: str) -> None:
    with pytest.raises(CsvFileError) as err:
        import_accounts(data)
    assert str(err.value).startswith(message), str(err.value)
    assert not Account.objects.exists()


def test_a_header_only_file_is_fine_and_a_bom_is_accepted() -> None:
    assert import_accounts(HEADER.encode()).summary().startswith("imported 0, updated 0, rejected 0")
    report = import_accounts(b"\xef\xbb\xbf" + csv_bytes("B1,Bom été,,,,,"))
    assert report.created == 1 and Account.objects.get().name == "Bom été"


def test_another_encoding_can_be_named() -> None:
    report = import_accounts(HEADER.encode() + "E1,Café Paris,,,,,\n".encode("cp1252"), encoding="cp1252")
    assert report.created == 1 and Account.objects.get().name == "Café Paris"


def test_accounts_round_trip_through_export_unchanged() -> None:
    User.objects.create_user("li")
    original = csv_bytes('R1,"Comma, Inc",organisation,Asia/Tokyo,10.50,2.00,li,JP,travel,true,120,',
                         'R2,"Quote ""Q""",person,UTC,0.00,0.00,,,,false,,2.5',
                         header=HEADER.strip() + ",country,custom.industry,custom.key_account,custom.seats,custom.zscore\n")
    import_accounts(original)
    assert Account.objects.get(external_id="R1").custom_fields == {"industry": "travel", "key_account": True, "seats": 120}
    assert Account.objects.get(external_id="R2").custom_fields == {"key_account": False, "zscore": 2.5}
    out = StringIO()
    assert export_accounts(out) == 2
    assert out.getvalue().encode() == original
    again = import_accounts(out.getvalue().encode())
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)


def test_country_and_custom_columns_are_read_checked_and_kept_when_absent() -> None:
    header = HEADER.strip() + ",country,custom.industry,custom.size\n"
    report = import_accounts(csv_bytes("A1,Acme,,,,,,de,travel,12", "A2,Bad,,,,,,XX,,", "A3,Bad,,,,,,uk,,",
                                       "A4,Ok,,,,,,,,", header=header))
    assert report.rejected == [(3, "country 'XX' is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR, GB, US)"),
                               (4, "country 'UK' is not an ISO 3166-1 code: the United Kingdom is 'GB'")]
    acme = Account.objects.get(external_id="A1")
    assert (acme.country, acme.custom_fields) == ("DE", {"industry": "travel", "size": 12})  # upper-cased on import
    assert Account.objects.get(external_id="A4").custom_fields == {}
    # a file without the country column or a custom column keeps what is stored; an empty cell removes the key
    again = import_accounts(csv_bytes("A1,Acme,,,,,", "A4,Ok,,,,,"))
    assert (again.updated, again.unchanged) == (0, 2)
    assert Account.objects.get(external_id="A1").country == "DE"
    import_accounts(csv_bytes("A1,Acme,,,,,,", header=HEADER.strip() + ",custom.size\n"))
    acme.refresh_from_db()
    assert (acme.country, acme.custom_fields) == ("DE", {"industry": "travel"})
    with pytest.raises(CsvFileError, match=r"'custom.9lives'.*a custom field key is a letter"):
        import_accounts(csv_bytes("A1,Acme,,,,,,1", header=HEADER.strip() + ",custom.9lives\n"))
    with pytest.raises(CsvFileError, match=r"unknown column\(s\): 'colour'; known columns are .*, custom.<key>"):
        import_accounts(csv_bytes("A1,Acme,,,,,,1", header=HEADER.strip() + ",colour\n"))
    too_long = import_accounts(csv_bytes("A1,Acme,,,,,," + "x" * 501, header=HEADER.strip() + ",custom.note\n"))
    assert too_long.rejected == [(2, "custom.note is 501 characters long; at most 500")]


def test_contact_custom_fields_round_trip_and_empty_cells_remove_keys() -> None:
    header = CONTACT_HEADER.strip() + ",custom.language,custom.vip\n"
    original = csv_bytes("C1,Ada,,,,,de,true", "C2,Bo,,,,,,", header=header)
    import_contacts(original)
    assert Contact.objects.get(external_id="C1").custom_fields == {"language": "de", "vip": True}
    assert Contact.objects.get(external_id="C2").custom_fields == {}
    out = StringIO()
    export_contacts(out)
    assert out.getvalue().encode() == original
    import_contacts(csv_bytes("C1,Ada,,,,,", header=CONTACT_HEADER.strip() + ",custom.vip\n"))
    assert Contact.objects.get(external_id="C1").custom_fields == {"language": "de"}


def test_five_thousand_rows_import_in_one_go() -> None:
    lines = [f"K{i},Company {i},organisation,Europe/London,{i * 10}.00,{i}.00," for i in range(5000)]
    report = import_accounts(csv_bytes(*lines))
    assert report.created == 5000 and Account.objects.count() == 5000
    lines[10] = "K10,Renamed,organisation,Europe/London,100.00,10.00,"
    report = import_accounts(csv_bytes(*lines))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 4999)


CONTACT_HEADER = "external_id,name,account_external_id,title,emails,phones\n"


def test_contacts_import_with_several_addresses_and_phones() -> None:
    Account.objects.create(name="Acme", external_id="A1")
    report = import_contacts(
        csv_bytes(
            "C1,Ada,A1,CTO,Ada@Acme.example; ada.l@acme.example,+44 20 7946 0000;(020) 7946-0001",
            "C2,Loose,,,,",
            header=CONTACT_HEADER,
        )
    )
    assert report.created == 2 and not report.rejected
    ada = Contact.objects.get(external_id="C1")
    assert ada.account.external_id == "A1"  # type: ignore[union-attr]
    assert ada.emails == ["ada@acme.example", "ada.l@acme.example"]
    assert ada.phones == ["+442079460000", "02079460001"]
    report = import_contacts(csv_bytes("C1,Ada,A1,CTO,ada@acme.example,", header=CONTACT_HEADER))
    assert report.updated == 1 and Contact.objects.get(external_id="C1").emails == ["ada@acme.example"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("C9,Bad,NOPE,,,", "account_external_id 'NOPE' is not an account"),
        ("C9,Bad,,,not-an-email,", "'not-an-email' is not an e-mail address"),
        ("C9,Bad,,,,call me", "'call me' is not a phone number"),
        ("C9,Bad,,,taken@acme.example,", "email 'taken@acme.example' is already given to contact 'C1' on line 2"),
    ],
)
def test_bad_contact_rows_are_rejected(line: str, reason: str) -> None:
    report = import_contacts(csv_bytes("C1,Owner,,,taken@acme.example,", line, header=CONTACT_HEADER))
    assert report.rejected == [(3, reason)]
    assert Contact.objects.count() == 1


def test_an_address_stored_for_another_contact_is_a_row_error() -> None:
    other = Contact.objects.create(name="Existing", external_id="OLD")
    ContactPoint.objects.create(contact=other, kind="email", value="shared@acme.example")
    report = import_contacts(csv_bytes("C1,New,,,shared@acme.example,", header=CONTACT_HEADER))
    assert report.rejected == [(2, "email 'shared@acme.example' belongs to another contact (OLD)")]
    assert not Contact.objects.filter(external_id="C1").exists()


def test_contacts_round_trip_through_export_unchanged() -> None:
    Account.objects.create(name="Acme", external_id="A1")
    original = csv_bytes("C1,Ada,A1,CTO,ada@acme.example;a2@acme.example,+441;+442", "C2,Bo,,,,", header=CONTACT_HEADER)
    original = original.replace(b"+441;+442", b"+4411111;+4422222")
    import_contacts(original)
    out = StringIO()
    assert export_contacts(out) == 2
    # The phones cell starts with '+', which spreadsheets run as a formula: it is exported behind an apostrophe.
    assert out.getvalue().encode() == original.replace(b",+4411111;", b",'+4411111;")
    again = import_contacts(out.getvalue().encode())
    assert (again.created, again.updated) == (0, 0)
    assert sorted(ContactPoint.objects.filter(kind="phone").values_list("value", flat=True)) == ["+4411111", "+4422222"]


@pytest.mark.parametrize("name", ["=cmd|' /C calc'!A0", "+SUM(A1:A2)", "-2+3", "@SUM(1)", "=HYPERLINK(\"x\")"])
def test_a_name_a_spreadsheet_would_run_is_exported_as_text_and_imported_back_unchanged(name: str) -> None:
    Account.objects.create(name=name, external_id="X1")
    out = StringIO()
    export_accounts(out)
    cell = out.getvalue().splitlines()[1].split(",", 1)[1]
    assert cell.lstrip('"').startswith("'"), cell  # an apostrophe first: text, never a formula
    Account.objects.all().delete()
    import_accounts(out.getvalue().encode())
    assert Account.objects.get(external_id="X1").name == name
    out2 = StringIO()
    export_accounts(out2)
    assert out2.getvalue() == out.getvalue()


def test_numbers_are_not_escaped() -> None:
    from accord.customers.csvio import escape_cell

    assert escape_cell("-12.50") == "-12.50" and escape_cell("0.00") == "0.00"
    assert escape_cell("-x") == "'-x" and escape_cell("Acme") == "Acme"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_imports_when_its_encoding_is_named(encoding: str) -> None:
    data = csv_bytes("U1,Ünïcode GmbH,,,,,").decode().encode(encoding)
    assert import_accounts(data, encoding=encoding).created == 1
    assert Account.objects.get().name == "Ünïcode GmbH"


def test_a_utf16_file_with_a_byte_order_mark_needs_no_encoding() -> None:
    data = csv_bytes("U2,Ørsted A/S,,,,,").decode().encode("utf-16")
    assert import_accounts(data).created == 1 and Account.objects.get().name == "Ørsted A/S"


def test_the_command_reports_rows_and_ends_with_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_bytes(csv_bytes("A1,Fine,,,,,", "A2,Bad,,Nowhere/Zone,,,"))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import", "accounts", str(path), stdout=out, stderr=err)
    assert exc.value.returncode == 1
    assert f"{path}:3: rejected: timezone 'Nowhere/Zone'" in err.getvalue()
    assert out.getvalue().strip() == "imported 1, updated 0, rejected 1 (unchanged 0)"


@pytest.mark.django_db(transaction=True)
def test_the_real_command_exits_2_in_strict_mode_and_on_unreadable_files(tmp_path: Path) -> None:
    env = subprocess_env()
    path = tmp_path / "accounts.csv"
    path.write_bytes(csv_bytes("A1,Fine,,,,,", "A2,,,,,,"))
    strict = subprocess.run([*accord_command(), "import", "accounts", str(path), "--strict"], env=env, capture_output=True, text=True)
    assert strict.returncode == 2
    assert "imported 0, updated 0, rejected 1" in strict.stdout and ":3: rejected: name is required" in strict.stderr
    assert not Account.objects.exists()
    missing = subprocess.run([*accord_command(), "import", "accounts", str(tmp_path / "nope.csv")], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "No such file" in missing.stderr
    ok = subprocess.run([*accord_command(), "import", "accounts", str(path)], env=env, capture_output=True, text=True)
    assert ok.returncode == 1 and ok.stdout.strip().startswith("imported 1, updated 0, rejected 1")
    exported = subprocess.run([*accord_command(), "export", "accounts", "-"], env=env, capture_output=True, text=True)
    assert exported.returncode == 0 and exported.stdout.splitlines()[1].startswith("A1,Fine,organisation,UTC")
