"""Asking for, confirming and withdrawing consent; the signed links mailed for it; the RFC 8058 headers.

Links are signed (`django.core.signing`, the site's SECRET_KEY) and name a consent and the `version` it was made
for. A forged link fails its signature; a link made before the consent last changed (an unsubscribe replayed
after a new opt-in, a confirmation link after a withdrawal) is refused as outdated; so is a link past its age.
A GET on a link never changes anything (mail scanners follow links); only a POST does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accord.customers.models import Contact, ContactPoint

from .models import Consent, ConsentEvent, Purpose, Suppression

SALT = {"unsubscribe": "accord.outreach.unsubscribe", "confirm": "accord.outreach.confirm"}
MAX_AGE = {"unsubscribe": 400 * 86400, "confirm": 14 * 86400}  # an unsubscribe link works for a long time


ERASED_DOMAIN = "erased.invalid"  # where accord.privacy points an erased person's consents (it sits above us)


class LinkError(Exception):
    """A consent link that cannot be honoured; the message is safe to show to whoever followed it."""


def normal(address: str) -> str:
    return parseaddr(address)[1].strip().lower()


def suppressed(address: str) -> Suppression | None:
    """The suppression of an address: as itself, or as its SHA-256 (kept when its contact was erased)."""
    plain = normal(address)
    hashed = "sha256:" + hashlib.sha256(plain.encode()).hexdigest()
    return Suppression.objects.filter(address__in=[plain, hashed]).first()


def suppress(address: str, reason: str, detail: str = "") -> Suppression:
    row, _ = Suppression.objects.update_or_create(address=normal(address),
                                                  defaults={"reason": reason, "detail": detail[:500]})
    return row


def _change(consent: Consent, status: str, source: str, *, user: Any = None, detail: str = "") -> Consent:
    now = timezone.now()
    consent.status, consent.version = status, consent.version + 1
    if status == Consent.Status.CONFIRMED:
        consent.confirmed_at, consent.withdrawn_at = now, None
    elif status == Consent.Status.WITHDRAWN:
        consent.withdrawn_at = now
    else:
        consent.requested_at, consent.confirmed_at, consent.withdrawn_at = now, None, None
    consent.save()
    ConsentEvent.objects.create(consent=consent, at=now, status=status, source=source,
                                user=user if getattr(user, "is_authenticated", False) else None, detail=detail[:500])
    return consent


def _address(contact: Contact, address: str | None) -> str:
    if address:
        try:
            validate_email(address)
        except ValidationError:
            raise ValueError(f"{address!r} is not an e-mail address") from None
        return normal(address)
    emails = contact.emails
    if not emails:
        raise ValueError(f"contact {contact} has no e-mail address")
    return normal(emails[0])


@transaction.atomic
def request(contact: Contact, purpose: Purpose, source: str, *, address: str | None = None, user: Any = None,
            send: bool = True) -> Consent:
    """Record that the contact asked (or was asked) for this purpose: pending until they confirm by the link
    mailed to them (double opt-in). A confirmed consent stays confirmed; a withdrawn one starts again."""
    to = _address(contact, address)
    consent, created = Consent.objects.select_for_update().get_or_create(
        contact=contact, purpose=purpose, defaults={"source": source, "address": to, "version": 0})
    if not created and consent.status == Consent.Status.CONFIRMED and consent.address == to:
        return consent
    consent.source, consent.address = source, to
    _change(consent, Consent.Status.PENDING, source, user=user, detail=f"opt-in requested for {to}")
    if send:
        transaction.on_commit(lambda: send_confirmation(consent))
    return consent


def record_import(contact: Contact, purpose: Purpose, *, address: str | None = None, proof: str = "") -> Consent:
    """An imported consent stays pending, whatever the file says, unless it brings proof of the opt-in."""
    consent = request(contact, purpose, Consent.Source.IMPORT, address=address, send=False)
    if proof and consent.status != Consent.Status.CONFIRMED:
        consent.proof = f"imported: {proof}"[:500]
        _change(consent, Consent.Status.CONFIRMED, Consent.Source.IMPORT, detail=consent.proof)
    return consent


def withdraw(consent: Consent, source: str, *, user: Any = None, detail: str = "") -> Consent:
    if consent.status == Consent.Status.WITHDRAWN:
        return consent
    return _change(consent, Consent.Status.WITHDRAWN, source, user=user, detail=detail)


@transaction.atomic
def withdraw_all(contact: Contact, source: str, *, user: Any = None, detail: str = "") -> int:
    """Stop every kind of marketing mail to this contact (an agent's one click from a ticket); how many changed."""
    changed = 0
    for consent in Consent.objects.select_for_update().filter(contact=contact).exclude(status=Consent.Status.WITHDRAWN):
        withdraw(consent, source, user=user, detail=detail)
        changed += 1
    return changed


def link_token(consent: Consent, kind: str) -> str:
    return signing.dumps({"c": consent.pk, "v": consent.version}, salt=SALT[kind], compress=True)


def link_url(consent: Consent, kind: str) -> str:
    path = "u" if kind == "unsubscribe" else "c"
    return f"{settings.ACCORD_PUBLIC_URL.rstrip('/')}/{path}/{link_token(consent, kind)}/"


def resolve(token: str, kind: str) -> Consent:
    """The consent a link names, if the link is genuine, in date and still current; else LinkError."""
    try:
        data = signing.loads(token, salt=SALT[kind], max_age=MAX_AGE[kind])
    except signing.SignatureExpired:
        raise LinkError("This link has expired.") from None
    except signing.BadSignature:
        raise LinkError("This link is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("c"), int) or not isinstance(data.get("v"), int) \
            or not isinstance(data.get("k", 0), int):
        raise LinkError("This link is not valid.")
    consent = Consent.objects.select_related("purpose", "contact").filter(pk=data["c"]).first()
    if consent is None or erased(consent):
        raise LinkError("")  # the person was erased: nothing is known, nothing to say
    if data["v"] != consent.version:
        if kind == "unsubscribe" and consent.status == Consent.Status.WITHDRAWN:
            return consent  # unsubscribed already (this link's own POST replayed, or another): harmless, say so
        raise LinkError("This link is out of date: your choice has changed since it was sent.")
    return consent


def erased(consent: Consent) -> bool:
    return consent.address.endswith("@" + ERASED_DOMAIN)


def campaign_of(token: str) -> int | None:
    """The campaign an unsubscribe link was mailed in (None for a link from elsewhere); the token is checked."""
    try:
        data = signing.loads(token, salt=SALT["unsubscribe"], max_age=MAX_AGE["unsubscribe"])
    except signing.BadSignature:
        return None
    k = data.get("k") if isinstance(data, dict) else None
    return k if isinstance(k, int) else None


@transaction.atomic
def confirm(token: str, client: str = "") -> Consent:
    consent = resolve(token, "confirm")
    consent = Consent.objects.select_for_update().get(pk=consent.pk)
    if consent.status != Consent.Status.PENDING:
        raise LinkError("This link is out of date: your choice has changed since it was sent.")
    consent.proof = (f"double opt-in confirmed by {consent.address} at {timezone.now():%Y-%m-%dT%H:%M:%SZ}"
                     + (f" from {client}" if client else ""))[:500]
    return _change(consent, Consent.Status.CONFIRMED, Consent.Source.MAIL, detail=consent.proof)


@transaction.atomic
def unsubscribe(token: str, client: str = "") -> Consent:
    consent = resolve(token, "unsubscribe")
    consent = Consent.objects.select_for_update().get(pk=consent.pk)
    campaign = campaign_of(token)
    return withdraw(consent, Consent.Source.MAIL, detail="one-click unsubscribe"
                    + (f" (campaign {campaign})" if campaign else "") + (f" from {client}" if client else ""))


def headers(consent: Consent) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers for a message sent under this consent (sign them with DKIM)."""
    mailto = getattr(settings, "ACCORD_UNSUBSCRIBE_MAILTO", "")
    parts = [f"<{link_url(consent, 'unsubscribe')}>"]
    if mailto:
        parts.append(f"<mailto:{mailto}?subject=unsubscribe%20{link_token(consent, 'unsubscribe')}>")
    return {"List-Unsubscribe": ", ".join(parts), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


@dataclass
class Mailable:
    ok: bool
    why: str = ""


def mailable(contact: Contact, purpose: Purpose) -> Mailable:
    """May marketing mail for this purpose go to this contact? Only with confirmed consent, not suppressed."""
    consent = Consent.objects.filter(contact=contact, purpose=purpose).first()
    if consent is None:
        return Mailable(False, "no consent")
    if consent.status != Consent.Status.CONFIRMED:
        return Mailable(False, f"consent {consent.status}")
    hit = suppressed(consent.address)
    if hit is not None:
        return Mailable(False, f"suppressed ({hit.reason})")
    return Mailable(True)


def send_confirmation(consent: Consent) -> None:
    """The double opt-in mail: a link to a page whose button (a POST) confirms."""
    if suppressed(consent.address):
        return
    purpose = consent.purpose
    body = (f"Hello {consent.contact.name},\n\nPlease confirm that you want to receive {purpose.title or purpose.name}"
            f" at this address:\n\n{link_url(consent, 'confirm')}\n\nIf you did not ask for it, ignore this message:"
            " nothing will be sent without your confirmation.\n")
    EmailMessage(subject=f"Please confirm: {purpose.title or purpose.name}", body=body,
                 to=[consent.address]).send()


def contact_by_address(address: str) -> Contact | None:
    point = ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL, value__iexact=normal(address)).select_related(
        "contact").first()
    return point.contact if point else None
