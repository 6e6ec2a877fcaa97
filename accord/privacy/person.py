"""Export and erasure of one person (a contact) across every app.

**Export** (`export_zip`): a zip of JSON files and the attachments: the contact and their addresses, portal
sign-in, consents with their history, suppressions of their addresses, the tickets they requested with every
message (internal notes included: they are data about the person too), the messages they wrote elsewhere, the
orders of their account when the account is the person themselves, and the audit entries that name them.

**Erasure** (`erase`) replaces the person by a pseudonym everywhere while the account's SLA figures, reports and
credits stay as they were: the tickets, clocks and messages stay (so the statistics do), their texts say
`erased-1a2b3c4d` where the person's name, addresses and phone numbers were. Concretely:

- the contact is renamed to the pseudonym, every value of their custom fields becomes the pseudonym (the keys
  stay; so do the contact's audit entries' records of them), their e-mail and phone rows are deleted, the portal sign-in is
  deactivated and its address replaced, consents keep their status and dates with a pseudonymous address;
- the raw source of their messages (the e-mail as received) and their attachments' contents are deleted: a
  raw e-mail or a PDF cannot be pseudonymised reliably;
- then every text and JSON column of every table is swept for the person's name, addresses and phone numbers
  (in their stored forms), which are replaced by the pseudonym: audit entries, throttling keys, outgoing
  mail headers, whatever an app added later; the full-text indexes follow their tables (PostgreSQL's
  generated column, SQLite's triggers, then an FTS5 optimize so no old token stays in a segment);
- a suppressed address stays suppressed as its SHA-256 (`sha256:...`), so the person is never mailed again
  if their address is imported anew, without keeping the address.

A contact with open tickets is erased only when the caller confirms (`confirm_open`); the tickets keep going
under the pseudonym. Every export and erasure writes an audit entry (who, when, which contact; never the data).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.functions import Cast
from django.utils import timezone

from accord.access.audit import record
from accord.customers.models import Account, Contact, ContactPoint
from accord.desk.models import Attachment, Message, RawMessage, Ticket
from accord.insight.models import OrderLine
from accord.outreach.models import Consent, Suppression
from accord.portal.models import PortalUser

ERASED_DOMAIN = "erased.invalid"


class OpenTickets(Exception):
    """The contact has open tickets: erasure needs the caller's confirmation."""

    def __init__(self, references: list[str]) -> None:
        super().__init__(f"{len(references)} open ticket(s): {', '.join(references[:10])}")
        self.references = references


def pseudonym(contact: Contact) -> str:
    """Stable for a contact (the same across runs), says nothing about the person."""
    return "erased-" + hashlib.sha256(f"accord-contact-{contact.pk}".encode()).hexdigest()[:8]


def find(ref: str) -> Contact | None:
    """A contact by number, external id, or one of their e-mail addresses or phone numbers."""
    ref = ref.strip()
    if ref.isdigit() and (c := Contact.objects.filter(pk=int(ref)).first()):
        return c
    if c := Contact.objects.filter(external_id=ref).first():
        return c
    point = ContactPoint.objects.filter(value__iexact=ref).select_related("contact").first()
    return point.contact if point else None


@dataclass
class Identifiers:
    """What names the person in stored text: their name, addresses and phone numbers, longest first."""

    name: str
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    name_shared: bool = False  # another contact has the same name: it is not swept from every table

    def terms(self) -> list[str]:
        terms = {t for t in [*self.emails, *self.phones] if t}
        if len(self.name.strip()) >= 3 and not self.name_shared:  # a short name would match inside every word
            terms.add(self.name.strip())
        for phone in self.phones:  # stored as +442079460000; often written without the +
            if phone.startswith("+") and len(phone) > 6:
                terms.add(phone[1:])
        return sorted(terms, key=len, reverse=True)


def identifiers(contact: Contact) -> Identifiers:
    points = list(contact.points.all())
    emails = {p.value.lower() for p in points if p.kind == ContactPoint.Kind.EMAIL}
    if (portal := PortalUser.objects.filter(contact=contact).first()) is not None:
        emails.add(portal.email.lower())
    emails |= {c.address.lower() for c in Consent.objects.filter(contact=contact) if c.address}
    shared = Contact.objects.filter(name__iexact=contact.name.strip()).exclude(pk=contact.pk).exists()
    return Identifiers(contact.name, sorted(emails), sorted(p.value for p in points if p.kind == ContactPoint.Kind.PHONE),
                       name_shared=shared)


