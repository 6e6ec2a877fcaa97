"""Tickets, their message threads and the SLA clocks they run on."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import models
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.customers.models import Account, Contact, Tier

from .placeholders import check_placeholders

REFERENCE_PREFIX = "ACC"
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def far_future() -> dt.datetime:
    return FAR_FUTURE


class SupportGroup(models.Model):
    """A team of agents that tickets can be assigned to, optionally with its own mailbox address."""

    name = models.SlugField(max_length=80, unique=True)
    email = models.EmailField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="support_groups", help_text="The agents in the group."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    """A free label on tickets."""

    name = models.SlugField(max_length=60, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """One customer request, whatever channel it came from, with its thread and clocks."""

    class Status(models.TextChoices):
        NEW = "new"
        OPEN = "open"
        PENDING = "pending", "pending (waiting on customer)"
        ON_HOLD = "on_hold", "on hold (waiting on a third party)"
        SOLVED = "solved"
        CLOSED = "closed"

    PAUSED_STATUSES = frozenset({Status.PENDING, Status.ON_HOLD})
    OPEN_STATUSES = ("new", "open", "pending", "on_hold")  # the statuses is_open is computed from
    DONE_STATUSES = frozenset({Status.SOLVED, Status.CLOSED})

    class Priority(models.TextChoices):
        URGENT = "urgent"
        HIGH = "high"
        NORMAL = "normal"
        LOW = "low"

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEB = "web", "web form"
        PHONE = "phone"
        SOCIAL = "social", "social / webhook"
        API = "api"
        CHAT = "chat", "live chat"

    class SlaState(models.TextChoices):
        NONE = "none", "no SLA"
        ON_TRACK = "on_track", "on track"
        WARNING = "warning", "warning"
        BREACHED = "breached", "breached"
        PAUSED = "paused", "paused"
        DONE = "done", "done"

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    subject = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    group = models.ForeignKey(SupportGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    agreement = models.ForeignKey(Agreement, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Denormalised from the clocks so the agent queue is one indexed query.
    next_due_at = models.DateTimeField(null=True, blank=True)
    sla_state = models.CharField(max_length=10, choices=SlaState.choices, default=SlaState.NONE)
    # next_due_at, or far in the future when no clock runs: a non-null sort key both databases index alike.
    queue_due = models.DateTimeField(default=far_future)
    # Computed by the database from status, so the queue is one range of the (is_open, queue_due) index; a
    # partial index would not do: SQLite cannot match `status IN (?, ...)` with bound values to its condition.
    is_open = models.GeneratedField(
        expression=Case(When(status__in=OPEN_STATUSES, then=Value(True)), default=Value(False)),
        output_field=models.BooleanField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The agent queue: open tickets by next due clock, one ordered index scan (partial index).
            models.Index(fields=["is_open", "queue_due", "id"], name="ticket_open_queue"),
            models.Index(fields=["status", "next_due_at"], name="ticket_queue"),
            models.Index(fields=["assignee", "status", "next_due_at"], name="ticket_assignee_queue"),
            models.Index(fields=["account", "-created_at"], name="ticket_account_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    @property
    def reference(self) -> str:
        """The reference quoted to customers and put in e-mail subjects, e.g. ACC-000042."""
        return f"{REFERENCE_PREFIX}-{self.pk:06d}" if self.pk else f"{REFERENCE_PREFIX}-new"

    def customer_timezone(self) -> str | None:
        """The customer's time zone: the ticket's account's, else its contact's account's; None when unknown."""
        for account in (self.account, self.contact.account if self.contact is not None else None):
            if account is not None and account.timezone:
                try:
                    ZoneInfo(account.timezone)
                except (ValueError, ZoneInfoNotFoundError):
                    continue  # a zone the database holds but this system does not know: say ours instead
                return account.timezone
        return None


class RawMessage(models.Model):
    """The exact bytes a message arrived as, kept so nothing is ever lost, even when parsing fails."""

    sha256 = models.CharField(max_length=64, db_index=True)
    data = models.BinaryField()
    size = models.PositiveIntegerField()
    source = models.CharField(max_length=300, blank=True, help_text="Mailbox, file path or endpoint it came from.")
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.size} bytes from {self.source}"


