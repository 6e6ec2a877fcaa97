"""`accord policy list | override NAME --on/--off --reason R --minutes N | end-override NAME | audit`."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.governance.engine import end_override, set_override
from accord.governance.models import AuditEvent, Policy, PolicyState


class Command(BaseCommand):
    help = "List governance policies, switch one on or off by hand, show the audit trail."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="policies and their state")
        override = sub.add_parser("override", help="force a policy's action on or off until it expires")
        override.add_argument("name")
        side = override.add_mutually_exclusive_group(required=True)
        side.add_argument("--on", action="store_true")
        side.add_argument("--off", action="store_true")
        override.add_argument("--reason", required=True)
        override.add_argument("--minutes", type=float, required=True, help="how long the override lasts")
        end = sub.add_parser("end-override", help="cancel a policy's override now")
        end.add_argument("name")
        audit = sub.add_parser("audit", help="the latest audit events")
        audit.add_argument("--policy")
        audit.add_argument("--limit", type=int, default=50)

    def _policy(self, name: str) -> Policy:
        policy = Policy.objects.filter(name=name).first()
        if policy is None:
            known = ", ".join(Policy.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no policy named {name!r} (known: {known})")
        return policy

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        user = f"{getpass.getuser()} (cli)"
        if action == "list":
            states = {s.policy_id: s for s in PolicyState.objects.all()}
            for p in Policy.objects.all():
                s = states.get(p.pk)
                on = "ACTIVE" if s and s.active else "idle"
                flags = [f for f, cond in (("disabled", not p.enabled), ("dry-run", p.mode == Policy.Mode.DRY_RUN)) if cond]
                self.stdout.write(f"{p.name:30} {on:7} {p.action:10} prio {p.priority:<5} {' '.join(flags)}")
                self.stdout.write(f"    when {p.condition}")
                if s and s.error:
                    self.stdout.write(f"    error: {s.error}")
        elif action == "override":
            policy = self._policy(options["name"])
            minutes = options["minutes"]
            if not 0 < minutes <= 7 * 1440:
                raise CommandError("--minutes must be above 0 and at most 10080 (a week)")
            if not options["reason"].strip():
                raise CommandError("--reason must say why")
            until = timezone.now() + dt.timedelta(minutes=minutes)
            set_override(policy, bool(options["on"]), options["reason"], until, user)
            self.stdout.write(f"{policy.name}: forced {'on' if options['on'] else 'off'} until "
                              f"{timezone.localtime(until).isoformat(timespec='seconds')}")
        elif action == "end-override":
            policy = self._policy(options["name"])
            ended = end_override(policy, user)
            self.stdout.write(f"{policy.name}: {'override ended' if ended else 'had no override'}")
        else:
            events = AuditEvent.objects.all()
            if options.get("policy"):
                events = events.filter(policy=self._policy(options["policy"]))
            for e in events[: options["limit"]]:
                self.stdout.write(f"{timezone.localtime(e.at):%Y-%m-%d %H:%M:%S} {e.kind:16} {e.subject:28} "
                                  f"by {e.actor}: {e.reason}")
