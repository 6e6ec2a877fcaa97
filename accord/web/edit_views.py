"""Creating and editing in the staff UI: accounts, contacts, commitments, tier overrides and customers' API keys.

Every change is made in one transaction with its audit entry (`accord.access.audit.record`, `changes` the diff of
snapshots taken before and after), so the trail never misses a change nor shows one that was rolled back. A page
needs the Django model permission of what it changes (accord/access/roles.py: managers may, agents may not).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accord.access.audit import diff, record, snapshot
from accord.access.models import AuditEntry
from accord.catalog.models import ApiCredential
from accord.customers import actions, tiers
from accord.customers.models import Account, Commitment, Contact, ContactPoint, TierOverride
from accord.lib.views import needs, staff_required
from accord.portal.invitations import InvitationError, invite

from .edit_forms import (
    AccountForm,
    AuditFilterForm,
    CommitmentForm,
    ContactForm,
    EmailPoints,
    KeyForm,
    OverrideForm,
    PhonePoints,
)

AUDIT_PAGE_SIZE = 50
# The session key under which a just-issued key waits for the one page that shows it.
_FRESH_KEY = "accord.fresh_api_key"


def _to_account(account: Account, anchor: str = "") -> HttpResponseRedirect:
    return redirect(reverse("web:account", args=[account.pk]) + (f"#{anchor}" if anchor else ""))


def _retier(account: Account) -> None:
    """Re-evaluate the account's tier after its figures changed (the tier history gets its entry there)."""
    tiers.recompute(Account.objects.filter(pk=account.pk))


# -- accounts --------------------------------------------------------------------------------------------------


@staff_required
@needs("customers.add_account")
def account_create(request: HttpRequest) -> HttpResponse:
    form = AccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            account = form.save()
            account.refresh_from_db()  # the stored values (amounts rounded as the column keeps them)
            record(request.user, "create", account, changes=diff({}, _account_snapshot(account)),
                   summary="account created")
            _retier(account)
        messages.success(request, f"Account “{account.name}” created.")
        return _to_account(account)
    return render(request, "web/edit/account_form.html", {"form": form, "account": None})


