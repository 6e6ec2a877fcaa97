"""Inviting a contact to the portal: one function for the staff page, `accord portal invite` and portal admins."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from accord.customers.models import Contact

from . import auth
from .models import PortalUser


class InvitationError(ValueError):
    """Why a contact cannot be invited (said to the user as it is)."""


def invite(contact: Contact, email: str, *, admin: bool = False, invited_by: str = "staff",
           inviter_name: str = "", request: HttpRequest | None = None) -> PortalUser:
    """Give the contact a portal sign-in at this address and mail them the invitation link (7 days)."""
    email = email.strip().lower()
    if contact.account_id is None:
        raise InvitationError(f"{contact.name} belongs to no account: a portal shows an account's data")
    if PortalUser.objects.filter(email=email).exists():
        raise InvitationError(f"{email} already has a portal sign-in")
    if PortalUser.objects.filter(contact=contact).exists():
        raise InvitationError(f"{contact.name} already has a portal sign-in")
    with transaction.atomic():
        user = PortalUser.objects.create(contact=contact, email=email, is_admin=admin, invited_by=invited_by)
    auth.mail_link(request, user, "invitation", inviter=inviter_name)
    return user
