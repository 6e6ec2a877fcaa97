"""A chat is a desk ticket on the channel `chat`; these rows hold what only the live part needs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accord.customers.models import Contact
from accord.desk.models import Ticket


class ChatSession(models.Model):
    """A visitor's chat: its ticket, the visitor's bearer token (only its SHA-256 is stored), who they said they are."""

    class Status(models.TextChoices):
        OPEN = "open"
        ENDED = "ended"

    ticket = models.OneToOneField(Ticket, on_delete=models.CASCADE, related_name="chat")
    token_hash = models.CharField(max_length=64, unique=True)
    visitor_name = models.CharField(max_length=200)
    visitor_email = models.EmailField(blank=True)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="Set when the host site vouched for the visitor (a valid signed id).")
    identity_note = models.CharField(max_length=200, blank=True, help_text="Why a signed identity was refused.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    origin = models.CharField(max_length=200, blank=True, help_text="The page's origin the chat started from.")
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"chat {self.ticket_id} ({self.visitor_name})"


class AgentConnection(models.Model):
    """An agent's open chat console (one row per WebSocket); an agent is online while one is fresh."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel_name = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.user} on {self.channel_name}"
