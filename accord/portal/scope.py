"""The one place the portal scopes what a customer may see: every portal query starts from `Scope`.

A `Scope` is built from the signed-in portal user. `Scope.rows(Model)` is the model's rows of that user's
account only (through the path in `PATHS`); a model not listed there cannot be read at all. A portal user who is
not an admin sees only the tickets they are the requester of (and what hangs from them). `Scope.get` answers
404 for a row of another account exactly as for one that does not exist, so a customer can neither see nor
count nor guess another account's rows. `accord/portal/tests/test_isolation.py` checks that the portal's views
reach the database through here only, and requests every portal URL with another account's ids.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet
from django.http import Http404

from accord.billing.models import Invoice
from accord.catalog.models import ApiCredential, CredentialUsage
from accord.desk.models import REFERENCE_PREFIX, Attachment, Message, SlaClock, Ticket
from accord.reports.models import Credit, FrozenReport

from .models import PortalUser

M = TypeVar("M", bound=Model)

# Model -> (the path to its account, the path to its ticket's requester or None when not ticket-bound).
PATHS: dict[type[Model], tuple[str, str | None]] = {
    Ticket: ("account", "contact"),
    Message: ("ticket__account", "ticket__contact"),
    Attachment: ("message__ticket__account", "message__ticket__contact"),
    SlaClock: ("ticket__account", "ticket__contact"),
    Credit: ("account", None),
    Invoice: ("account", None),
    FrozenReport: ("account", None),
    ApiCredential: ("account", None),
    CredentialUsage: ("credential__account", None),
    PortalUser: ("contact__account", None),
}
# What a customer never sees of a ticket's thread: the agents' internal notes.
HIDDEN: dict[type[Model], Q] = {
    Message: Q(kind=Message.Kind.NOTE),
    Attachment: Q(message__kind=Message.Kind.NOTE),
    Invoice: Q(status=Invoice.Status.DRAFT),  # a draft may still change: the customer sees it once finalised
}


class Scope:
    def __init__(self, user: PortalUser) -> None:
        account = user.contact.account
        if account is None:
            raise Http404("This contact belongs to no account.")
        self.user = user
        self.contact = user.contact
        self.account = account
        self.account_id: int = account.pk

    def rows(self, model: type[M], *, whole_account: bool | None = None) -> QuerySet[M]:
        """The model's rows this user may see. `whole_account` (admins only) widens a requester's view to every
        ticket of the account; by default an admin sees the account's, anyone else their own."""
        if model not in PATHS:
            raise LookupError(f"the portal does not show {model.__name__}")
        account_path, requester_path = PATHS[model]
        qs = model._default_manager.filter(**{account_path: self.account_id})
        wide = self.user.is_admin if whole_account is None else (whole_account and self.user.is_admin)
        if requester_path is not None and not wide:
            qs = qs.filter(**{requester_path: self.contact})
        if model in HIDDEN:
            qs = qs.exclude(HIDDEN[model])
        return qs

    def get(self, model: type[M], **lookup: Any) -> M:
        """One row this user may see, or 404 (the same answer for another account's row and a missing one)."""
        try:
            return self.rows(model).get(**lookup)
        except (model.DoesNotExist, model.MultipleObjectsReturned, ValueError) as e:  # type: ignore[attr-defined]
            raise Http404("Not found.") from e

    def ticket(self, reference: str) -> Ticket:
        """A ticket by its reference (ACC-000042), scoped; anything else is 404."""
        prefix, _, number = reference.upper().partition("-")
        if not number.isdigit() or prefix != REFERENCE_PREFIX or len(number) > 12:
            raise Http404("Not found.")
        return self.get(Ticket, pk=int(number))
