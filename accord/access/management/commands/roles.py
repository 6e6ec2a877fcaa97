"""`accord roles [list|sync|grant USER ROLE|revoke USER ROLE]`: the staff roles (accord/access/roles.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accord.access import roles


class Command(BaseCommand):
    help = "List the staff roles, sync their groups, or grant and revoke a role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", default="list", choices=["list", "sync", "grant", "revoke"])
        parser.add_argument("user", nargs="?")
        parser.add_argument("role", nargs="?")

    def handle(self, *args: Any, action: str, user: str | None, role: str | None, **options: Any) -> None:
        if action == "sync":
            for name, count in roles.sync().items():
                self.stdout.write(f"{name}: {count} permissions")
            return
        if action == "list":
            users = (
                get_user_model().objects.filter(groups__name__in=roles.ROLES).distinct().order_by("username")
            )
            holders: dict[str, list[str]] = {name: [] for name in roles.ROLES}
            for u in users.prefetch_related("groups"):
                for g in u.groups.all():
                    if g.name in holders:
                        holders[g.name].append(u.get_username())
            for name, (purpose, _) in roles.ROLES.items():
                self.stdout.write(f"{name}: {purpose}\n  users: {', '.join(holders[name]) or '-'}")
            return
        if not user or not role:
            raise CommandError(f"usage: accord roles {action} USER ROLE")
        if role not in roles.ROLES:
            raise CommandError(f"unknown role {role!r}; roles: {', '.join(roles.ROLES)}")
        found = get_user_model().objects.filter(username=user).first()
        if found is None:
            raise CommandError(f"no user {user!r}")
        if action == "grant":
            if not found.is_staff:
                found.is_staff = True
                found.save(update_fields=["is_staff"])
            roles.grant(found, role)
        else:
            roles.revoke(found, role)
        self.stdout.write(f"{user}: {', '.join(roles.roles_of(found)) or 'no role'}")
