"""Consent per contact and purpose, with its history and proof, and the suppression list every send checks.

Marketing consent is kept apart from contractual service mail: SLA notices, incident mail and ticket replies
never look at a consent, only at the suppression list where the law requires it.
"""

from __future__ import annotations

from email.utils import getaddresses

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from accord.customers.models import Contact

from .templating import TemplateError, check_template


def _is_sender(value: str) -> bool:
    """One mailbox, bare or with a display name, on one line: what a From header of a campaign may hold."""
    if "\r" in value or "\n" in value:
        return False
    found = getaddresses([value])
    if len(found) != 1:
        return False
    _name, address = found[0]
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


class Purpose(models.Model):
    """What a contact may agree to receive: newsletter, product news, surveys, ..."""

    name = models.SlugField(max_length=60, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="What the contact is told they agree to.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.title or self.name


class Consent(models.Model):
    """A contact's consent to one purpose: pending until confirmed (double opt-in), withdrawn at any time.

    `version` grows with every change of status, and each link mailed for this consent carries the version it
    was made for: a link from before a change (a replayed unsubscribe, an old confirmation) is refused.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        WITHDRAWN = "withdrawn"

    class Source(models.TextChoices):
        WEB = "web", "web form"
        IMPORT = "import"
        PORTAL = "portal"
        DESK = "desk", "service desk"
        API = "api", "API"
        STAFF = "staff", "staff UI"
        MAIL = "mail", "e-mail link"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="consents")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=8, choices=Source.choices, help_text="Where the consent was asked for.")
    address = models.EmailField(help_text="The address the consent and its proof are for.")
    requested_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    proof = models.CharField(max_length=500, blank=True,
                             help_text="How it was confirmed: the double opt-in's time, address and client address.")
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["contact", "purpose"]
        constraints = [models.UniqueConstraint(fields=["contact", "purpose"], name="outreach_consent_once")]

    def __str__(self) -> str:
        return f"{self.contact} / {self.purpose.name}: {self.status}"


class ConsentEvent(models.Model):
    """One change of a consent, kept for ever (the history the proof rests on)."""

    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Consent.Status.choices)
    source = models.CharField(max_length=8, choices=Consent.Source.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.status} ({self.source})"


class Suppression(models.Model):
    """An address no marketing mail goes to (and, for hard bounces and complaints, no mail at all)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "hard bounce"
        SOFT_BOUNCE = "soft_bounce", "soft bounces past the limit"
        COMPLAINT = "complaint", "spam complaint"
        UNSUBSCRIBED = "unsubscribed", "unsubscribed from everything"
        MANUAL = "manual"

    address = models.CharField(max_length=254, unique=True, help_text="Lower case.")
    reason = models.CharField(max_length=12, choices=Reason.choices)
    at = models.DateTimeField(default=timezone.now)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


class Segment(models.Model):
    """A saved filter over contacts and their accounts (tier, CLV, health, last order, consent), counted live.

    The filter is data, a small JSON object validated by `segments.check` (see docs/outreach.md for its keys) in
    `accord outreach segment add` and the admin's form.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=300, blank=True)
    spec = models.JSONField(default=dict, blank=True, help_text="The filter, e.g. {\"tier\": [\"gold\"]}.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name



class Campaign(models.Model):
    """A marketing mail for one purpose to one segment: its template, when it goes, and how fast."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        SENDING = "sending"
        PAUSED = "paused"  # held by hand: no sender takes it until it is resumed
        DONE = "done"

    name = models.CharField(max_length=200)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="campaigns")
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="campaigns")
    from_email = models.CharField(max_length=254, blank=True, help_text="Blank: ACCORD_MAIL_FROM.")
    subject = models.CharField(max_length=300)
    html = models.TextField(help_text="The HTML part; placeholders like {{ contact.name }}.")
    text = models.TextField(help_text="The plain-text part; the same placeholders.")
    send_at = models.DateTimeField(null=True, blank=True, help_text="Not before this instant (UTC).")
    rate = models.FloatField(default=10.0, help_text="Messages per second at most.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in ("subject", "html", "text"):
            try:
                check_template(getattr(self, field))
            except TemplateError as e:
                errors[field] = str(e)
        if self.rate is not None and self.rate <= 0:
            errors["rate"] = "The rate is in messages per second and must be above 0."
        if self.from_email and not _is_sender(self.from_email):
            errors["from_email"] = (f"“{self.from_email}” is not one e-mail address (like news@example.com or "
                                    "Example News <news@example.com>); empty: the site's sender.")
        if errors:
            raise ValidationError(errors)


class CampaignSend(models.Model):
    """One recipient of a campaign: claimed by a sender before its message goes, so a restart sends it once.

    Claim -> send -> mark, one row at a time after a batch claim: a sender killed mid-campaign leaves at most one
    row that went out unmarked (the one in flight); it is sent again with the same Message-ID.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        SKIPPED = "skipped"
        FAILED = "failed"
        BOUNCED = "bounced"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sends")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=300, blank=True, help_text="Why skipped, failed or bounced.")
    attempts = models.PositiveIntegerField(default=0)
    soft_bounces = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sender = models.CharField(max_length=100, blank=True, help_text="host:pid of the sender holding the claim.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["campaign", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="outreach_send_once")]
        indexes = [models.Index(fields=["campaign", "status"], name="outreach_send_status"),
                   models.Index(fields=["message_id"], name="outreach_send_message_id")]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.contact_id}: {self.status}"
