"""Forms of the desk: the public web form and the agent's reply box."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core import signing

from .models import Ticket

FORM_SALT = "accord.desk.webform"
MIN_FILL_SECONDS = 2  # people take longer than this to write a request; bots do not
MAX_FILL_SECONDS = 24 * 3600


class SupportRequestForm(forms.Form):
    """The public web form: name, e-mail, subject, message; a honeypot and a signed timestamp stop bots."""

    name = forms.CharField(max_length=200)
    email = forms.EmailField()
    subject = forms.CharField(max_length=300)
    message = forms.CharField(widget=forms.Textarea, max_length=20_000)
    website = forms.CharField(required=False, label="Leave this empty")  # honeypot: hidden from people
    token = forms.CharField(widget=forms.HiddenInput)

    @staticmethod
    def new_token() -> str:
        return signing.TimestampSigner(salt=FORM_SALT).sign("form")

    def clean_website(self) -> str:
        if self.cleaned_data.get("website"):
            raise forms.ValidationError("Please leave this field empty.")
        return ""

    def clean_token(self) -> str:
        token = self.cleaned_data["token"]
        signer = signing.TimestampSigner(salt=FORM_SALT)
        try:
            signer.unsign(token, max_age=MAX_FILL_SECONDS)
        except signing.SignatureExpired:
            raise forms.ValidationError("This form has expired; please reload the page.") from None
        except signing.BadSignature:
            raise forms.ValidationError("This form is not valid; please reload the page.") from None
        try:
            signer.unsign(token, max_age=MIN_FILL_SECONDS)
        except signing.SignatureExpired:
            return token  # older than the minimum: a person
        raise forms.ValidationError("That was quick. Please check your message and send it again.")


class ReplyForm(forms.Form):
    """The agent's reply box: a public reply or an internal note, and optionally a new status."""

    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=50_000)
    kind = forms.ChoiceField(choices=[("reply", "Public reply"), ("note", "Internal note")], initial="reply")
    status = forms.ChoiceField(choices=[("", "keep status"), *Ticket.Status.choices], required=False)


class TicketUpdateForm(forms.Form):
    """Priority, status and assignment changes from the ticket page."""

    priority = forms.ChoiceField(choices=Ticket.Priority.choices, required=False)
    status = forms.ChoiceField(choices=Ticket.Status.choices, required=False)
    assign_to_me = forms.BooleanField(required=False)

    def changed_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v}
