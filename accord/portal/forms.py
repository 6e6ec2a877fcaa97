"""The portal's forms: sign-in, a new ticket, a reply, an invitation. Limits are stated and enforced here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from accord.desk.models import Ticket

MAX_TEXT = 20_000  # characters of a ticket's message or a reply


def max_attachment_bytes() -> int:
    return int(getattr(settings, "ACCORD_PORTAL_MAX_ATTACHMENT", 10 * 1024 * 1024))


MAX_FILES = 5


class SignInForm(forms.Form):
    email = forms.EmailField(label="E-mail address", max_length=254)
    password = forms.CharField(label="Password", widget=forms.PasswordInput, max_length=200)


class LinkForm(forms.Form):
    email = forms.EmailField(label="E-mail address", max_length=254)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class FilesField(forms.FileField):
    """Up to MAX_FILES files, each at most `max_attachment_bytes()`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = [f for f in (data if isinstance(data, list | tuple) else [data]) if f]
        if len(files) > MAX_FILES:
            raise ValidationError(f"At most {MAX_FILES} files at a time.")
        limit = max_attachment_bytes()
        for f in files:
            if f.size > limit:
                raise ValidationError(f"{f.name} is {f.size:,} bytes; the limit is {limit:,} bytes per file.")
        return [super(FilesField, self).clean(f, initial) for f in files]


class TicketForm(forms.Form):
    subject = forms.CharField(max_length=300)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), max_length=MAX_TEXT)
    priority = forms.ChoiceField(choices=[(p, p) for p in ("low", "normal", "high", "urgent")], initial="normal")
    attachments = FilesField(label="Attach files")


class ReplyForm(forms.Form):
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=MAX_TEXT)
    attachments = FilesField(label="Attach files")


class InviteForm(forms.Form):
    name = forms.CharField(max_length=200)
    email = forms.EmailField(max_length=254)
    admin = forms.BooleanField(required=False, label="Portal admin (sees every ticket of the organisation, invites)")


STATUS_CHOICES = [("open", "Open"), ("done", "Solved or closed"), ("all", "All")]


class TicketFilter(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, initial="open")
    whose = forms.ChoiceField(required=False, choices=[("mine", "Mine"), ("all", "Whole organisation")])

    def statuses(self) -> list[str] | None:
        status = self.cleaned_data.get("status") or "open"
        if status == "open":
            return list(Ticket.OPEN_STATUSES)
        if status == "done":
            return [Ticket.Status.SOLVED, Ticket.Status.CLOSED]
        return None
