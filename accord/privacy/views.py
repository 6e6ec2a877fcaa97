"""The staff page of a person's data: export it (a zip), or erase it after confirming (docs/privacy.md)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accord.access.models import AuditEntry
from accord.customers.models import Contact
from accord.desk.models import Ticket
from accord.lib.views import needs, staff_required

from . import person


@staff_required
@needs("customers.change_contact")
def page(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(Contact.objects.select_related("account"), pk=pk)
    tickets = Ticket.objects.filter(contact=contact)
    return render(request, "privacy/contact.html", {
        "contact": contact, "points": list(contact.points.all()), "ticket_count": tickets.count(),
        "open": [t.reference for t in tickets.filter(is_open=True).order_by("id")],
        "history": list(AuditEntry.objects.filter(object_type="customers.contact", object_id=str(contact.pk),
                                                  action__startswith="privacy-").order_by("-at")[:20]),
        "erased": contact.name == person.pseudonym(contact),
    })


@staff_required
@needs("customers.change_contact")
def export(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=pk)
    response = HttpResponse(person.export_zip(contact, by=request.user, source=AuditEntry.Source.UI),
                            content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.zip"'
    return response


@staff_required
@needs("customers.delete_contact")
@require_POST
def erase(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=pk)
    if request.POST.get("confirm_name", "").strip() != contact.name.strip():
        messages.error(request, "Type the contact's name exactly to confirm the erasure.")
        return redirect("privacy:contact", contact.pk)
    try:
        done = person.erase(contact, by=request.user, confirm_open=request.POST.get("confirm_open") == "on",
                            source=AuditEntry.Source.UI)
    except person.OpenTickets as e:
        messages.error(request, f"This contact has {e}. Tick the box to erase anyway: the tickets go on under the "
                                "pseudonym.")
        return redirect("privacy:contact", contact.pk)
    messages.success(request, f"Erased: the contact is now {done.pseudonym} everywhere ({done.rows} rows rewritten, "
                              f"{done.raw_deleted} raw e-mails and {done.attachments_cleared} files removed).")
    return redirect("privacy:contact", contact.pk)
