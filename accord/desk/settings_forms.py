"""Forms of the desk settings (settings_views.py): mailboxes, webhook channels, escalation rules, support groups.

Secrets never go back to the browser: a mailbox's IMAP password is write-only (left blank, the stored one is
kept) and a webhook channel's signing secret is made by Accord and shown once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from accord.customers.models import Tier

from .models import EscalationRule, Mailbox, SupportGroup, Ticket, WebhookChannel

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def staff_users() -> QuerySet[Any]:
    """Who may be a group's member or a rule's assignee: active staff users."""
    return get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")


def agents() -> QuerySet[Any]:
    """Staff users who work tickets: holders of a role with the desk (agent, manager), or superusers."""
    return staff_users().filter(Q(groups__name__in=("agent", "manager")) | Q(is_superuser=True)).distinct()


def _f(form: forms.BaseForm, name: str) -> Any:
    """A form's field, typed loosely (choice fields have a queryset, labels of their own)."""
    return form.fields[name]


class UserChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        full = obj.get_full_name()
        return f"{obj.get_username()} ({full})" if full else obj.get_username()


class UserChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        full = obj.get_full_name()
        return f"{obj.get_username()} ({full})" if full else obj.get_username()


def valid_host(value: str) -> str:
    """A host name or an IP address, as a mail server is named: no scheme, no port, no spaces."""
    value = value.strip().rstrip(".")
    if "://" in value:
        raise forms.ValidationError("Give the host name only, without a scheme such as imaps://.")
    if ":" in value and not value.count(":") > 1:
        raise forms.ValidationError("Give the port in the Port field, not after the host.")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise forms.ValidationError(f"“{value[:60]}” is not a host name (like imap.example.com) or an IP address.")
    return value.lower()


class MailboxForm(forms.ModelForm):
    password = forms.CharField(
        label="Password", required=False, strip=False, max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Never shown again. Leave it blank to keep the stored password.",
    )
    port = forms.IntegerField(label="Port", min_value=1, max_value=65535, initial=993,
                              help_text="993 for TLS from the start, 143 for STARTTLS.")

    class Meta:
        model = Mailbox
        fields = ["name", "enabled", "host", "port", "security", "username", "password", "folder", "address", "group"]
        help_texts = {"name": "Letters, digits, - and _.", "host": "The IMAP server, e.g. imap.example.com."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _f(self, "group").empty_label = "(none)"
        if self.instance.pk is None:
            self.fields["password"].help_text = "Never shown again once saved."

    def clean_host(self) -> str:
        return valid_host(self.cleaned_data["host"])

    def clean_password(self) -> str:
        value: str = self.cleaned_data.get("password") or ""
        if not value:
            if self.instance.pk is None:
                raise forms.ValidationError("A new mailbox needs the password to sign in with.")
            return str(self.instance.password)  # blank: keep what is stored
        return value

    def password_changed(self) -> bool:
        return bool(self.data.get(self.add_prefix("password")))


class WebhookChannelForm(forms.ModelForm):
    reply_url = forms.URLField(
        label="Reply URL", max_length=500, required=False, assume_scheme="https",
        help_text=str(WebhookChannel._meta.get_field("reply_url").help_text),
    )
    rotate = forms.BooleanField(label="Make a new signing secret (the sender must then use the new one)",
                                required=False)

    class Meta:
        model = WebhookChannel
        fields = ["name", "enabled", "group", "reply_url"]
        help_texts = {"name": "Letters, digits, - and _. Messages are posted to /api/v1/desk/webhook/<name>/."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _f(self, "group").empty_label = "(none)"
        if self.instance.pk is None:
            del self.fields["rotate"]


class EscalationRuleForm(forms.ModelForm):
    tiers = forms.ModelMultipleChoiceField(queryset=Tier.objects.order_by("rank"), required=False,
                                           widget=forms.CheckboxSelectMultiple, help_text="None ticked: any tier.")
    priorities = forms.MultipleChoiceField(choices=Ticket.Priority.choices, required=False,
                                           widget=forms.CheckboxSelectMultiple, help_text="None ticked: any priority.")
    assignee = UserChoice(queryset=staff_users(), required=False, empty_label="(none)")

    class Meta:
        model = EscalationRule
        fields = ["name", "enabled", "order", "trigger", "clock_kind", "tiers", "priorities", "action", "assignee",
                  "group", "notify_email"]
        labels = {"clock_kind": "Clock", "notify_email": "Notify e-mail"}
        help_texts = {"order": "Rules run in this order (lowest first).", "clock_kind": "Blank: any clock.",
                      "notify_email": "Where a notify rule writes."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _f(self, "assignee").queryset = staff_users()
        _f(self, "group").empty_label = "(none)"
        _f(self, "clock_kind").choices = [("", "(any)"), *[c for c in _f(self, "clock_kind").choices if c[0]]]
        if self.instance.pk is not None:
            self.initial["priorities"] = list(self.instance.priorities or [])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        if action == EscalationRule.Action.REASSIGN and not data.get("assignee") and not data.get("group"):
            self.add_error("assignee", "A reassign rule needs an agent or a group to reassign to.")
            self.add_error("group", "A reassign rule needs an agent or a group to reassign to.")
        if action == EscalationRule.Action.NOTIFY and not data.get("notify_email"):
            self.add_error("notify_email", "A notify rule needs the address to write to.")
        return data


class SupportGroupForm(forms.ModelForm):
    members = UserChoices(queryset=agents(), required=False, widget=forms.CheckboxSelectMultiple,
                          help_text="The agents in the group.")

    class Meta:
        model = SupportGroup
        fields = ["name", "email", "members"]
        help_texts = {"name": "Letters, digits, - and _.", "email": "Optional: the group's own address."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # members who lost their role stay listed, so saving the form does not drop them without a word
        listed = Q(pk__in=agents().values("pk"))
        if self.instance.pk:
            listed |= Q(pk__in=self.instance.members.values("pk"))
        _f(self, "members").queryset = get_user_model().objects.filter(listed).order_by("username")

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        clash = SupportGroup.objects.filter(name__iexact=name).exclude(pk=self.instance.pk).first()
        if clash is not None:
            raise forms.ValidationError(f"There is a group named “{clash.name}” already.")
        return name


class MemberForm(forms.Form):
    """Add one agent to a group."""

    user = UserChoice(queryset=agents(), label="Agent", empty_label="(choose an agent)")

    def __init__(self, *args: Any, group: SupportGroup, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _f(self, "user").queryset = agents().exclude(pk__in=group.members.values("pk"))
