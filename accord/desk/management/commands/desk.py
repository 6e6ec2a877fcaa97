"""`accord desk ...`: e-mail import and mailbox polling for the service desk."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accord.desk import imap, mail, outbound, outbox
from accord.desk.models import Mailbox
from accord.ops.heartbeat import Beat


class Command(BaseCommand):
    help = ("Service desk tools: `import-mime PATH... [--acknowledge]` stores raw e-mails (acknowledging none unless "
            "asked); `poll-imap` fetches mailboxes and acknowledges new tickets; `send-mail` sends the outbox.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser("import-mime", help="import .eml files, mbox files or Maildirs")
        imp.add_argument("paths", nargs="+", type=Path)
        imp.add_argument("--progress", action="store_true", help="show a progress bar even when not on a TTY")
        imp.add_argument("--acknowledge", action="store_true",
                         help="send the auto-acknowledgement for each message that opens a ticket (for mail that "
                              "arrives now; off by default: archived mail is from people who wrote long ago)")
        poll = sub.add_parser("poll-imap", help="fetch unseen mail from the configured mailboxes")
        poll.add_argument("--mailbox", action="append", default=[], help="only this mailbox (repeatable)")
        poll.add_argument("--loop", type=float, default=0, help="poll every N seconds until stopped")
        send = sub.add_parser("send-mail", help="send the outbox: replies and acknowledgements due (again)")
        send.add_argument("--loop", type=float, default=0, help="send what is due every N seconds until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "import-mime":
            self._import(options["paths"], options["progress"], options["acknowledge"])
        elif options["action"] == "send-mail":
            self._send(options["loop"])
        else:
            self._poll(options["mailbox"], options["loop"])

    def _import(self, paths: list[Path], progress: bool, acknowledge: bool) -> None:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CommandError(f"No such file or directory: {', '.join(missing)}")
        stored = duplicates = flagged = sent = not_sent = 0
        bar = tqdm(unit="msg", disable=not (progress or sys.stderr.isatty()), file=sys.stderr)
        for path in paths:
            try:
                for source, outcome in mail.store_many(mail.iter_raw_messages(path), acknowledge=acknowledge):
                    if outcome.duplicate:
                        duplicates += 1
                    else:
                        stored += 1
                        if outcome.flagged:
                            flagged += 1
                            self.stderr.write(f"flagged {source}: {outcome.message.flag_reason if outcome.message else ''}")
                    # Results come once their batch has committed: its acknowledgements have been sent or flagged.
                    if outcome.acknowledgement is not None:
                        if outbound.was_sent(outcome.acknowledgement):
                            sent += 1
                        else:
                            not_sent += 1
                            self.stderr.write(f"acknowledgement not sent for {source} "
                                              f"(ticket {outcome.ticket.reference if outcome.ticket else '?'})")
                    bar.update()
            except OSError as e:
                raise CommandError(f"{path}: {e}") from e
        bar.close()
        failed = f", acknowledgements not sent {not_sent}" if not_sent else ""
        self.stdout.write(f"stored {stored}, duplicates {duplicates}, flagged {flagged}, acknowledgements sent {sent}"
                          f"{failed}")
        if not_sent:
            raise CommandError(f"{not_sent} acknowledgement(s) could not be sent; each is flagged with the error on "
                               f"its ticket (the messages themselves are stored); the outbox retries them (`accord desk "
                               f"send-mail`, /desk/outbox/)")

    def _send(self, loop: float) -> None:
        """The outbox sender: one pass, or one every `loop` seconds until SIGTERM (a clean stop)."""
        heartbeat = Beat("mail-sender", interval=max(10.0, loop)) if loop else None
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        if loop:
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        while True:
            r = outbox.send_due()
            if r.sent or r.retrying or r.failed or r.recovered or not loop:
                self.stdout.write(f"sent {r.sent}, to retry {r.retrying}, failed {r.failed}, "
                                  f"interrupted sends taken back {r.recovered}")
            if not loop:
                if r.failed:
                    raise CommandError(f"{r.failed} message(s) refused for good; see /desk/outbox/")
                return
            assert heartbeat is not None
            heartbeat.beat(f"last pass: sent {r.sent}, to retry {r.retrying}, failed {r.failed}")
            deadline = time.monotonic() + loop
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, loop))
            if stopping:
                heartbeat.stop()
                return

    def _poll(self, names: list[str], loop: float) -> None:
        boxes = Mailbox.objects.filter(enabled=True)
        if names:
            boxes = boxes.filter(name__in=names)
            unknown = set(names) - set(boxes.values_list("name", flat=True))
            if unknown:
                raise CommandError(f"Unknown or disabled mailbox(es): {', '.join(sorted(unknown))}")
        heartbeat = Beat("mail-poller", interval=max(10.0, loop)) if loop else None
        if heartbeat:  # a stop asked for (SIGTERM, Ctrl-C) is a clean exit, not a missing process
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            self._poll_loop(boxes, loop, heartbeat)
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            if heartbeat:
                heartbeat.stop()

    def _poll_loop(self, boxes: Any, loop: float, heartbeat: Beat | None) -> None:
        while True:
            failed = False
            for box in boxes:
                r = imap.poll(box)
                status = f"error {r.error}" if r.error else "ok"
                acks = f"acknowledgements sent {r.acknowledged}" + (
                    f", acknowledgements not sent {r.not_acknowledged}" if r.not_acknowledged else "")
                bounces = f", campaign bounces {r.intercepted}" if r.intercepted else ""
                self.stdout.write(f"{box.name}: stored {r.stored}, duplicates {r.duplicates}, flagged {r.flagged}, {acks}"
                                  f"{bounces} ({status})")
                failed = failed or bool(r.error)
            if not loop:
                if failed:
                    raise CommandError("at least one mailbox could not be polled")
                return
            assert heartbeat is not None
            heartbeat.beat(f"{len(boxes)} mailbox(es), last pass {'with errors' if failed else 'ok'}")
            time.sleep(loop)
