"""CSV import and export of accounts and contacts (docs/csv.md).

Imports upsert by external id in one transaction, validate every row with plain Python (no per-row queries),
report each rejected row with its line number in the file, and write in batches, so 100,000 rows take seconds.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accord.lib import countries
from accord.lib.csvio import (  # the shared reading helpers; re-exported for the callers that know them here
    FORMULA_STARTS,
    CsvFileError,
    ImportReport,
    RowError,
    decode,
    escape_cell,
    progress_bar,
    rows,
    unescape_cell,
)
from accord.lib.db import bulk_update_rows

from .models import CUSTOM_KEY, CUSTOM_MAX_TEXT, Account, Contact, ContactPoint, _zones

BATCH = 1000
CHUNK = 900  # SQLite binds at most 999 parameters per query

ACCOUNT_COLUMNS = ["external_id", "name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner", "country"]
ACCOUNT_REQUIRED = {"external_id", "name"}
CONTACT_COLUMNS = ["external_id", "name", "account_external_id", "title", "emails", "phones"]
CONTACT_REQUIRED = {"external_id", "name"}
MAX_LEN = {"external_id": 100, "name": 200, "title": 200, "timezone": 64, "owner": 150}
CUSTOM = "custom."  # a column `custom.<key>` holds the custom field <key>; an empty cell removes it
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_REMOVE: Any = object()  # an empty custom cell: the key goes


def _custom_columns(all_rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    """The custom field keys of the file's `custom.<key>` columns; a key that cannot be one refuses the file."""
    keys = sorted({k[len(CUSTOM):] for _l, r in all_rows for k in r if k.startswith(CUSTOM)})
    bad = [k for k in keys if not CUSTOM_KEY.fullmatch(k)]
    if bad:
        raise CsvFileError(f"line 1: column(s) {', '.join(repr(CUSTOM + k) for k in bad)}: a custom field key is a "
                           "letter, then letters, digits or _ (at most 60)")
    return keys


def _custom_value(row: dict[str, str], key: str) -> Any:
    """A custom cell as stored: true/false as booleans, numbers as numbers, other text as text; empty: removed."""
    raw = row.get(CUSTOM + key, "")
    if raw == "":
        return _REMOVE
    return custom_value(raw, f"{CUSTOM}{key}")


def custom_value(raw: str, name: str) -> Any:
    """Text as a custom field's value (a CSV cell, a line of the staff form): `true`/`false` as booleans, numbers as
    numbers, other text as text. RowError names `name`."""
    if raw in ("true", "false"):
        return raw == "true"
    if _NUMBER.fullmatch(raw):
        if any(ch in raw for ch in ".eE"):
            value = float(raw)
            if value in (float("inf"), float("-inf")):
                raise RowError(f"{name} '{raw}' is too large a number")
            return value
        return int(raw)
    if len(raw) > CUSTOM_MAX_TEXT:
        raise RowError(f"{name} is {len(raw)} characters long; at most {CUSTOM_MAX_TEXT}")
    return raw


def _custom_updates(row: dict[str, str], keys: list[str]) -> dict[str, Any]:
    return {key: _custom_value(row, key) for key in keys}


