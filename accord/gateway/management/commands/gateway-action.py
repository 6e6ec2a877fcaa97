"""`accord gateway-action set/clear/list`: switch what the gateway enforces by hand (governance does it too)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.gateway.actions import do_clear_action, do_set_action
from accord.gateway.models import PARAMS, GatewayAction


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _duration(text: str) -> dt.timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise CommandError(f"'{text}' is not a duration like 90s, 15m, 2h or 1d")
    return dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])


class Command(BaseCommand):
    help = "Set, clear and list the actions the gateway enforces (route to a pool, rate limit, shed, admission)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True)
        kinds = ", ".join(f"{k} ({', '.join(p)})" for k, p in PARAMS.items())
        put = sub.add_parser("set", help="create or replace an action and switch it on")
        put.add_argument("name", help="a slug naming the action")
        put.add_argument("kind", choices=list(PARAMS), help=f"kinds and their params: {kinds}")
        put.add_argument("--params", default="{}", help='JSON object, e.g. \'{"rps": 10, "burst": 20}\'')
        put.add_argument("--tiers", default="", help="comma-separated tier names (default: any)")
        put.add_argument("--accounts", default="", help="comma-separated account keys (default: any)")
        put.add_argument("--services", default="", help="comma-separated service names (default: any)")
        put.add_argument("--operations", default="", help="comma-separated operation names (default: any)")
        put.add_argument("--reason", default="", help="why, for the record")
        put.add_argument("--for", dest="duration", default="", help="expire after, e.g. 15m, 2h")
        put.add_argument("--by", default="cli", help="who sets it")
        clear = sub.add_parser("clear", help="switch an action off")
        clear.add_argument("name")
        listing = sub.add_parser("list", help="list actions")
        listing.add_argument("--all", action="store_true", help="also inactive and expired ones")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["command"]
        if command == "set":
            try:
                params = json.loads(options["params"])
            except json.JSONDecodeError as e:
                raise CommandError(f"--params is not JSON: {e}") from None
            expires = timezone.now() + _duration(options["duration"]) if options["duration"] else None
            try:
                action = do_set_action(
                    options["name"], options["kind"], params=params, tiers=_names(options["tiers"]),
                    accounts=_names(options["accounts"]), services=_names(options["services"]),
                    operations=_names(options["operations"]), reason=options["reason"], expires_at=expires,
                    set_by=options["by"],
                )
            except ValidationError as e:
                problems = [f"{k}: {m}" for k, ms in e.message_dict.items() for m in ms] if hasattr(
                    e, "error_dict") else e.messages
                raise CommandError("; ".join(problems)) from None
            self.stdout.write(f"set {action.name}: {action.kind} {json.dumps(action.params)}"
                              + (f" until {action.expires_at:%Y-%m-%d %H:%M:%S %Z}" if action.expires_at else ""))
        elif command == "clear":
            if not GatewayAction.objects.filter(name=options["name"]).exists():
                raise CommandError(f"No action is called '{options['name']}'.")
            changed = do_clear_action(options["name"])
            self.stdout.write(f"cleared {options['name']}" if changed else f"{options['name']} was not active")
        else:
            qs = GatewayAction.objects.all() if options["all"] else GatewayAction.live()
            for a in qs:
                scope = " ".join(f"{k}={','.join(v)}" for k in ("tiers", "accounts", "services", "operations")
                                 if (v := getattr(a, k)))
                state = "active" if a.active else "inactive"
                until = f" until {a.expires_at:%Y-%m-%d %H:%M:%S}" if a.expires_at else ""
                self.stdout.write(f"{a.name}\t{a.kind}\t{json.dumps(a.params)}\t{scope or 'everyone'}\t{state}{until}"
                                  f"\t{a.reason}")
