"""Closed periods: reports stored as built, with a SHA-256 digest of their bytes, never recomputed.

`close` freezes every account's report of an ended period (HTML, CSV and, with WeasyPrint, PDF). Closing again
changes nothing; `restate` builds anew and, when anything differs, stores a new version that says what changed
and why, keeping the old one. `verify` tells whether a file is, byte for byte, a stored version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accord.customers.models import Account
from accord.gateway.snapshot import account_key

from . import render
from .builder import build
from .models import FrozenReport
from .periods import Period, parse_period


class FreezeError(Exception):
    """Closing is refused (the period has not ended, a restatement without a reason)."""


def pdf_available() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):  # OSError: WeasyPrint is there but Pango is not
        return False
    return True


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def formats(account: Account, period: Period, version: int, now: dt.datetime) -> dict[str, bytes]:
    report = build(account, period, now)
    page = render.html(report, version=version)
    out = {"html": page, "csv": render.csv_bytes(report)}
    if pdf_available():
        out["pdf"] = render.pdf(report, version=version)
    return out


def file_name(account: Account, period: Period | str, version: int, fmt: str) -> str:
    label = period.label if isinstance(period, Period) else period
    return f"{account_key(account.external_id, account.pk)}-{label}-v{version}.{fmt}"


@dataclass
class Closed:
    account: Account
    version: int
    new: bool
    changes: str = ""


def _changes(old: bytes, new: bytes) -> str:
    """What differs between two CSV versions, row by row (objective figures, breaches)."""
    before, after = set(old.decode().splitlines()), set(new.decode().splitlines())
    gone = sorted(before - after)
    came = sorted(after - before)
    lines = [f"- {row}" for row in gone] + [f"+ {row}" for row in came]
    return "\n".join(lines) if lines else "the CSV is the same; only the presentation changed"


def close_one(account: Account, period: Period, *, actor: str, now: dt.datetime, reason: str = "",
              restate: bool = False) -> Closed:
    """Freeze one account's report; with `restate` (and a reason), a new version when the data changed."""
    with transaction.atomic():
        latest = (FrozenReport.objects.filter(account=account, period=period.label)
                  .aggregate(v=Max("version"))["v"])
        if latest is not None and not restate:
            return Closed(account, latest, False)
        version = (latest or 0) + 1
        built = formats(account, period, version, now)
        changes = ""
        if latest is not None:
            old = FrozenReport.objects.get(account=account, period=period.label, version=latest, fmt="csv")
            if bytes(old.content) == built["csv"]:
                return Closed(account, latest, False)
            changes = _changes(bytes(old.content), built["csv"])
        for fmt, data in built.items():
            FrozenReport.objects.create(account=account, period=period.label, version=version, fmt=fmt,
                                        content=data, sha256=digest(data), reason=reason, changes=changes,
                                        closed_at=now, closed_by=actor)
        return Closed(account, version, True, changes)


def close(accounts: list[Account], period: Period, *, actor: str = "accord", reason: str = "",
          restate: bool = False, now: dt.datetime | None = None,
          progress: Callable[[Closed], None] | None = None) -> list[Closed]:
    """Close a period for these accounts. FreezeError for a period not ended, or a restatement without a reason."""
    now = now or timezone.now()
    if not period.ended(now):
        raise FreezeError(f"the period {period.label} has not ended (it ends {period.end.isoformat()}): "
                          "a running period cannot be closed")
    if restate and not reason.strip():
        raise FreezeError("a restatement needs a reason (--reason)")
    out = []
    for account in accounts:
        done = close_one(account, period, actor=actor, now=now, reason=reason.strip(), restate=restate)
        out.append(done)
        if progress:
            progress(done)
    return out


@dataclass
class Verdict:
    ok: bool
    message: str


def verify(data: bytes, name: str = "") -> Verdict:
    """Whether these bytes are a stored version of a closed report; when not, which version the file's name
    says it is, and that its digest differs."""
    sha = digest(data)
    match = FrozenReport.objects.filter(sha256=sha).select_related("account").first()
    if match is not None:
        latest = FrozenReport.objects.filter(account=match.account, period=match.period).aggregate(
            v=Max("version"))["v"]
        note = "" if latest == match.version else f" (restated since: the latest is version {latest})"
        return Verdict(True, f"OK: {file_name(match.account, match.period, match.version, match.fmt)}, "
                             f"sha256 {sha}, closed {match.closed_at.date().isoformat()}{note}")
    claimed = _claimed(name)
    if claimed is not None:
        return Verdict(False, f"CHANGED: {name} is not the stored {claimed.fmt} of version {claimed.version} "
                              f"(sha256 {sha}, stored {claimed.sha256})")
    return Verdict(False, f"UNKNOWN: no closed report has sha256 {sha}")


def _claimed(name: str) -> FrozenReport | None:
    """The stored report a file name like ACME-2026-11-v1.pdf points to."""
    stem, _, fmt = name.rpartition("/")[2].rpartition(".")
    head, _, version = stem.rpartition("-v")
    if not version.isdigit() or len(head) < 9:
        return None
    key, label = head[:-8], head[-7:]
    try:
        parse_period(label)
    except ValueError:
        return None
    account = Account.objects.filter(external_id=key).first() or (
        Account.objects.filter(pk=int(key)).first() if key.isdigit() else None)
    if account is None:
        return None
    return FrozenReport.objects.filter(account=account, period=label, version=int(version), fmt=fmt).first()
