"""Forms of the desk: the public web form and the agent's reply box."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.core import signing

from .models import Ticket

FORM_SALT = "accord.desk.webform"
MIN_FILL_SECONDS = 2  # people take longer than this to write a request; bots do not
MAX_FILL_SECONDS = 24 * 3600
MESSAGE_LIMIT = 20_000  # characters of a web form message
REPLY_LIMIT = 50_000  # characters of an agent's reply or note


class LimitedText(forms.CharField):
    """Free text with a limit that is said before it bites, and never cuts what was typed.

    No `maxlength` attribute: a browser cuts pasted text at it without a word. The limit is in the help text
    (and the page's counter), and text over it is refused with an error that says by how much, while the form
    keeps it. Line breaks count once, as the browser's counter counts them (forms send them as CR LF).
    """

    def __init__(self, *, limit: int, what: str, **kwargs: Any) -> None:
        self.limit = limit
        self.what = what
        kwargs.setdefault("help_text", f"Up to {limit:,} characters.")
        kwargs.setdefault("error_messages", {"required": f"Please write the {what} first."})
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).replace("\r\n", "\n")

    def validate(self, value: Any) -> None:
        super().validate(value)
        if len(value) > self.limit:
            raise forms.ValidationError(
                f"The {self.what} has {len(value):,} characters; the limit is {self.limit:,}. Please shorten it by "
                f"{len(value) - self.limit:,} characters: your text is still here.",
                code="max_length",
            )

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        return {**super().widget_attrs(widget), "data-limit": str(self.limit)}


def describe_limits(form: forms.Form) -> None:
    """Tie each limited text box to the hint that states its limit (the hint's id is the box's id + "_hint")."""
    for name, field in form.fields.items():
        if isinstance(field, LimitedText) and isinstance(form.auto_id, str):
            field.widget.attrs["aria-describedby"] = f"{form.auto_id % name}_hint"


class SupportRequestForm(forms.Form):
    """The public web form: name, e-mail, subject, message; a honeypot and a signed timestamp stop bots."""

    name = forms.CharField(label="Your name", max_length=200)
    email = forms.EmailField(label="Your e-mail address")
    subject = forms.CharField(label="Subject", max_length=300)
    message = LimitedText(label="Message", what="message", limit=MESSAGE_LIMIT, widget=forms.Textarea,
                          error_messages={"required": "Please write your message."})
    # The honeypot: hidden from people, from screen readers (aria-hidden around it) and from the keyboard
    # (tabindex -1), and never filled in by the browser's autofill: only a bot that fills every field fills it.
    website = forms.CharField(required=False, label="Leave this empty",
                              widget=forms.TextInput(attrs={"tabindex": "-1", "autocomplete": "off"}))
    token = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Short fields too: a `maxlength` would cut a pasted line silently; the server says so instead.
        for field in self.fields.values():
            field.widget.attrs.pop("maxlength", None)
        describe_limits(self)

    @staticmethod
    def new_token() -> str:
        """A signed, timestamped nonce: each form shown can be sent once (the view records the nonce)."""
        return signing.TimestampSigner(salt=FORM_SALT).sign(secrets.token_urlsafe(16))

    def clean_website(self) -> str:
        if self.cleaned_data.get("website"):
            raise forms.ValidationError("Please leave this field empty.")
        return ""

    def clean_token(self) -> str:
        token = self.cleaned_data["token"]
        signer = signing.TimestampSigner(salt=FORM_SALT)
        try:
            nonce = signer.unsign(token, max_age=MAX_FILL_SECONDS)
        except signing.SignatureExpired:
            raise forms.ValidationError("This form has expired; please reload the page.") from None
        except signing.BadSignature:
            raise forms.ValidationError("This form is not valid; please reload the page.") from None
        try:
            signer.unsign(token, max_age=MIN_FILL_SECONDS)
        except signing.SignatureExpired:
            return nonce  # older than the minimum: a person; the view spends the nonce
        raise forms.ValidationError("That was quick. Please check your message and send it again.")


class ReplyForm(forms.Form):
    """The agent's reply box: a public reply or an internal note, and optionally a new status."""

    body = LimitedText(label="Reply", what="reply", limit=REPLY_LIMIT, widget=forms.Textarea(attrs={"rows": 5}),
                       error_messages={"required": "Please write the reply (or the note) first."})
    kind = forms.ChoiceField(label="Send as", choices=[("reply", "Public reply"), ("note", "Internal note")],
                             initial="reply")
    status = forms.ChoiceField(label="New status", choices=[("", "keep status"), *Ticket.Status.choices],
                               required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "id_reply_%s")  # the ticket page has two forms with a status: ids of its own
        super().__init__(*args, **kwargs)
        describe_limits(self)


class TicketUpdateForm(forms.Form):
    """Priority, status and assignment changes from the ticket page."""

    priority = forms.ChoiceField(label="Priority", choices=Ticket.Priority.choices, required=False)
    status = forms.ChoiceField(label="Status", choices=Ticket.Status.choices, required=False)
    assign_to_me = forms.BooleanField(label="Assign to me", required=False)
    assign = forms.ChoiceField(label="Assign to", required=False)

    def changed_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "id_update_%s")
        super().__init__(*args, **kwargs)
        self.fields["assign"].choices = [("", "keep as it is"), *assign_choices()]  # type: ignore[attr-defined]


