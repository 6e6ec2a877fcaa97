"""Desk settings (`/desk/settings/`): mailboxes, webhook channels, escalation rules, support groups and their
members, created, edited and deleted in the staff UI. Managers change them (agents read them: roles.py EXCEPT);
every change writes an audit entry (accord.access.audit) without the secrets' values."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse

from accord.access.audit import diff, record, snapshot, trail
from accord.lib.db import in_use
from accord.lib.views import needs, staff_required

from .models import EscalationRule, Mailbox, SupportGroup, WebhookChannel
from .settings_forms import (
    EscalationRuleForm,
    MailboxForm,
    MemberForm,
    SupportGroupForm,
    WebhookChannelForm,
)

SECRET = "(secret)"  # what the audit trail says instead of a password or a signing secret


@dataclass(frozen=True)
class Section:
    slug: str
    model: type[models.Model]
    form: type[forms.ModelForm]
    title: str  # plural, for headings
    singular: str
    secrets: tuple[str, ...] = ()

    def perm(self, action: str) -> str:
        return f"desk.{action}_{self.model._meta.model_name}"


SECTIONS = {
    s.slug: s for s in (
        Section("mailboxes", Mailbox, MailboxForm, "Mailboxes", "mailbox", ("password",)),
        Section("webhooks", WebhookChannel, WebhookChannelForm, "Webhook channels", "webhook channel", ("secret",)),
        Section("escalation", EscalationRule, EscalationRuleForm, "Escalation rules", "escalation rule"),
        Section("groups", SupportGroup, SupportGroupForm, "Support groups", "support group"),
    )
}


def _section(slug: str, request: HttpRequest, action: str) -> Section:
    section = SECTIONS.get(slug)
    if section is None:
        raise Http404("No such desk setting.")
    if not request.user.has_perm(section.perm(action)):
        raise PermissionDenied(f"Your role does not allow this page (it needs {section.perm(action)}).")
    return section


def _state(section: Section, obj: models.Model) -> dict[str, Any]:
    """What the audit trail compares: the fields, the many-to-many ones by their keys, secrets masked."""
    state = snapshot(obj)
    for name in section.secrets:
        state[name] = SECRET if state.get(name) else ""
    state.pop("last_polled_at", None)
    state.pop("last_error", None)
    if obj.pk:
        for m2m in obj._meta.many_to_many:
            state[m2m.name] = sorted(getattr(obj, m2m.name).values_list("pk", flat=True))
    return state


@staff_required
@needs("desk.view_mailbox", "desk.view_webhookchannel", "desk.view_escalationrule", "desk.view_supportgroup")
def overview(request: HttpRequest) -> HttpResponse:
    shown = {
        "mailboxes": Mailbox.objects.select_related("group"),
        "webhooks": WebhookChannel.objects.select_related("group"),
        "escalation": EscalationRule.objects.select_related("assignee", "group").prefetch_related("tiers"),
        "groups": SupportGroup.objects.prefetch_related("members"),
    }
    user = request.user
    blocks = [{"section": s, "rows": shown[slug], "can_add": user.has_perm(s.perm("add")),
               "can_change": user.has_perm(s.perm("change"))} for slug, s in SECTIONS.items()]
    return render(request, "desk/settings/overview.html", {"blocks": blocks})


@staff_required
def edit(request: HttpRequest, slug: str, pk: int | None = None) -> HttpResponse:
    """Create (no pk) or edit one object; a refused form is shown again with every field's error, nothing lost."""
    section = _section(slug, request, "change" if pk else "add")
    obj = get_object_or_404(section.model, pk=pk) if pk else section.model()
    before = _state(section, obj) if pk else {}
    shown_secret = request.session.pop(f"desk-secret-{slug}-{pk}", None) if pk else None
    form = section.form(request.POST or None, instance=obj)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            saved = form.save(commit=False)
            new_secret = ""
            if isinstance(saved, WebhookChannel) and (not pk or form.cleaned_data.get("rotate")):
                new_secret = saved.secret = secrets.token_urlsafe(32)
            saved.save()
            form.save_m2m()
            after = _state(section, saved)
            changes = diff(before, after)
            if isinstance(form, MailboxForm) and pk and form.password_changed():
                changes["password"] = [SECRET, "(changed)"]
            if new_secret and pk:
                changes["secret"] = [SECRET, "(new secret)"]
            if changes or not pk:
                record(request.user, "update" if pk else "create", saved, changes=changes,
                       summary=f"{section.singular} {saved}: " + (", ".join(changes) if pk else "created"))
        if new_secret:
            request.session[f"desk-secret-{slug}-{saved.pk}"] = new_secret
        messages.success(request, f"{section.singular.capitalize()} {saved} {'saved' if pk else 'created'}."
                         if changes or not pk else f"Nothing changed in {section.singular} {saved}.")
        return HttpResponseRedirect(reverse("desk:settings-edit", args=[slug, saved.pk]))
    context: dict[str, Any] = {
        "section": section, "form": form, "obj": obj if pk else None, "shown_secret": shown_secret,
        "can_delete": pk is not None and request.user.has_perm(section.perm("delete")),
        "trail": trail(obj) if pk and request.user.has_perm("access.view_auditentry") else None,
    }
    if isinstance(obj, SupportGroup) and pk:
        context["members"] = obj.members.order_by("username")
        context["member_form"] = MemberForm(group=obj)
    return render(request, "desk/settings/edit.html", context, status=400 if form.errors else 200)