class Message(models.Model):
    """One entry in a ticket's thread: an inbound message, a public reply, or an internal note."""

    class Kind(models.TextChoices):
        INBOUND = "inbound"
        REPLY = "reply", "public reply"
        NOTE = "note", "internal note"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    channel = models.CharField(max_length=10, choices=Ticket.Channel.choices)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_address = models.CharField(max_length=320, blank=True)
    to_addresses = models.JSONField(default=list, blank=True)
    cc_addresses = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    message_id = models.CharField(max_length=998, null=True, blank=True, unique=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    raw = models.ForeignKey(RawMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=300, blank=True)
    auto_generated = models.BooleanField(default=False, help_text="Sent or received by a machine (auto-reply).")
    meta = models.JSONField(default=dict, blank=True, help_text="Channel details: call duration, social handle ...")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.ticket_id}"

    @property
    def is_public_agent_reply(self) -> bool:
        """Only this counts as a response for SLA clocks."""
        return self.kind == self.Kind.REPLY and self.author_user_id is not None and not self.auto_generated


class Attachment(models.Model):
    """A file attached to a message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveIntegerField()
    data = models.BinaryField()

    def __str__(self) -> str:
        return self.filename


class SlaClock(models.Model):
    """One SLA timer of a ticket (first response, next response or resolution) in business time."""

    class Kind(models.TextChoices):
        FIRST_RESPONSE = "first_response"
        NEXT_RESPONSE = "next_response"
        RESOLUTION = "resolution"

    class Status(models.TextChoices):
        RUNNING = "running"
        PAUSED = "paused"
        MET = "met", "stopped (met or reached)"
        CANCELLED = "cancelled"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="clocks")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    cycle = models.PositiveSmallIntegerField(default=1, help_text="Resolution restarts at 2, 3 ... on reopen.")
    objective = models.ForeignKey(Objective, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.PROTECT, related_name="+")
    target_seconds = models.PositiveIntegerField(help_text="The target in business seconds (a chat's can be 30).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    pauses = models.JSONField(default=list, blank=True, help_text="Closed pause intervals [[start, end], ...] (ISO).")
    paused_since = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Null while paused.")
    warn_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True, help_text="Set once, never cleared.")

    class Meta:
        ordering = ["ticket", "kind", "cycle"]
        indexes = [
            models.Index(fields=["status", "due_at"], name="clock_due"),
            models.Index(fields=["status", "warn_at"], name="clock_warn"),
        ]
        constraints = [models.UniqueConstraint(fields=["ticket", "kind", "cycle"], name="clock_unique_cycle")]

    def __str__(self) -> str:
        return f"{self.ticket_id} {self.kind}#{self.cycle} {self.status}"

    @property
    def target_minutes(self) -> int | Fraction:
        """The target in business minutes: whole minutes as an int, else exact (30 seconds is 1/2)."""
        whole, rest = divmod(self.target_seconds, 60)
        return whole if not rest else Fraction(self.target_seconds, 60)

    @property
    def breached(self) -> bool:
        return self.breached_at is not None

    def calendar_tz(self) -> ZoneInfo:
        return ZoneInfo(self.calendar.timezone)


class ClockEvent(models.Model):
    """An alert raised on a clock (warning, breach, escalation); unique so no alert is sent twice."""

    clock = models.ForeignKey(SlaClock, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=80, help_text="warning, breach, or escalation:<rule>")
    at = models.DateTimeField(default=timezone.now)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["clock", "kind"], name="clock_event_once")]

    def __str__(self) -> str:
        return f"{self.clock} {self.kind}"


class EscalationRule(models.Model):
    """What to do when a clock warns or breaches: reassign, raise priority, notify."""

    class Trigger(models.TextChoices):
        WARNING = "warning"
        BREACH = "breach"

    class Action(models.TextChoices):
        REASSIGN = "reassign"
        RAISE_PRIORITY = "raise_priority"
        NOTIFY = "notify"

    name = models.SlugField(max_length=80, unique=True)
    enabled = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=100)
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    clock_kind = models.CharField(max_length=16, choices=SlaClock.Kind.choices, blank=True, help_text="Blank: any.")
    tiers = models.ManyToManyField(Tier, blank=True, help_text="Empty: any tier.")
    priorities = models.JSONField(default=list, blank=True, help_text="Empty: any priority.")
    action = models.CharField(max_length=15, choices=Action.choices)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    group = models.ForeignKey(SupportGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notify_email = models.EmailField(blank=True)

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(action="reassign") | Q(assignee__isnull=False) | Q(group__isnull=False),
                name="escalation_reassign_has_target",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Mailbox(models.Model):
    """An IMAP mailbox polled for customer e-mail; messages are marked seen only once safely stored."""

    class Security(models.TextChoices):
        SSL = "ssl", "TLS from the start (993)"
        STARTTLS = "starttls"
        NONE = "none", "none (loopback and tests only)"

    name = models.SlugField(max_length=80, unique=True)
    host = models.CharField(max_length=200)
    port = models.PositiveIntegerField(default=993)
    security = models.CharField(max_length=8, choices=Security.choices, default=Security.SSL)
    username = models.CharField(max_length=200)
    password = models.CharField(max_length=200)
    folder = models.CharField(max_length=200, default="INBOX")
    address = models.EmailField(blank=True, help_text="The address customers write to; replies come from it.")
    group = models.ForeignKey(SupportGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    enabled = models.BooleanField(default=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WebhookChannel(models.Model):
    """A social or other channel that posts signed JSON messages to the desk, and takes the agents' replies."""

    name = models.SlugField(max_length=80, unique=True)
    secret = models.CharField(max_length=200, help_text="HMAC-SHA256 key shared with the sender.")
    enabled = models.BooleanField(default=True)
    group = models.ForeignKey(SupportGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reply_url = models.URLField(
        max_length=500, blank=True,
        help_text="Where agents' public replies are POSTed, signed with the secret like the messages that come in. "
                  "Empty: replies go by e-mail where the requester has an address, and cannot be sent otherwise.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def signature(self, body: bytes) -> str:
        """The X-Accord-Signature of a body: `sha256=` and the hex HMAC-SHA256 of its bytes with the secret."""
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()


class OutgoingMail(models.Model):
    """A reply or acknowledgement waiting to go out by e-mail, or gone: the durable outbox (`outbox.py`).

    Written in the transaction that stores its message, so a committed reply is never lost; the sender
    claims it (pending → sending, committed), sends it, and marks it sent, or pending again with a later
    attempt, or failed on a permanent refusal.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    class Via(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="outgoing")
    headers = models.JSONField(default=dict, blank=True, help_text="Extra headers (threading, Auto-Submitted).")
    via = models.CharField(max_length=8, choices=Via.choices, default=Via.EMAIL,
                           help_text="By e-mail, or POSTed to a webhook channel's reply URL.")
    channel = models.ForeignKey("WebhookChannel", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="outgoing", help_text="The webhook channel a reply goes to (via webhook).")
    auto = models.BooleanField(default=False, help_text="An auto-acknowledgement: sent at most once, never resent.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["next_attempt_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outgoing_due")]

    def __str__(self) -> str:
        return f"{self.message_id} {self.status}"


class CannedReply(models.Model):
    """A reply agents insert into the reply box; placeholders are filled for the ticket at hand (`canned.py`)."""

    title = models.CharField(max_length=120, unique=True)
    body = models.TextField(help_text="Placeholders: {customer_name}, {ticket_ref}, {promised_time}, {agent_name}.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        check_placeholders(self.body)


class Presence(models.Model):
    """An agent has a ticket open (and maybe is typing a reply), as of `seen_at`; refreshed by the page's poll."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    replying = models.BooleanField(default=False)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticket", "user"], name="presence_once")]
        indexes = [models.Index(fields=["ticket", "seen_at"], name="presence_recent")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.ticket_id}"


class SavedFilter(models.Model):
    """A filter set an agent saved from the queue, under a name of their own; only its owner sees it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_filters")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, help_text="The queue's query string (filters, view, search).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="saved_filter_user_name")]

    def __str__(self) -> str:
        return self.name