def _scrub_own(contact: Contact, ids: Identifiers, alias: str) -> int:
    """In the person's own tickets (subjects, every message) their name and its parts (\"Hi Grace\") go too,
    even when another contact shares the name: these texts are about this person."""
    parts = {p for p in re.split(r"\s+", ids.name.strip()) if len(p) >= 3} | {ids.name.strip()}
    parts |= set(ids.terms())
    pattern = re.compile("|".join(rf"\b{re.escape(p)}\b" for p in sorted(parts, key=len, reverse=True) if p),
                         re.IGNORECASE)
    changed = 0
    for ticket in Ticket.objects.filter(contact=contact):
        if (new := pattern.sub(alias, ticket.subject)) != ticket.subject:
            Ticket.objects.filter(pk=ticket.pk).update(subject=new[:300])
            changed += 1
    for m in Message.objects.filter(Q(ticket__contact=contact) | Q(author_contact=contact)):
        fields = {name: pattern.sub(alias, getattr(m, name)) for name in ("subject", "body_text", "body_html",
                                                                          "from_address")}
        fields = {k: v for k, v in fields.items() if v != getattr(m, k)}
        if fields:
            Message.objects.filter(pk=m.pk).update(**fields)
            changed += 1
    return changed


def _pseudonymous(fields: Any, alias: str) -> dict[str, Any]:
    """Custom fields with every value replaced by the pseudonym: the keys (the business's own schema) stay, what
    they said about the person goes, whatever its type (a birth year is personal data too)."""
    return {str(k): alias for k in fields} if isinstance(fields, dict) else {}


def _scrub_custom_in_audit(contact: Contact, alias: str) -> None:
    """The contact's own audit entries recorded their custom fields before and after each edit: pseudonymise them
    as on the contact (the sweep cannot: a value like 'gold' or 42 is no term to remove from every table)."""
    from accord.access.models import AuditEntry

    for entry in AuditEntry.objects.filter(object_type="customers.contact", object_id=str(contact.pk)):
        changes = entry.changes if isinstance(entry.changes, dict) else {}
        pair = changes.get("custom_fields")
        if isinstance(pair, list):
            changes["custom_fields"] = [_pseudonymous(v, alias) if isinstance(v, dict) else v for v in pair]
            AuditEntry.objects.filter(pk=entry.pk).update(changes=changes)


def _row(obj: models.Model, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        if f.name in exclude or isinstance(f, models.BinaryField):
            continue
        out[f.attname if f.is_relation else f.name] = getattr(obj, f.attname)
    return out


def _mentions(model: type[models.Model], terms: list[str]) -> Q:
    q = Q()
    for f in model._meta.concrete_fields:
        if isinstance(f, models.CharField | models.TextField):
            for t in terms:
                q |= Q(**{f"{f.name}__icontains": t})
    return q


def export_zip(contact: Contact, *, by: Any = None, source: str = "cli") -> bytes:
    """Everything Accord holds about the person, as a zip (see the module's docstring); audited."""
    ids = identifiers(contact)
    tickets = list(Ticket.objects.filter(contact=contact).order_by("id"))
    messages = list(Message.objects.filter(Q(ticket__in=tickets) | Q(author_contact=contact))
                    .order_by("ticket_id", "created_at", "id"))
    attachments = list(Attachment.objects.filter(message__in=messages).order_by("id"))
    account = contact.account
    orders: list[OrderLine] = []
    if account is not None and account.kind == Account.Kind.PERSON:
        orders = list(OrderLine.objects.filter(account=account).order_by("ordered_at", "id"))
    from accord.access.models import AuditEntry

    audit = list(AuditEntry.objects.filter(Q(object_type="customers.contact", object_id=str(contact.pk))
                                           | _mentions(AuditEntry, ids.terms())).order_by("at", "id"))
    portal = PortalUser.objects.filter(contact=contact).first()
    consents = list(Consent.objects.filter(contact=contact).prefetch_related("events").select_related("purpose"))
    person = {
        "exported_at": timezone.now(),
        "contact": _row(contact),
        "account": ({"id": account.pk, "name": account.name, "external_id": account.external_id,
                     # an account that is the person themselves: its country and custom fields are theirs too
                     **({"country": account.country, "custom_fields": account.custom_fields}
                        if account.kind == Account.Kind.PERSON else {})} if account else None),
        "addresses": [_row(p) for p in contact.points.all()],
        "portal_user": _row(portal, exclude=("password",)) if portal else None,
        "consents": [{**_row(c), "purpose": c.purpose.name, "events": [_row(e) for e in c.events.all()]}
                     for c in consents],
        "suppressions": [_row(s) for s in Suppression.objects.filter(address__in=ids.emails)],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        def put(name: str, data: Any) -> None:
            z.writestr(name, json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))

        put("person.json", person)
        put("tickets.json", [{**_row(t), "reference": t.reference,
                              "messages": [_row(m) for m in messages if m.ticket_id == t.pk]} for t in tickets])
        put("messages_elsewhere.json", [_row(m) for m in messages if m.ticket_id not in {t.pk for t in tickets}])
        put("orders.json", [_row(o) for o in orders])
        put("audit.json", [_row(a) for a in audit])
        for a in attachments:
            safe = re.sub(r"[^\w.-]+", "_", a.filename)[:100]
            z.writestr(f"attachments/{a.message_id}-{a.pk}-{safe}", bytes(a.data))
        z.writestr("README.txt", "Everything Accord holds about this person, as JSON; attachments as received.\n")
    record(by, "privacy-export", contact, summary=f"exported the personal data of contact {contact.pk}",
           source=source)
    return buffer.getvalue()


@dataclass
class Erasure:
    contact_id: int
    pseudonym: str
    rows: int = 0  # rows changed by the sweep
    raw_deleted: int = 0
    attachments_cleared: int = 0
    open_tickets: list[str] = field(default_factory=list)


def _sweep(terms: list[str], replacement: str) -> int:
    """Replace every term in every text and JSON column of every model's table; the rows changed."""
    if not terms:
        return 0
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)
    changed = 0
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:
            continue
        text_fields = [f for f in model._meta.concrete_fields
                       if isinstance(f, models.CharField | models.TextField | models.JSONField) and not f.primary_key]
        if not text_fields:
            continue
        for f in text_fields:
            if isinstance(f, models.JSONField):
                # JSON is matched as text, also in its escaped form (a name with accents may be stored \u-escaped)
                forms = {t for term in terms for t in (term, json.dumps(term)[1:-1])}
                jq = Q()
                for t in forms:
                    jq |= Q(_as_text__icontains=t)
                rows = (model._default_manager.annotate(_as_text=Cast(f.name, models.TextField()))
                        .filter(jq).values_list("pk", f.name))
                for pk, value in rows:
                    dumped = json.dumps(value, ensure_ascii=False)
                    model._default_manager.filter(pk=pk).update(
                        **{f.name: json.loads(pattern.sub(replacement, dumped))})
                    changed += 1
                continue
            q = Q()
            for t in terms:
                q |= Q(**{f"{f.name}__icontains": t})
            for pk, value in model._default_manager.filter(q).values_list("pk", f.name):
                new = pattern.sub(replacement, value)
                if f.max_length:
                    new = new[: f.max_length]
                if f.unique and model._default_manager.filter(**{f.name: new}).exclude(pk=pk).exists():
                    new = f"{replacement}-{pk}"[: f.max_length or None]
                model._default_manager.filter(pk=pk).update(**{f.name: new})
                changed += 1
    return changed