@staff_required
def delete(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    section = _section(slug, request, "delete")
    obj = get_object_or_404(section.model, pk=pk)
    if request.method != "POST":
        return render(request, "desk/settings/delete.html", {"section": section, "obj": obj})
    name = str(obj)
    try:
        with transaction.atomic():
            record(request.user, "delete", obj, changes=diff(_state(section, obj), {}),
                   summary=f"{section.singular} {name}: deleted")
            obj.delete()
    except (ProtectedError, RestrictedError) as e:
        messages.error(request, f"{section.singular.capitalize()} {name} cannot be deleted: {in_use(e)}")
        return HttpResponseRedirect(reverse("desk:settings-edit", args=[slug, pk]))
    messages.success(request, f"{section.singular.capitalize()} {name} deleted.")
    return HttpResponseRedirect(reverse("desk:settings"))


@staff_required
@needs("desk.change_supportgroup")
def members(request: HttpRequest, pk: int) -> HttpResponse:
    """Add an agent to a group (`user`), or remove one (`remove`)."""
    group = get_object_or_404(SupportGroup, pk=pk)
    back = HttpResponseRedirect(reverse("desk:settings-edit", args=["groups", pk]))
    if request.method != "POST":
        return back
    if "remove" in request.POST:
        gone = group.members.filter(pk=request.POST.get("remove") or 0).first()
        if gone is None:
            messages.error(request, "That agent is not in the group.")
            return back
        with transaction.atomic():
            group.members.remove(gone)
            record(request.user, "remove-member", group, changes={"members": [gone.get_username(), None]},
                   summary=f"support group {group}: removed {gone.get_username()}")
        messages.success(request, f"{gone.get_username()} removed from {group}.")
        return back
    form = MemberForm(request.POST, group=group)
    if not form.is_valid():
        messages.error(request, "Agent: " + " ".join(str(e) for e in form.errors.get("user", ["choose an agent"])))
        return back
    user = form.cleaned_data["user"]
    with transaction.atomic():
        group.members.add(user)
        record(request.user, "add-member", group, changes={"members": [None, user.get_username()]},
               summary=f"support group {group}: added {user.get_username()}")
    messages.success(request, f"{user.get_username()} added to {group}.")
    return back


urlpatterns = [
    path("settings/", overview, name="settings"),
    path("settings/groups/<int:pk>/members/", members, name="settings-members"),
    path("settings/<slug:slug>/new/", edit, name="settings-new"),
    path("settings/<slug:slug>/<int:pk>/", edit, name="settings-edit"),
    path("settings/<slug:slug>/<int:pk>/delete/", delete, name="settings-delete"),
]