def _apply_custom(current: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """The stored custom fields with a row's cells applied: keys without a column stay as they were."""
    out = dict(current or {})
    for key, value in updates.items():
        if value is _REMOVE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def custom_cell(value: Any) -> str:
    """A custom field's value as a cell that imports back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _country(row: dict[str, str]) -> str:
    raw = row.get("country", "").strip()
    code = raw.upper()
    if code and (why := countries.problem(code)):
        raise RowError(f"country {why}")
    return code


def _text(row: dict[str, str], name: str, required: bool = False) -> str:
    value = row.get(name, "")
    if required and not value:
        raise RowError(f"{name} is required")
    limit = MAX_LEN.get(name)
    if limit and len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; at most {limit}")
    return value


def _money(row: dict[str, str], name: str) -> Decimal:
    raw = row.get(name, "").replace(",", "").replace("_", "")
    if not raw:
        return Decimal(0)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RowError(f"{name} '{row[name]}' is not a number") from None
    if not value.is_finite() or value < 0:
        raise RowError(f"{name} '{row[name]}' must be a non-negative amount")
    if value != value.quantize(Decimal("0.01")):
        raise RowError(f"{name} '{row[name]}' has more than 2 decimals")
    if value >= Decimal("1e12"):
        raise RowError(f"{name} '{row[name]}' is too large")
    return value.quantize(Decimal("0.01"))


# -- accounts ---------------------------------------------------------------------------------------------


AccountValues = tuple[str, str, str, Decimal, Decimal, int | None, str, dict[str, Any]]


def import_accounts(data: bytes, *, strict: bool = False, encoding: str = "utf-8", progress: bool = False) -> ImportReport:
    """Upsert accounts by external id; see docs/csv.md for the columns."""
    text = decode(data, encoding)
    report = ImportReport()
    users = {u.lower(): pk for pk, u in get_user_model().objects.values_list("pk", "username")}
    zones = _zones()
    kinds = set(Account.Kind.values)
    parsed: dict[str, tuple[int, AccountValues]] = {}
    all_rows = list(rows(text, ACCOUNT_COLUMNS, ACCOUNT_REQUIRED, prefixes=(CUSTOM,)))
    custom_keys = _custom_columns(all_rows)
    has_country = any("country" in r for _l, r in all_rows)
    bar = progress_bar(len(all_rows) * 2, progress)
    for line, row in all_rows:
        bar.update()
        try:
            if "__error__" in row:
                raise RowError(row["__error__"])
            ext = _text(row, "external_id", required=True)
            name = _text(row, "name", required=True)
            kind = (row.get("kind") or "organisation").lower()
            if kind not in kinds:
                raise RowError(f"kind '{row['kind']}' must be one of {', '.join(sorted(kinds))}")
            tz = _text(row, "timezone") or "UTC"
            if tz not in zones:
                raise RowError(f"timezone '{tz}' is not an IANA time zone (e.g. Europe/London)")
            owner_name = _text(row, "owner")
            owner = None
            if owner_name:
                owner = users.get(owner_name.lower())
                if owner is None:
                    raise RowError(f"owner '{owner_name}' is not a user")
            values = (name, kind, tz, _money(row, "revenue_12m"), _money(row, "cost_to_serve_12m"), owner,
                      _country(row), _custom_updates(row, custom_keys))
            if ext in parsed:
                raise RowError(f"duplicate external_id '{ext}' (first on line {parsed[ext][0]})")
        except RowError as e:
            report.rejected.append((line, str(e)))
            continue
        parsed[ext] = (line, values)
    if report.refused(strict, roll_back=False):  # nothing written yet
        bar.close()
        return report

    with transaction.atomic():
        existing: dict[str, Account] = {}
        keys = list(parsed)
        for i in range(0, len(keys), CHUNK):
            for acct in Account.objects.filter(external_id__in=keys[i : i + CHUNK]).only(
                "id", "external_id", "name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner_id",
                "country", "custom_fields",
            ):
                existing[acct.external_id or ""] = acct
        create: list[Account] = []
        update: list[Account] = []
        for ext, (_line, (name, kind, tz, revenue, cost, owner, country, custom)) in parsed.items():
            bar.update()
            found = existing.get(ext)
            if found is None:
                create.append(
                    Account(external_id=ext, name=name, kind=kind, timezone=tz, revenue_12m=revenue,
                            cost_to_serve_12m=cost, owner_id=owner, country=country,
                            custom_fields=_apply_custom({}, custom))
                )
                continue
            acct = found
            if not has_country:  # a file without the column keeps the stored countries
                country = acct.country
            fields = _apply_custom(acct.custom_fields, custom)
            current = (acct.name, acct.kind, acct.timezone, acct.revenue_12m, acct.cost_to_serve_12m, acct.owner_id,
                       acct.country, acct.custom_fields)
            if current == (name, kind, tz, revenue, cost, owner, country, fields):
                report.unchanged += 1
                continue
            acct.name, acct.kind, acct.timezone = name, kind, tz
            acct.revenue_12m, acct.cost_to_serve_12m, acct.owner_id = revenue, cost, owner
            acct.country, acct.custom_fields = country, fields
            update.append(acct)
        Account.objects.bulk_create(create, batch_size=BATCH)
        now = timezone.now()
        bulk_update_rows(
            Account,
            ["name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner", "country", "custom_fields",
             "updated_at"],
            [(a.name, a.kind, a.timezone, a.revenue_12m, a.cost_to_serve_12m, a.owner_id, a.country, a.custom_fields,
              now, a.pk) for a in update],
        )
        report.created, report.updated = len(create), len(update)
    bar.close()
    return report


def _keys_in_use(model: type[Account] | type[Contact]) -> list[str]:
    keys: set[str] = set()
    for fields in model.objects.exclude(custom_fields={}).values_list("custom_fields", flat=True).iterator(
            chunk_size=2000):
        keys.update(fields or {})
    return sorted(keys)


def export_accounts(out: TextIO) -> int:
    """All accounts as CSV in the import's columns, then a `custom.<key>` column for every custom field key in
    use; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    keys = _keys_in_use(Account)
    writer.writerow(ACCOUNT_COLUMNS + [CUSTOM + k for k in keys])
    count = 0
    qs = Account.objects.order_by("external_id", "id").select_related("owner").values_list(
        "external_id", "name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner__username", "country",
        "custom_fields",
    )
    for ext, name, kind, tz, revenue, cost, owner, country, custom in qs.iterator(chunk_size=2000):
        custom = custom or {}
        writer.writerow([escape_cell(v) for v in (ext or "", name, kind, tz, f"{revenue:.2f}", f"{cost:.2f}",
                                                  owner or "", country,
                                                  *(custom_cell(custom[k]) if k in custom else "" for k in keys))])
        count += 1
    return count


# -- contacts ---------------------------------------------------------------------------------------------


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


def _emails(row: dict[str, str]) -> list[str]:
    out = []
    for raw in _split(row.get("emails", "")):
        email = raw.lower()
        try:
            validate_email(email)
        except ValidationError:
            raise RowError(f"'{raw}' is not an e-mail address") from None
        if email not in out:
            out.append(email)
    return out


def _phones(row: dict[str, str]) -> list[str]:
    out = []
    for raw in _split(row.get("phones", "")):
        digits = "".join(ch for ch in raw if ch.isdigit())
        if not (5 <= len(digits) <= 17) or any(ch.isalpha() for ch in raw):
            raise RowError(f"'{raw}' is not a phone number")
        phone = ("+" if raw.startswith("+") else "") + digits
        if phone not in out:
            out.append(phone)
    return out


ContactValues = tuple[str, str, int | None, list[str], list[str], dict[str, Any]]


def _points(contact: Contact, wanted: list[tuple[str, str]]) -> list[ContactPoint]:
    """ContactPoint rows in file order; the first address and the first phone are primary."""
    seen_kinds: set[str] = set()
    out = []
    for kind, value in wanted:
        out.append(ContactPoint(contact=contact, kind=kind, value=value, primary=kind not in seen_kinds))
        seen_kinds.add(kind)
    return out


def import_contacts(data: bytes, *, strict: bool = False, encoding: str = "utf-8", progress: bool = False) -> ImportReport:
    """Upsert contacts with their e-mail addresses and phones by external id."""
    text = decode(data, encoding)
    report = ImportReport()
    all_rows = list(rows(text, CONTACT_COLUMNS, CONTACT_REQUIRED, prefixes=(CUSTOM,)))
    custom_keys = _custom_columns(all_rows)
    bar = progress_bar(len(all_rows), progress)
    account_ids = {r.get("account_external_id", "") for _l, r in all_rows} - {""}
    accounts: dict[str, int] = {}
    wanted = list(account_ids)
    for i in range(0, len(wanted), CHUNK):
        for ext_id, pk in Account.objects.filter(external_id__in=wanted[i : i + CHUNK]).values_list("external_id", "pk"):
            accounts[ext_id or ""] = pk
    parsed: dict[str, tuple[int, ContactValues]] = {}
    claimed: dict[tuple[str, str], tuple[str, int]] = {}  # (kind, value) -> (contact external id, line)
    for line, row in all_rows:
        bar.update()
        try:
            if "__error__" in row:
                raise RowError(row["__error__"])
            ext = _text(row, "external_id", required=True)
            name = _text(row, "name", required=True)
            account_ext = row.get("account_external_id", "")
            account = None
            if account_ext:
                account = accounts.get(account_ext)
                if account is None:
                    raise RowError(f"account_external_id '{account_ext}' is not an account")
            values = (name, _text(row, "title"), account, _emails(row), _phones(row), _custom_updates(row, custom_keys))
            if ext in parsed:
                raise RowError(f"duplicate external_id '{ext}' (first on line {parsed[ext][0]})")
            for kind, items in (("email", values[3]), ("phone", values[4])):
                for item in items:
                    other = claimed.get((kind, item))
                    if other and other[0] != ext:
                        raise RowError(f"{kind} '{item}' is already given to contact '{other[0]}' on line {other[1]}")
        except RowError as e:
            report.rejected.append((line, str(e)))
            continue
        for kind, items in (("email", values[3]), ("phone", values[4])):
            for item in items:
                claimed[(kind, item)] = (ext, line)
        parsed[ext] = (line, values)

    with transaction.atomic():
        existing: dict[str | None, Contact] = {}
        keys = list(parsed)
        for i in range(0, len(keys), CHUNK):
            for c in Contact.objects.filter(external_id__in=keys[i : i + CHUNK]).prefetch_related("points"):
                existing[c.external_id] = c
        # An address already stored for a contact that is not this row's contact is a row error.
        values_wanted = [v for _k, v in claimed]
        owners: dict[tuple[str, str], str | None] = {}
        for i in range(0, len(values_wanted), CHUNK):
            for kind, value, owner_ext in ContactPoint.objects.filter(value__in=values_wanted[i : i + CHUNK]).values_list(
                "kind", "value", "contact__external_id"
            ):
                owners[(kind, value)] = owner_ext
        for ext, (line, (_n, _t, _a, emails, phones, _c)) in list(parsed.items()):
            for kind, items in (("email", emails), ("phone", phones)):
                clash = next((i for i in items if (kind, i) in owners and owners[(kind, i)] != ext), None)
                if clash is not None:
                    report.rejected.append((line, f"{kind} '{clash}' belongs to another contact ({owners[(kind, clash)] or 'no external id'})"))
                    del parsed[ext]
                    break
        if report.refused(strict):
            bar.close()
            return report
        create, update, repoint = [], [], []
        for ext, (_line, (name, title, account, emails, phones, custom)) in parsed.items():
            contact = existing.get(ext)
            points = [(p.kind, p.value) for p in contact.points.all()] if contact else []
            wanted_points = [("email", e) for e in emails] + [("phone", p) for p in phones]
            if contact is None:
                contact = Contact(external_id=ext, name=name, title=title, account_id=account,
                                  custom_fields=_apply_custom({}, custom))
                create.append((contact, wanted_points))
                continue
            fields = _apply_custom(contact.custom_fields, custom)
            if (contact.name, contact.title, contact.account_id, contact.custom_fields) != (name, title, account, fields):
                contact.name, contact.title, contact.account_id, contact.custom_fields = name, title, account, fields
                update.append(contact)
            elif sorted(points) == sorted(wanted_points):
                report.unchanged += 1
                continue
            else:
                report.updated += 1
            if sorted(points) != sorted(wanted_points):
                repoint.append((contact, wanted_points))
        Contact.objects.bulk_create([c for c, _p in create], batch_size=BATCH)
        bulk_update_rows(Contact, ["name", "title", "account", "custom_fields"],
                         [(c.name, c.title, c.account_id, c.custom_fields, c.pk) for c in update])
        ids = [c.pk for c, _p in repoint]
        for i in range(0, len(ids), CHUNK):
            ContactPoint.objects.filter(contact_id__in=ids[i : i + CHUNK]).delete()
        ContactPoint.objects.bulk_create(
            [point for c, p in [*create, *repoint] for point in _points(c, p)],
            batch_size=BATCH,
        )
        report.created = len(create)
        report.updated += len(update)
    bar.close()
    return report


def export_contacts(out: TextIO) -> int:
    """All contacts as CSV in the import's columns and a `custom.<key>` column for every custom field key in use;
    returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    keys = _keys_in_use(Contact)
    writer.writerow(CONTACT_COLUMNS + [CUSTOM + k for k in keys])
    count = 0
    qs = Contact.objects.order_by("external_id", "id").select_related("account").prefetch_related("points")
    for c in qs.iterator(chunk_size=2000):
        points = list(c.points.all())
        writer.writerow([escape_cell(v) for v in
            [
                c.external_id or "",
                c.name,
                c.account.external_id if c.account and c.account.external_id else "",
                c.title,
                ";".join(p.value for p in points if p.kind == "email"),
                ";".join(p.value for p in points if p.kind == "phone"),
                *(custom_cell(c.custom_fields[k]) if k in (c.custom_fields or {}) else "" for k in keys),
            ]
        ])
        count += 1
    return count


IMPORTERS: dict[str, Callable[..., ImportReport]] = {"accounts": import_accounts, "contacts": import_contacts}
__all__ = ["FORMULA_STARTS", "IMPORTERS", "CsvFileError", "ImportReport", "RowError", "decode", "escape_cell",
           "export_accounts", "export_contacts", "import_accounts", "import_contacts", "rows", "unescape_cell"]