@staff_required
@needs("customers.change_account")
def account_edit(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    before = _account_snapshot(account)
    form = AccountForm(request.POST if request.method == "POST" else None, instance=account)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            account = form.save()
            account.refresh_from_db()  # the stored values (amounts rounded as the column keeps them)
            changes = diff(before, _account_snapshot(account))
            changes.pop("updated_at", None)
            if changes:
                record(request.user, "update", account, changes=changes)
            _retier(account)
        messages.success(request, f"Account “{account.name}” saved." if changes else "Nothing changed.")
        return _to_account(account)
    return render(request, "web/edit/account_form.html", {"form": form, "account": Account.objects.get(pk=pk)})


# -- contacts --------------------------------------------------------------------------------------------------


def _account_snapshot(account: Account) -> dict[str, Any]:
    data = snapshot(account)
    data["custom_fields"] = dict(account.custom_fields or {})  # as JSON, not as text
    return data


def _points(contact: Contact) -> list[dict[str, Any]]:
    return sorted(({"kind": p.kind, "value": p.value, "primary": p.primary} for p in contact.points.all()),
                  key=lambda p: (p["kind"], p["value"]))


def _contact_snapshot(contact: Contact) -> dict[str, Any]:
    data = snapshot(contact, ["name", "title", "external_id", "account_id"])
    data["custom_fields"] = dict(contact.custom_fields or {})  # as JSON, not as text: erasure pseudonymises it
    data["emails"] = [p["value"] for p in _points(contact) if p["kind"] == ContactPoint.Kind.EMAIL]
    data["phones"] = [p["value"] for p in _points(contact) if p["kind"] == ContactPoint.Kind.PHONE]
    return data


def _one_primary(contact: Contact) -> None:
    """Each kind with rows has exactly one primary: the one chosen, else the first."""
    for kind in ContactPoint.Kind.values:
        rows = list(contact.points.filter(kind=kind).order_by("id"))
        if rows and not any(r.primary for r in rows):
            ContactPoint.objects.filter(pk=rows[0].pk).update(primary=True)


def _contact_page(request: HttpRequest, account: Account, contact: Contact | None) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    before = _contact_snapshot(contact) if contact else {}  # before the forms bind: they write to the instance
    instance = contact or Contact(account=account)
    form = ContactForm(data, instance=instance)
    emails = EmailPoints(data, instance=instance, prefix="email")
    phones = PhonePoints(data, instance=instance, prefix="phone")
    if data is not None and all([form.is_valid(), emails.is_valid(), phones.is_valid()]):
        with transaction.atomic():
            saved = form.save()
            emails.instance = phones.instance = saved
            emails.save()
            phones.save()
            _one_primary(saved)
            changes = diff(before, _contact_snapshot(saved))
            if changes or contact is None:
                record(request.user, "update" if contact else "create", saved, changes=changes,
                       summary=f"contact of {account.name}")
        messages.success(request, f"Contact “{saved.name}” {'saved' if contact else 'added'}.")
        return _to_account(account, "contacts")
    return render(request, "web/edit/contact_form.html",
                  {"form": form, "emails": emails, "phones": phones, "account": account, "contact": contact})


@staff_required
@needs("customers.add_contact", "customers.add_contactpoint")
def contact_create(request: HttpRequest, pk: int) -> HttpResponse:
    return _contact_page(request, get_object_or_404(Account, pk=pk), None)


@staff_required
@needs("customers.change_contact", "customers.change_contactpoint")
def contact_edit(request: HttpRequest, pk: int, contact_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    return _contact_page(request, account, get_object_or_404(Contact, pk=contact_pk, account=account))


# -- commitments -----------------------------------------------------------------------------------------------


@staff_required
@needs("customers.add_commitment")
def commitment_create(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    form = CommitmentForm(request.POST if request.method == "POST" else None, instance=Commitment(account=account))
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            commitment = form.save()
            commitment.refresh_from_db()
            record(request.user, "create", commitment, changes=diff({}, snapshot(commitment)),
                   summary=f"commitment of {account.name}")
            _retier(account)
        messages.success(request, "Commitment added.")
        return _to_account(account, "commitments")
    return render(request, "web/edit/commitment_form.html", {"form": form, "account": account, "commitment": None})


@staff_required
@needs("customers.change_commitment")
def commitment_edit(request: HttpRequest, pk: int, commitment_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    commitment = get_object_or_404(Commitment, pk=commitment_pk, account=account)
    before = snapshot(commitment)
    form = CommitmentForm(request.POST if request.method == "POST" else None, instance=commitment)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            commitment = form.save()
            commitment.refresh_from_db()
            changes = diff(before, snapshot(commitment))
            if changes:
                record(request.user, "update", commitment, changes=changes, summary=f"commitment of {account.name}")
            _retier(account)
        messages.success(request, "Commitment saved." if changes else "Nothing changed.")
        return _to_account(account, "commitments")
    return render(request, "web/edit/commitment_form.html",
                  {"form": form, "account": account, "commitment": Commitment.objects.get(pk=commitment_pk)})


@staff_required
@needs("customers.delete_commitment")
def commitment_delete(request: HttpRequest, pk: int, commitment_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    commitment = get_object_or_404(Commitment, pk=commitment_pk, account=account)
    if request.method == "POST":
        with transaction.atomic():
            before = snapshot(commitment)
            record(request.user, "delete", commitment, changes=diff(before, {}),
                   summary=f"commitment of {account.name} deleted")
            commitment.delete()
            _retier(account)
        messages.success(request, "Commitment deleted.")
        return _to_account(account, "commitments")
    return render(request, "web/edit/confirm.html", {
        "account": account, "title": "Delete this commitment?", "button": "Delete commitment",
        "what": str(commitment), "cancel": reverse("web:account", args=[account.pk]) + "#commitments"})


# -- tier overrides --------------------------------------------------------------------------------------------


@staff_required
@needs("customers.add_tieroverride")
def override_set(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(Account.objects.select_related("tier"), pk=pk)
    form = OverrideForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                override = actions.do_override_tier(account, data["tier"], data["reason"], data["expires_at"],
                                                    user=request.user)  # type: ignore[arg-type]
                record(request.user, "create", override, changes=diff({}, snapshot(override)),
                       summary=f"tier of {account.name} set to {override.tier} by hand")
        except ValidationError as e:  # the action's own checks (the clock may have passed the expiry meanwhile)
            for field, errors in e.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Tier set to {override.tier} until {override.expires_at:%Y-%m-%d %H:%M}.")
            return _to_account(account)
    return render(request, "web/edit/override_form.html",
                  {"form": form, "account": account, "override": account.active_override()})


@staff_required
@needs("customers.change_tieroverride")
@require_POST
def override_end(request: HttpRequest, pk: int, override_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    override = get_object_or_404(TierOverride, pk=override_pk, account=account)
    if override.revoked_at is not None:
        messages.error(request, "That override had already been ended.")
        return _to_account(account)
    with transaction.atomic():
        before = snapshot(override)
        actions.do_revoke_override(override)
        override.refresh_from_db()
        record(request.user, "end-override", override, changes=diff(before, snapshot(override)),
               summary=f"manual tier of {account.name} ended")
    messages.success(request, "Override ended; the tier rules apply again.")
    return _to_account(account)


# -- customers' API keys ---------------------------------------------------------------------------------------


@staff_required
@needs("catalog.add_apicredential")
def key_issue(request: HttpRequest, pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    form = KeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            cred, key = ApiCredential.issue(account, form.cleaned_data["name"].strip())
            after = snapshot(cred)
            after.pop("key_hash", None)
            record(request.user, "issue-key", cred, changes=diff({}, after), summary=f"API key of {account.name}")
        # Shown on the next page once: the session holds it until that page takes it out.
        request.session[_FRESH_KEY] = {"id": cred.pk, "key": key}
        return redirect("web:key-issued", pk=account.pk, key_pk=cred.pk)
    return render(request, "web/edit/key_form.html", {"form": form, "account": account})


@staff_required
@needs("catalog.add_apicredential")
def key_issued(request: HttpRequest, pk: int, key_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    cred = get_object_or_404(ApiCredential, pk=key_pk, account=account)
    fresh = request.session.get(_FRESH_KEY)
    key = None
    if isinstance(fresh, dict) and fresh.get("id") == cred.pk:
        key = fresh.get("key")
        del request.session[_FRESH_KEY]
    response = render(request, "web/edit/key_issued.html", {"account": account, "credential": cred, "key": key})
    response["Cache-Control"] = "no-store"
    return response


@staff_required
@needs("catalog.change_apicredential")
def key_revoke(request: HttpRequest, pk: int, key_pk: int) -> HttpResponse:
    account = get_object_or_404(Account, pk=pk)
    cred = get_object_or_404(ApiCredential, pk=key_pk, account=account)
    if cred.revoked_at is not None:
        messages.error(request, f"The key {cred.prefix}… was already revoked on {cred.revoked_at:%Y-%m-%d %H:%M}.")
        return _to_account(account, "credentials")
    if request.method == "POST":
        with transaction.atomic():
            locked = ApiCredential.objects.select_for_update().get(pk=cred.pk)
            if locked.revoked_at is None:
                before = snapshot(locked, ["revoked_at"])
                locked.revoke()
                record(request.user, "revoke-key", locked, changes=diff(before, snapshot(locked, ["revoked_at"])),
                       summary=f"API key of {account.name}")
        messages.success(request, f"Key {cred.prefix}… revoked; requests with it are refused from now on.")
        return _to_account(account, "credentials")
    return render(request, "web/edit/confirm.html", {
        "account": account, "title": "Revoke this API key?", "button": "Revoke key",
        "what": f"{cred.prefix}… {cred.name}".strip(),
        "detail": "Requests with this key are refused from now on; this cannot be undone (issue a new key instead).",
        "cancel": reverse("web:account", args=[account.pk]) + "#credentials"})


# -- the account's history and the audit page ------------------------------------------------------------------


def account_trail(account: Account, limit: int = 50) -> QuerySet[AuditEntry]:
    """Audit entries about the account and the records it holds (contacts, commitments, overrides, keys), newest
    first; a deleted record is found by the account id its last snapshot names."""
    children = {
        "customers.contact": account.contacts.values_list("pk", flat=True),
        "customers.commitment": account.commitments.values_list("pk", flat=True),
        "customers.tieroverride": account.tier_overrides.values_list("pk", flat=True),
        "catalog.apicredential": account.credentials.values_list("pk", flat=True),
    }
    held: dict[str, set[str]] = {t: {str(i) for i in ids} for t, ids in children.items()}
    for object_type, object_id in AuditEntry.objects.filter(
        object_type__in=list(children), action="delete", changes__account_id__0=account.pk
    ).values_list("object_type", "object_id"):
        held[object_type].add(object_id)
    q = Q(object_type="customers.account", object_id=str(account.pk))
    for object_type, ids in held.items():
        if ids:
            q |= Q(object_type=object_type, object_id__in=sorted(ids))
    return AuditEntry.objects.filter(q).select_related("user").order_by("-at", "-id")[:limit]


@staff_required
@needs("access.view_auditentry")
def audit(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    qs = AuditEntry.objects.select_related("user").order_by("-at", "-id")
    if form.is_bound:
        qs = form.filter(qs) if form.is_valid() else qs.none()
    page = Paginator(qs, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "web/edit/audit.html", {"form": form, "page": page, "query": query.urlencode()})


# -- portal invitations ----------------------------------------------------------------------------------------


@staff_required
@needs("customers.change_contact")
@require_POST
def portal_invite(request: HttpRequest, pk: int, contact_pk: int) -> HttpResponse:
    """Invite a contact to the customer portal at their first e-mail address (`docs/portal.md`)."""
    account = get_object_or_404(Account, pk=pk)
    contact = get_object_or_404(Contact.objects.prefetch_related("points"), pk=contact_pk, account=account)
    if not contact.emails:
        messages.error(request, f"{contact.name} has no e-mail address to send the invitation to.")
        return _to_account(account, "contacts")
    try:
        with transaction.atomic():
            user = invite(contact, contact.emails[0], admin=request.POST.get("admin") == "on",
                          invited_by=request.user.get_username(), request=request)
            record(request.user, "portal-invite", contact, summary=f"invited {contact.name} to the portal"
                   + (" as a portal admin" if user.is_admin else ""))
    except InvitationError as e:
        messages.error(request, str(e))
        return _to_account(account, "contacts")
    messages.success(request, f"{contact.name} is invited to the portal: the link went to {user.email}.")
    return _to_account(account, "contacts")