def _optimize_search_index() -> None:
    """SQLite's FTS5 keeps deleted tokens in its segments until merged: merge them, so no old term stays."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for table in ("desk_ticket_fts", "desk_message_fts"):
            cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [table])
            if cursor.fetchone():
                cursor.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")


def erase(contact: Contact, *, by: Any = None, confirm_open: bool = False, source: str = "cli") -> Erasure:
    """Pseudonymise the person everywhere (see the module's docstring). Raises OpenTickets unless confirmed."""
    open_refs = [t.reference for t in Ticket.objects.filter(contact=contact, is_open=True).order_by("id")]
    if open_refs and not confirm_open:
        raise OpenTickets(open_refs)
    ids = identifiers(contact)
    alias = pseudonym(contact)
    result = Erasure(contact.pk, alias, open_tickets=open_refs)
    with transaction.atomic():
        messages = Message.objects.filter(Q(ticket__contact=contact) | Q(author_contact=contact))
        raw_ids = list(messages.exclude(raw__isnull=True).values_list("raw_id", flat=True))
        messages.update(raw=None)
        result.raw_deleted, _ = RawMessage.objects.filter(pk__in=raw_ids, messages__isnull=True).delete()
        result.attachments_cleared = Attachment.objects.filter(message__in=messages).update(
            data=b"", size=0, filename="erased", content_type="application/octet-stream")
        for s in Suppression.objects.filter(address__in=ids.emails):
            s.address = "sha256:" + hashlib.sha256(s.address.encode()).hexdigest()
            s.detail = "the address of an erased contact"
            s.save(update_fields=["address", "detail"])
        Consent.objects.filter(contact=contact).update(address=f"{alias}@{ERASED_DOMAIN}", proof="erased")
        PortalUser.objects.filter(contact=contact).update(email=f"{alias}@{ERASED_DOMAIN}", password="", active=False)
        from accord.portal.models import SignInLink

        SignInLink.objects.filter(user__contact=contact).delete()
        ContactPoint.objects.filter(contact=contact).delete()
        Contact.objects.filter(pk=contact.pk).update(name=alias, title="", external_id=None,
                                                     custom_fields=_pseudonymous(contact.custom_fields, alias))
        _scrub_custom_in_audit(contact, alias)
        result.rows = _scrub_own(contact, ids, alias) + _sweep(ids.terms(), alias)
        record(by, "privacy-erase", object_type="customers.contact", object_id=str(contact.pk), object_repr=alias,
               summary=f"erased contact {contact.pk} as {alias}"
               + (f"; {len(open_refs)} open ticket(s) go on under the pseudonym" if open_refs else ""), source=source)
    _optimize_search_index()
    return result
