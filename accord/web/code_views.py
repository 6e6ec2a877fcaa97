"""Pages of what stays code: the YAML editor (accord/web/code_editor.py), and the calendar and policy pages
that the agreement and service pages already have, each with its Edit as YAML link and audit trail."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse

from accord.agreements.hours import WEEKDAYS
from accord.agreements.models import BusinessCalendar
from accord.governance.models import Policy
from accord.lib.manifest import export_object, kind
from accord.lib.views import needs, staff_required

from . import code_editor

# Where each kind's object page is, by its name.
DETAIL = {"agreements": "web:agreement", "calendars": "web:calendar", "services": "web:service",
          "policies": "web:policy"}
LIST = {"agreements": "web:agreements", "calendars": "web:calendars", "services": "web:services",
        "policies": "web:policies"}
TITLES = {"agreements": "Agreements", "calendars": "Calendars", "services": "Services", "policies": "Policies"}


def detail_url(section: str, name: str) -> str:
    obj = code_editor.model_of(section)._default_manager.filter(name=name).first()
    return reverse(DETAIL[section], args=[obj.pk]) if obj is not None else reverse(LIST[section])


def _starter(section: str) -> str:
    """The text a New page starts from: the section with one object's required keys to fill in."""
    starters = {
        "agreements": "agreements:\n  - name: \n    tier: \n    effective_from: 2026-01-01\n    calendar: \n"
                      "    objectives: []\n",
        "calendars": "calendars:\n  - name: \n    timezone: Europe/London\n    hours: {mon: [\"09:00-17:00\"], "
                     "tue: [\"09:00-17:00\"], wed: [\"09:00-17:00\"], thu: [\"09:00-17:00\"], fri: [\"09:00-17:00\"]}\n",
        "services": "services:\n  - name: \n    base_path: /\n",
        "policies": "policies:\n  - name: \n    when: \n    action: notify\n",
    }
    return starters[section]


@staff_required
def edit(request: HttpRequest, section: str, name: str | None = None) -> HttpResponse:
    """Edit as YAML (`name` given) or New (no name): Check shows the errors or the diff, Apply applies."""
    if section not in code_editor.EDITABLE:
        raise Http404("No such kind of object.")
    k = kind(section)
    needed = code_editor.perm(section, "change" if name else "add")
    if not request.user.has_perm(needed):
        raise PermissionDenied(f"Your role does not allow this page (it needs {needed}).")
    stored = export_object(section, name) if name else None
    if name and stored is None:
        raise Http404(f"No {k.singular} named {name}.")
    text = stored if stored is not None else _starter(section)
    checked = None
    refused = ""
    if request.method == "POST":
        text = code_editor.normalise(request.POST.get("text", ""))
        checked = code_editor.check(section, name, text)
        if request.POST.get("action") == "apply" and checked.ok:
            if request.POST.get("checked") != code_editor.digest(section, name or "", text):
                refused = ("The text is not the one that was checked (it changed after Check, or was never "
                           "checked): check it, read the changes, then apply.")
            elif not checked.changed:
                refused = "Nothing to apply: the text is what is stored."
            else:
                checked, result = code_editor.apply(section, name, text, request.user)
                if result is not None:
                    messages.success(request, f"Applied: {'; '.join(result.lines())}.")
                    return HttpResponseRedirect(detail_url(section, checked.name))
    digest = code_editor.digest(section, name or "", text) if checked is not None and checked.ok else ""
    return render(request, "web/code_edit.html", {
        "section": section, "singular": k.singular, "name": name, "text": text, "checked": checked,
        "digest": digest, "refused": refused, "list_url": reverse(LIST[section]), "list_title": TITLES[section],
        "detail_url": detail_url(section, name) if name else "", "max_bytes": code_editor.MAX_BYTES,
    })


@staff_required
@needs("agreements.view_businesscalendar")
def calendars(request: HttpRequest) -> HttpResponse:
    rows = BusinessCalendar.objects.annotate(n_agreements=Count("agreements", distinct=True)).order_by("name")
    return render(request, "web/calendars.html", {"calendars": rows})


@staff_required
@needs("agreements.view_businesscalendar")
def calendar(request: HttpRequest, pk: int) -> HttpResponse:
    cal = get_object_or_404(BusinessCalendar, pk=pk)
    return render(request, "web/calendar.html", {
        "calendar": cal, "hours": [(day, cal.hours.get(day, [])) for day in WEEKDAYS],
        "agreements": cal.agreements.select_related("tier", "account").order_by("name"),
    })


@staff_required
@needs("governance.view_policy")
def policies(request: HttpRequest) -> HttpResponse:
    return render(request, "web/policies.html", {"policies": Policy.objects.order_by("priority", "name")})


@staff_required
@needs("governance.view_policy")
def policy(request: HttpRequest, pk: int) -> HttpResponse:
    pol = get_object_or_404(Policy.objects.select_related("schedule"), pk=pk)
    return render(request, "web/policy.html", {"policy": pol, "yaml": export_object("policies", pol.name)})


urlpatterns = [
    path("calendars/", calendars, name="calendars"),
    path("calendars/<int:pk>/", calendar, name="calendar"),
    path("policies/", policies, name="policies"),
    path("policies/<int:pk>/", policy, name="policy"),
    path("code/<slug:section>/new/", edit, name="code-new"),
    path("code/<slug:section>/<str:name>/edit/", edit, name="code-edit"),
]
