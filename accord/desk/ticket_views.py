"""Ticket-level desk pages: open a ticket or log a call (/desk/new/), merge a duplicate, link an unknown requester.

Each page keeps what was typed on any refusal and says why next to the field (status 400); the actions are in
ticket_actions.py, shared with the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from accord.customers.models import Account, Contact
from accord.lib.views import needs, staff_required

from . import ticket_actions
from .actions import normalise_phone
from .forms import REPLY_LIMIT, LimitedText
from .models import Ticket

CHANNELS = [(Ticket.Channel.PHONE, "phone call"), (Ticket.Channel.EMAIL, "e-mail"), (Ticket.Channel.WEB, "web form")]


def _contacts() -> Any:
    return Contact.objects.select_related("account").order_by("name", "pk")


class ContactChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.account.name})" if obj.account else f"{obj.name} (no account)"


class NewTicketForm(forms.Form):
    contact = ContactChoice(queryset=_contacts(), required=False, label="Requester (a contact)",
                            empty_label="— an unknown requester —")
    address = forms.CharField(required=False, max_length=254, label="Or their e-mail address / phone number",
                              help_text="For a requester who is not a contact yet.")
    account = forms.ModelChoiceField(queryset=Account.objects.order_by("name"), required=False, label="Account",
                                     empty_label="— the contact's account —")
    channel = forms.ChoiceField(choices=CHANNELS, label="Channel", initial=Ticket.Channel.PHONE)
    direction = forms.ChoiceField(choices=[("inbound", "they called us"), ("outbound", "we called them")],
                                  label="Call direction", required=False, initial="inbound")
    duration_minutes = forms.IntegerField(min_value=0, max_value=24 * 60, required=False,
                                          label="Call duration (minutes)")
    priority = forms.ChoiceField(choices=Ticket.Priority.choices, initial=Ticket.Priority.NORMAL, label="Priority")
    subject = forms.CharField(max_length=300, label="Subject")
    body = LimitedText(label="First message (what the customer said)", what="message", limit=REPLY_LIMIT,
                       widget=forms.Textarea(attrs={"rows": 6}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        contact, address, account = data.get("contact"), (data.get("address") or "").strip(), data.get("account")
        channel = data.get("channel")
        if contact is None and not address:
            self.add_error("contact", "Pick a contact, or give the requester's e-mail address or phone number.")
        if address:
            if channel == Ticket.Channel.PHONE:
                phone = normalise_phone(address)
                if len(phone.lstrip("+")) < 5 or any(ch.isalpha() for ch in address):
                    self.add_error("address", f"'{address}' is not a phone number.")
                else:
                    data["address"] = phone
            else:
                try:
                    validate_email(address)
                except ValidationError:
                    self.add_error("address", f"'{address}' is not an e-mail address.")
        if contact is not None and account is not None and contact.account_id not in (None, account.pk):
            self.add_error("account", f"{contact.name} belongs to {contact.account.name}, not {account.name}.")
        if channel == Ticket.Channel.PHONE and data.get("duration_minutes") is None:
            self.add_error("duration_minutes", "How long was the call? (0 for a missed call)")
        return data


@staff_required
@needs("desk.add_ticket")
def new_ticket(request: HttpRequest) -> HttpResponse:
    """Open a ticket for a customer, or log a phone call, as the channels do."""
    if request.method == "POST":
        form = NewTicketForm(request.POST)
        if form.is_valid():
            d = form.cleaned_data
            try:
                t = ticket_actions.open_from_ui(
                    user=request.user, subject=d["subject"], body=d["body"], channel=d["channel"],
                    priority=d["priority"], contact=d["contact"], account=d["account"], address=d["address"],
                    duration_seconds=(d["duration_minutes"] or 0) * 60, direction=d["direction"],
                )
            except ValidationError as e:
                form.add_error(None, e.messages)
            else:
                messages.success(request, f"{t.reference} opened." + (" Its SLA clocks run." if t.agreement_id
                                                                      else " No agreement applies: no clocks."))
                return redirect("desk:ticket", pk=t.pk)
        return render(request, "desk/new_ticket.html", {"form": form}, status=400)
    return render(request, "desk/new_ticket.html", {"form": NewTicketForm()})


class MergeForm(forms.Form):
    into = forms.CharField(max_length=30, label="Merge into ticket (reference or number)",
                           help_text="e.g. ACC-000042; this ticket's messages move there and this one is closed.")
    confirm_other_account = forms.BooleanField(required=False, label="Yes, merge across different accounts")


@staff_required
@needs("desk.change_ticket")
def merge(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket.objects.select_related("account"), pk=pk)
    form = MergeForm(request.POST or None)
    status = 200
    ask_confirm = False
    if request.method == "POST":
        if form.is_valid():
            target = ticket_actions.find_ticket(form.cleaned_data["into"])
            try:
                ticket_actions.do_merge(t, target, by=request.user,
                                        confirm_other_account=form.cleaned_data["confirm_other_account"])
            except ValidationError as e:
                ask_confirm = "confirm_other_account" in e.message_dict
                for name, errors in e.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                assert target is not None
                messages.success(request, f"{t.reference} merged into {target.reference}.")
                return redirect("desk:ticket", pk=target.pk)
        status = 400
    return render(request, "desk/merge.html", {"ticket": t, "form": form, "ask_confirm": ask_confirm}, status=status)


class LinkForm(forms.Form):
    contact = ContactChoice(queryset=_contacts().filter(account__isnull=False), required=False,
                            label="An existing contact", empty_label="— a new contact (below) —")
    name = forms.CharField(max_length=200, required=False, label="New contact's name")
    email = forms.EmailField(required=False, label="New contact's e-mail address")
    account = forms.ModelChoiceField(queryset=Account.objects.order_by("name"), required=False,
                                     label="New contact's account", empty_label="— choose —")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("contact") is None:
            if not (data.get("name") or "").strip():
                self.add_error("name", "Pick a contact above, or give the new contact's name.")
            if data.get("account") is None:
                self.add_error("account", "A new contact needs an account (its agreement applies to the ticket).")
        return data


@staff_required
@needs("desk.change_ticket", "customers.view_contact")
def link_requester(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket.objects.select_related("contact", "account"), pk=pk)
    first = t.messages.filter(kind="inbound").order_by("created_at", "id").first()
    initial = {"email": first.from_address if first and "@" in first.from_address else "",
               "name": t.contact.name if t.contact else ""}
    form = LinkForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            try:
                from django.db import transaction

                with transaction.atomic():
                    contact = d["contact"]
                    if contact is None:
                        if not request.user.has_perm("customers.add_contact"):
                            raise ValidationError({"name": "Your role cannot create contacts: pick an existing one."})
                        contact = ticket_actions.new_contact(d["name"], d["email"] or "", d["account"])
                    ticket_actions.do_link_requester(t, contact, by=request.user)
            except ValidationError as e:
                for name, errors in e.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                t.refresh_from_db()
                clocks_note = " Its SLA clocks run from its creation." if t.agreement_id else " No agreement applies."
                messages.success(request, f"{t.reference} linked to {contact.name}.{clocks_note}")
                return redirect("desk:ticket", pk=t.pk)
        status = 400
    return render(request, "desk/link_requester.html", {"ticket": t, "form": form}, status=status)
