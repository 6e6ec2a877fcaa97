"""Consent per contact and purpose, with its history and proof, and the suppression list every send checks.

Marketing consent is kept apart from contractual service mail: SLA notices, incident mail and ticket replies
never look at a consent, only at the suppression list where the law requires it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accord.customers.models import Contact


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