def assign_choices() -> list[tuple[str, Any]]:
    """Agents (the agent and manager roles) and support groups, as the assign selects offer them."""
    from .filters import agents
    from .models import SupportGroup

    return [
        ("Agents", [("assignee:none", "nobody (unassign)"), *((f"assignee:{u.pk}", u.username) for u in agents())]),
        ("Groups", [("group:none", "no group"), *((f"group:{g.pk}", g.name) for g in SupportGroup.objects.order_by("name"))]),
    ]


class SavedFilterForm(forms.Form):
    """Save the queue's current filters under a name."""

    name = forms.CharField(label="Save these filters as", max_length=80)
    query = forms.CharField(widget=forms.HiddenInput, required=False, max_length=2000)

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Please give the filter a name.")
        return name

    def clean_query(self) -> str:
        from django.http import QueryDict

        query = QueryDict(self.cleaned_data.get("query", ""), mutable=True)
        query.pop("page", None)
        return query.urlencode()


class BulkForm(forms.Form):
    """One change to the tickets selected in the queue."""

    tickets = forms.ModelMultipleChoiceField(
        queryset=Ticket.objects.all(), widget=forms.MultipleHiddenInput,
        error_messages={"required": "Select at least one ticket.",
                        "invalid_choice": "Ticket %(value)s does not exist (any more).",
                        "invalid_pk_value": "“%(pk)s” is not a ticket number."},
    )
    change = forms.ChoiceField(label="Change the selected tickets", error_messages={"required": "Choose a change."})
    tag = forms.SlugField(label="Tag", required=False, max_length=60,
                          help_text="For “add tag”: letters, digits, - and _.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "id_bulk_%s")
        super().__init__(*args, **kwargs)
        self.fields["change"].choices = [  # type: ignore[attr-defined]
            ("", "choose…"),
            ("Status", [(f"status:{v}", f"status: {label}") for v, label in Ticket.Status.choices]),
            ("Priority", [(f"priority:{v}", f"priority: {label}") for v, label in Ticket.Priority.choices]),
            *assign_choices(),
            ("Tags", [("tag", "add the tag below")]),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("change") == "tag" and not data.get("tag"):
            self.add_error("tag", "Write the tag to add.")
        return data


def split_assign(value: str) -> tuple[str, int | None]:
    """'assignee:5' -> ('assignee', 5); 'group:none' -> ('group', None)."""
    kind, _, pk = value.partition(":")
    return kind, (None if pk == "none" else int(pk))
