"""HTML, CSV and PDF of a report (the PDF read back by pdftotext), `reports build`, and frozen periods: close,
byte-stable rebuilds, verify catching a changed byte, restatements keeping both versions."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command

from accord.customers.models import Account
from accord.reports import render
from accord.reports.builder import build
from accord.reports.freeze import formats, pdf_available
from accord.reports.models import FrozenReport
from accord.reports.periods import parse_period

from .conftest import need_pdf, traffic

NOV = parse_period("2026-11")
AFTER = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def november(acme: Account) -> None:
    traffic(dt.date(2026, 11, 2), 5000, 2)
    traffic(dt.date(2026, 11, 9), 4000, 60)  # a bad day: 98.5 %, a breach
    traffic(dt.date(2026, 11, 25), 1000, 0)


@time_machine.travel(AFTER, tick=False)
def test_csv_has_a_row_per_objective_and_per_breach(acme: Account) -> None:
    november(acme)
    rows = list(csv.DictReader(io.StringIO(render.csv_bytes(build(acme, NOV)).decode())))
    assert [(r["row"], r["objective"], r["day"]) for r in rows] == [
        ("objective", "availability", ""), ("breach", "availability", "2026-11-09")]
    objective, breach = rows
    assert (objective["valid_events"], objective["bad_events"], objective["attained"]) == ("10000", "62", "99.38")
    assert (objective["credit_percent"], objective["credit_amount"], objective["currency"]) == ("10.000", "100.00",
                                                                                                "EUR")
    assert (breach["valid_events"], breach["bad_events"], breach["attained"]) == ("4000", "60", "98.5")
    assert objective["met"] == "no" and objective["provisional"] == "no"


@time_machine.travel(AFTER, tick=False)
def test_the_html_page_shows_targets_levels_charts_and_the_credit(acme: Account) -> None:
    november(acme)
    page = render.html(build(acme, NOV)).decode()
    assert "Service report: Acme (ACME), 2026-11" in page
    assert "≥ 99.9 %" in page and "99.380 %" in page and "100.00 EUR" in page
    assert page.count("<svg") == 2 and "daily attainment against the target" in page
    assert "2026-11-09" in page and "Provisional" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch


@time_machine.travel(AFTER, tick=False)
def test_the_pdf_reads_back_with_the_same_figures_and_is_byte_stable(acme: Account, tmp_path: Path) -> None:
    pdftotext = need_pdf()
    november(acme)
    report = build(acme, NOV)
    data = render.pdf(report)
    assert data.startswith(b"%PDF") and data == render.pdf(build(acme, NOV))  # same bytes when rebuilt
    (tmp_path / "r.pdf").write_bytes(data)
    text = subprocess.run([pdftotext, "-layout", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    for expected in ("Service report: Acme (ACME), 2026-11", "99.380 %", "100.00 EUR", "2026-11-09",
                     "Daily attainment (dots) against the target", "Error budget left at the end of each day",
                     "01 Nov", "06 Nov"):  # the last two are the charts' own axis labels: the SVG was drawn
        assert expected in text, (expected, text)
    if keep := os.environ.get("ACCORD_KEEP_PDF"):  # to look at the pages: pdftoppm -png FILE page
        Path(keep).write_bytes(data)


@pytest.mark.django_db
def test_build_writes_every_format_with_a_summary_and_refuses_bad_input(acme: Account, tmp_path: Path) -> None:
    with time_machine.travel(dt.datetime(2026, 11, 20, tzinfo=dt.UTC), tick=False):
        traffic(dt.date(2026, 11, 2), 100, 0)
        out = io.StringIO()
        extra = [] if pdf_available() else ["--no-pdf"]
        call_command("reports", "build", "--period", "2026-11", "--out", str(tmp_path), *extra, stdout=out)
        assert "built 1 reports for 2026-11:" in out.getvalue() and "provisional" in out.getvalue()
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted(["ACME-2026-11.html", "ACME-2026-11.csv", "all-accounts-2026-11.csv"]
                               + ([] if extra else ["ACME-2026-11.pdf"]))
        assert "Provisional" in (tmp_path / "ACME-2026-11.html").read_text()
        with pytest.raises(CommandError, match="not a month"):
            call_command("reports", "build", "--period", "2026-00", "--out", str(tmp_path))
        with pytest.raises(CommandError, match="no account with external id 'X'"):
            call_command("reports", "build", "--period", "2026-11", "--account", "X", "--out", str(tmp_path))


@pytest.mark.django_db
def test_closing_freezes_verify_catches_a_changed_byte_and_a_restatement_keeps_both(acme: Account,
                                                                                     tmp_path: Path) -> None:
    traffic(dt.date(2026, 11, 2), 1000, 20)
    with time_machine.travel(dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC), tick=False):
        with pytest.raises(CommandError, match="has not ended"):
            call_command("reports", "close", "--period", "2026-11")
        assert not FrozenReport.objects.exists()
    with time_machine.travel(AFTER, tick=False):
        out = io.StringIO()
        call_command("reports", "close", "--period", "2026-11", "--out", str(tmp_path), stdout=out)
        assert "closed 2026-11: 1 new report versions, 0 unchanged of 1 accounts" in out.getvalue()
        stored = {f.fmt: f for f in FrozenReport.objects.filter(version=1)}
        assert set(stored) >= {"html", "csv"}
        # rebuilt from the same data: the same bytes
        rebuilt = formats(acme, NOV, 1, AFTER + dt.timedelta(days=3))
        assert all(bytes(stored[f].content) == rebuilt[f] for f in stored)
        # closing again recomputes nothing
        traffic(dt.date(2026, 11, 3), 1000, 0)  # late data
        call_command("reports", "close", "--period", "2026-11", stdout=io.StringIO())
        assert FrozenReport.objects.filter(version=2).count() == 0
    good = tmp_path / "ACME-2026-11-v1.csv"
    out = io.StringIO()
    call_command("reports", "verify", str(good), stdout=out)
    assert out.getvalue().startswith("OK: ACME-2026-11-v1.csv, sha256 ")
    changed = bytearray(good.read_bytes())
    changed[changed.index(b"1000")] = ord("7")
    good.write_bytes(bytes(changed))
    with pytest.raises(CommandError, match=r"CHANGED: ACME-2026-11-v1\.csv is not the stored csv of version 1"):
        call_command("reports", "verify", str(good))
    stray = tmp_path / "other.html"
    stray.write_bytes(b"<p>hello</p>")
    with pytest.raises(CommandError, match="UNKNOWN: no closed report has sha256"):
        call_command("reports", "verify", str(stray))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("reports", "verify", str(tmp_path / "missing.pdf"))
    # a restatement: a reason is required; the new version says what changed; both versions stay
    with time_machine.travel(AFTER + dt.timedelta(days=1), tick=False):
        with pytest.raises(CommandError, match="needs a reason"):
            call_command("reports", "close", "--period", "2026-11", "--restate")
        out = io.StringIO()
        call_command("reports", "close", "--period", "2026-11", "--restate", "--reason",
                     "gateway-2 flushed late", "--out", str(tmp_path), stdout=out)
    text = out.getvalue()
    assert "ACME-2026-11-v2.csv: restated" in text and ",1000,20," in text and ",2000,20," in text
    v2 = FrozenReport.objects.get(version=2, fmt="csv")
    assert v2.reason == "gateway-2 flushed late" and "- " in v2.changes and "+ " in v2.changes
    assert FrozenReport.objects.filter(version=1).count() == FrozenReport.objects.filter(version=2).count()
    assert "version 2" in (tmp_path / "ACME-2026-11-v2.html").read_text()
    (tmp_path / "ACME-2026-11-v1.csv").write_bytes(bytes(FrozenReport.objects.get(version=1, fmt="csv").content))
    out = io.StringIO()
    call_command("reports", "verify", str(tmp_path / "ACME-2026-11-v1.csv"), stdout=out)
    assert "restated since: the latest is version 2" in out.getvalue()
