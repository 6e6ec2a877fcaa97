"""`accord token create USER [--days N] [--name NAME]`, `accord token list [USER]`, `accord token revoke PREFIX`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accord.access import tokens
from accord.access.models import ApiToken


class Command(BaseCommand):
    help = "Create (shown once), list and revoke staff API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new token for a user, printed once")
        create.add_argument("user")
        create.add_argument("--days", type=int, default=None, help="days it lives (default 90, at most 366)")
        create.add_argument("--name", default="", help="what it is for")
        listing = sub.add_parser("list", help="tokens (prefix, user, name, expiry, last use, state)")
        listing.add_argument("user", nargs="?")
        revoke = sub.add_parser("revoke", help="revoke a token by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
            if not user.is_staff:
                raise CommandError(
                    f"{options['user']} is not staff; give them a role first (accord roles grant)"
                )
            try:
                issued = tokens.create(user, options["name"], options["days"])
            except ValueError as e:
                raise CommandError(str(e)) from None
            self.stderr.write(
                f"token {issued.token.prefix} for {user.get_username()}, expires "
                f"{issued.token.expires_at:%Y-%m-%d %H:%M} UTC; it is shown this once:"
            )
            self.stdout.write(issued.secret)
        elif action == "list":
            qs = ApiToken.objects.select_related("user")
            if options.get("user"):
                qs = qs.filter(user__username=options["user"])
            now = timezone.now()
            for t in qs:
                state = "revoked" if t.revoked_at else ("expired" if t.expires_at <= now else "live")
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                self.stdout.write(
                    f"{t.prefix}  {t.user.get_username():<20} {state:<8} expires "
                    f"{t.expires_at:%Y-%m-%d}  last used {used}  {t.name}"
                )
        else:
            try:
                t = tokens.revoke(options["prefix"])
            except ApiToken.DoesNotExist:
                raise CommandError(f"no token with prefix {options['prefix']!r}") from None
            self.stdout.write(f"revoked {t.prefix} ({t.user.get_username()})")
