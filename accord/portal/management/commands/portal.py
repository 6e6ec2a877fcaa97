"""`accord portal`: invite a contact to the customer portal, list and deactivate portal users."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accord.customers.models import Account, Contact, ContactPoint
from accord.portal.invitations import InvitationError, invite
from accord.portal.models import PortalUser


class Command(BaseCommand):
    help = ("The customer portal (/portal/): `invite EMAIL --account A [--name N] [--admin]` mails a one-time "
            "invitation link (7 days), `list [--account A]`, `deactivate EMAIL`.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        i = sub.add_parser("invite", help="give a contact a portal sign-in and mail the invitation link")
        i.add_argument("email")
        i.add_argument("--account", required=True, help="the account's external id or its number")
        i.add_argument("--name", default="", help="the contact's name when there is no contact with this address yet")
        i.add_argument("--admin", action="store_true", help="a portal admin sees every ticket of the account")
        ls = sub.add_parser("list", help="portal users, with their account and last sign-in")
        ls.add_argument("--account")
        d = sub.add_parser("deactivate", help="end a portal user's sign-ins (their sessions end at the next request)")
        d.add_argument("email")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    @staticmethod
    def _account(ref: str) -> Account:
        account = Account.objects.filter(external_id=ref).first()
        if account is None and ref.isdigit():
            account = Account.objects.filter(pk=int(ref)).first()
        if account is None:
            raise CommandError(f"no account with external id or number {ref!r}")
        return account

    def _invite(self, o: dict[str, Any]) -> None:
        email = o["email"].strip().lower()
        try:
            validate_email(email)
        except ValidationError as e:
            raise CommandError(f"{email!r} is not an e-mail address") from e
        account = self._account(o["account"])
        if PortalUser.objects.filter(email=email).exists():
            raise CommandError(f"{email} already has a portal sign-in (`accord portal list`)")
        with transaction.atomic():
            point = ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL, value__iexact=email,
                                                contact__account=account).select_related("contact").first()
            if point is not None:
                contact = point.contact
            else:
                other = ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL, value__iexact=email).first()
                if other is not None:
                    raise CommandError(f"{email} is an address of a contact of another account; not invited")
                if not o["name"]:
                    raise CommandError(f"no contact of {account.name} has {email}: give --name to create one")
                contact = Contact.objects.create(account=account, name=o["name"])
                ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.EMAIL, value=email, primary=True)
        try:
            invite(contact, email, admin=o["admin"], invited_by="staff")
        except InvitationError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"invited {email} ({contact.name}, {account.name}{', admin' if o['admin'] else ''}): "
                          "the link is valid for 7 days")

    def _list(self, o: dict[str, Any]) -> None:
        users = PortalUser.objects.select_related("contact__account").order_by("contact__account__name", "email")
        if o["account"]:
            users = users.filter(contact__account=self._account(o["account"]))
        count = 0
        for u in users:
            count += 1
            account = u.contact.account.name if u.contact.account else "(no account)"
            last = f"{u.last_login:%Y-%m-%d %H:%M}" if u.last_login else "never"
            self.stdout.write(f"{u.email}\t{account}\t{'admin' if u.is_admin else 'user'}\t"
                              f"{'active' if u.active else 'deactivated'}\tlast sign-in {last}")
        self.stdout.write(f"{count} portal user(s)")

    def _deactivate(self, o: dict[str, Any]) -> None:
        changed = PortalUser.objects.filter(email=o["email"].strip().lower()).update(active=False)
        if not changed:
            raise CommandError(f"no portal user {o['email']}")
        self.stdout.write(f"deactivated {o['email']}")
