"""`accord outreach`: segments, campaigns, their sending, and bounces (docs/outreach.md)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from accord.customers.models import Contact
from accord.outreach import bounces, campaigns, segments
from accord.outreach import consent as service
from accord.outreach.models import Campaign, Purpose, Segment


def _messages(e: ValidationError) -> str:
    if hasattr(e, "message_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in e.message_dict.items())
    return " ".join(e.messages)


class Command(BaseCommand):
    help = ("Segments and campaigns (docs/outreach.md): `segment add NAME FILTER`, `segment list`, `campaign add`, "
            "`schedule ID`, `preview ID CONTACT`, `send-campaign ID`, `pause ID`, `resume ID`, `send-due [--loop N]`, "
            "`bounces FILE...`.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        seg = sub.add_parser("segment", help="saved filters over contacts, counted live")
        seg.add_argument("verb", choices=["add", "list"])
        seg.add_argument("name", nargs="?")
        seg.add_argument("filter", nargs="?", default="{}", help='JSON, e.g. \'{"tier": ["gold"]}\'')
        seg.add_argument("--description", default="")
        camp = sub.add_parser("campaign", help="add a campaign (a draft until scheduled), or list them")
        camp.add_argument("verb", choices=["add", "list"])
        camp.add_argument("name", nargs="?")
        camp.add_argument("--segment")
        camp.add_argument("--purpose")
        camp.add_argument("--subject")
        camp.add_argument("--html", type=Path, help="file with the HTML part")
        camp.add_argument("--text", type=Path, help="file with the plain-text part")
        camp.add_argument("--rate", type=float, default=10.0, help="messages per second at most (10)")
        camp.add_argument("--from", dest="from_email", default="")
        sch = sub.add_parser("schedule", help="check a campaign and let it go (now, or --at an ISO instant)")
        sch.add_argument("id", type=int)
        sch.add_argument("--at", help="e.g. 2026-12-08T09:00:00+00:00")
        pre = sub.add_parser("preview", help="the message a contact would get")
        pre.add_argument("id", type=int)
        pre.add_argument("contact", help="external id or e-mail address")
        snd = sub.add_parser("send-campaign", help="send a scheduled campaign now (resumes after a crash)")
        snd.add_argument("id", type=int)
        snd.add_argument("--batch", type=int, default=200, help="rows claimed at a time (200)")
        snd.add_argument("--progress", action="store_true", help="a progress bar even when stderr is no TTY")
        snd.add_argument("--processes", type=int, default=1,
                         help="sender processes sharing the campaign (1): each claims its own rows, the campaign's "
                              "rate is split between them; signing takes a core each")
        snd.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)  # a child of --processes N: rate/N
        pau = sub.add_parser("pause", help="hold a scheduled or sending campaign (its senders stop, nothing is lost)")
        pau.add_argument("id", type=int)
        res = sub.add_parser("resume", help="let a paused campaign go on where it stopped")
        res.add_argument("id", type=int)
        due = sub.add_parser("send-due", help="send every campaign whose time has come (and retries due)")
        due.add_argument("--loop", type=float, default=0, help="look again every N seconds until stopped")
        bnc = sub.add_parser("bounces", help="read delivery status notifications (RFC 3464 .eml files)")
        bnc.add_argument("files", nargs="+", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"].replace("-", "_")
        try:
            getattr(self, f"_{action}")(options)
        except campaigns.CampaignError as e:
            raise CommandError(str(e)) from e

    # -- segments and campaigns ---------------------------------------------------------------------------------

    def _segment(self, o: dict[str, Any]) -> None:
        if o["verb"] == "list":
            for s in Segment.objects.all():
                try:
                    size = f"{segments.count(s.spec):,} contacts"
                except segments.SpecError as e:
                    size = f"unusable: {e}"
                self.stdout.write(f"{s.name}: {size}  {json.dumps(s.spec)}")
            return
        if not o["name"]:
            raise CommandError("segment add needs a NAME and a FILTER")
        try:
            spec = json.loads(o["filter"])
            segments.check(spec)
        except json.JSONDecodeError as e:
            raise CommandError(f"the filter is not JSON: {e}") from e
        except segments.SpecError as e:
            raise CommandError(f"the filter: {e}") from e
        seg, _ = Segment.objects.update_or_create(name=o["name"], defaults={"spec": spec,
                                                                            "description": o["description"]})
        n = segments.count(spec)
        self.stdout.write(f"segment {seg.name}: {n:,} contacts" + (" (matches nobody for now)" if not n else ""))

    def _campaign(self, o: dict[str, Any]) -> None:
        if o["verb"] == "list":
            for c in Campaign.objects.select_related("segment", "purpose"):
                t = campaigns.totals(c)
                self.stdout.write(f"{c.pk} {c.name} [{c.status}] {c.purpose.name} to {c.segment.name}: "
                                  + ", ".join(f"{k} {v}" for k, v in t.items() if v))
            return
        missing = [f"--{k}" for k in ("segment", "purpose", "subject", "html", "text") if not o[k]]
        if missing or not o["name"]:
            raise CommandError(f"campaign add needs NAME and {', '.join(missing) or 'nothing else'}")
        segment = Segment.objects.filter(name=o["segment"]).first()
        purpose = Purpose.objects.filter(name=o["purpose"]).first()
        if segment is None or purpose is None:
            raise CommandError(f"no segment {o['segment']!r}" if segment is None else f"no purpose {o['purpose']!r}")
        try:
            campaign = Campaign(name=o["name"], segment=segment, purpose=purpose, subject=o["subject"],
                                html=o["html"].read_text(), text=o["text"].read_text(), rate=o["rate"],
                                from_email=o["from_email"])
        except OSError as e:
            raise CommandError(str(e)) from e
        try:
            campaign.full_clean()
        except ValidationError as e:
            raise CommandError(f"campaign not saved: {_messages(e)}") from e
        campaign.save()
        self.stdout.write(f"campaign {campaign.pk} {campaign.name}: draft (accord outreach schedule {campaign.pk})")

    def _campaign_by_id(self, pk: int) -> Campaign:
        found = Campaign.objects.select_related("segment", "purpose").filter(pk=pk).first()
        if found is None:
            raise CommandError(f"no campaign {pk}")
        return found

    def _schedule(self, o: dict[str, Any]) -> None:
        campaign = self._campaign_by_id(o["id"])
        at = None
        if o["at"]:
            try:
                at = dt.datetime.fromisoformat(o["at"])
            except ValueError as e:
                raise CommandError(f"--at {o['at']!r} is not an ISO instant (2026-12-08T09:00:00+00:00)") from e
            if at.tzinfo is None:
                raise CommandError("--at needs a time zone, e.g. +00:00")
        try:
            campaigns.schedule(campaign, at)
        except ValidationError as e:
            raise CommandError(f"campaign {campaign.pk} not scheduled: {_messages(e)}") from e
        self.stdout.write(f"campaign {campaign.pk} scheduled for {campaign.send_at:%Y-%m-%d %H:%M:%S} UTC")

    def _preview(self, o: dict[str, Any]) -> None:
        campaign = self._campaign_by_id(o["id"])
        contact = Contact.objects.filter(external_id=o["contact"]).first() or service.contact_by_address(o["contact"])
        if contact is None:
            raise CommandError(f"no contact with external id or e-mail address {o['contact']!r}")
        may = service.mailable(contact, campaign.purpose)
        if not may.ok:
            self.stderr.write(f"note: {contact} would not get it ({may.why})")
        self.stdout.write(campaigns.preview(campaign, contact).as_string())

    # -- sending ------------------------------------------------------------------------------------------------

    def _send_campaign(self, o: dict[str, Any]) -> None:
        campaign = self._campaign_by_id(o["id"])
        if o["share"]:  # one of the processes of `--processes N`: its summary as JSON for the parent
            with stop_on_sigterm() as stopping:
                summary = campaigns.send(campaign, batch=o["batch"], add_recipients=False,
                                         rate=campaign.rate / o["share"], stop=lambda: stopping["now"])
            self.stdout.write(json.dumps({"sent": summary.sent, "skipped": summary.skipped, "failed": summary.failed,
                                          "retrying": summary.retrying, "recovered": summary.recovered,
                                          "paused": summary.paused}))
            return
        if o["processes"] < 1 or o["processes"] > 64:
            raise CommandError(f"--processes {o['processes']}: give 1 to 64 sender processes")
        if o["processes"] > 1:
            self._send_in_processes(campaign, o)
            return
        show = o["progress"] or sys.stderr.isatty()
        bar = tqdm(unit="msg", disable=not show, file=sys.stderr, desc=f"campaign {campaign.pk}")

        def started(total: int) -> None:
            bar.reset(total=total)

        def tick(n: int) -> None:
            bar.update(n)

        with stop_on_sigterm() as stopping:
            summary = campaigns.send(campaign, batch=o["batch"], progress=tick, started=started,
                                     stop=lambda: stopping["now"])
        bar.close()
        self.stdout.write(f"campaign {campaign.pk}: {summary.line()}")

    def _send_in_processes(self, campaign: Campaign, o: dict[str, Any]) -> None:
        """N `send-campaign ID` children on one campaign, after this process added the segment's newcomers once;
        the claims keep them apart, the bar follows the rows they finish, and the summary adds theirs up."""
        n = o["processes"]
        campaigns.check_sendable(campaign)
        prepared = campaigns.prepare(campaign)
        now = timezone.now()
        total = campaigns.due(campaign, now).count() + campaign.sends.filter(status=campaigns.S.SENDING).count()
        show = o["progress"] or sys.stderr.isatty()
        bar = tqdm(total=total, unit="msg", disable=not show, file=sys.stderr,
                   desc=f"campaign {campaign.pk}, {n} processes")
        cmd = [sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign.pk), "--batch",
               str(o["batch"]), "--share", str(n)]
        # each child writes one summary line when it ends: read after they end, no pipe can fill before
        children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        with stop_on_sigterm() as stopping:
            forwarded = False
            while any(c.poll() is None for c in children):
                if stopping["now"] and not forwarded:  # each child stops after the message in its hands
                    for c in children:
                        with contextlib.suppress(ProcessLookupError):
                            c.send_signal(signal.SIGTERM)
                    forwarded = True
                left = campaigns.due(campaign, now).count() + campaign.sends.filter(
                    status=campaigns.S.SENDING).count()
                bar.update(max(0, total - left - bar.n))
                time.sleep(0.5)
        outputs = [c.communicate()[0] for c in children]
        bar.update(max(0, total - bar.n) if all(c.returncode == 0 for c in children) else 0)
        bar.close()
        summary = campaigns.Summary(skipped=Counter(prepared.skipped))
        broken, each = [], []
        for i, c in enumerate(children):
            try:
                part = json.loads(outputs[i].strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                broken.append(f"process {i + 1} exited with {c.returncode} without a summary")
                each.append("?")
                continue
            each.append(str(part["sent"]))
            summary.sent += part["sent"]
            summary.skipped.update(part["skipped"])
            summary.failed += part["failed"]
            summary.retrying += part["retrying"]
            summary.recovered += part["recovered"]
            summary.paused = summary.paused or part["paused"]
        summary.totals = campaigns.totals(campaign)
        self.stdout.write(f"campaign {campaign.pk} ({n} processes, sent {' + '.join(each)}): {summary.line()}")
        if broken:  # their claimed rows go back to the queue on the next run (their pids are gone)
            raise CommandError("; ".join(broken) + f"; run `accord outreach send-campaign {campaign.pk}` to resume")

    def _pause(self, o: dict[str, Any]) -> None:
        campaign = self._campaign_by_id(o["id"])
        waiting = campaigns.pause(campaign)
        self.stdout.write(f"campaign {campaign.pk} paused: {waiting:,} recipients wait; its senders stop within "
                          f"{campaigns.PAUSE_CHECK} messages (accord outreach resume {campaign.pk})")

    def _resume(self, o: dict[str, Any]) -> None:
        campaign = campaigns.resume(self._campaign_by_id(o["id"]))
        self.stdout.write(f"campaign {campaign.pk} resumed: scheduled for {campaign.send_at:%Y-%m-%d %H:%M:%S} UTC; "
                          "`accord outreach send-due` (or send-campaign) sends the rest")

    def _send_due(self, o: dict[str, Any]) -> None:
        with stop_on_sigterm() as stopping:
            self._send_due_until(o, stopping)

    def _send_due_until(self, o: dict[str, Any], stopping: dict[str, bool]) -> None:
        while True:
            for campaign in campaigns.due_campaigns():
                # a finished campaign comes back only for retries: it takes no newcomers of its segment
                summary = campaigns.send(campaign, stop=lambda: stopping["now"],
                                         add_recipients=campaign.status != Campaign.Status.DONE)
                self.stdout.write(f"campaign {campaign.pk}: {summary.line()}")
            if not o["loop"] or stopping["now"]:
                return
            time.sleep(o["loop"])

    def _bounces(self, o: dict[str, Any]) -> None:
        counts = {"hard": 0, "soft": 0, "suppressed": 0, "ignored": 0}
        unreadable = 0
        for path in o["files"]:
            try:
                raw = path.read_bytes()
            except OSError as e:
                self.stderr.write(f"{path}: {e.strerror or e}")
                unreadable += 1
                continue
            try:
                outcomes = bounces.handle(raw)
            except bounces.NotADsn as e:
                self.stderr.write(f"{path}: {e}")
                unreadable += 1
                continue
            for out in outcomes:
                counts[out.result] += 1
                self.stdout.write(f"{path}: {out.bounce.recipient} {out.bounce.action} {out.bounce.status}: "
                                  f"{out.result}")
        self.stdout.write(f"hard {counts['hard']} (suppressed), soft {counts['soft']} (counted, retried), "
                          f"soft past the limit {counts['suppressed']} (suppressed), ignored {counts['ignored']}, "
                          f"not a DSN {unreadable}")
        if unreadable:
            raise CommandError(f"{unreadable} file(s) could not be read as a DSN")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[dict[str, bool]]:
    """SIGTERM asks the sender to stop after the message in hand (`stopping["now"]`), until the block ends; the
    handler before is put back, so a command called in a longer-lived process (the tests, a shell) leaves SIGTERM
    as it found it: a process forked later (a multiprocessing pool) must still die of it."""
    stopping = {"now": False}
    before = signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGTERM, before)
