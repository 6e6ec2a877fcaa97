"""Governance: policies that watch indicators and switch gateway actions on and off, their state and audit."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Policy(models.Model):
    """When `condition` has held for `hold_seconds`, enforce `action` on `scope`; switch back when it clears.

    `clear_condition` (default: the condition no longer holds) must hold for `clear_seconds`; an active policy
    stays on at least `min_active_seconds`, and after switching off waits `cooldown_seconds` before it may switch
    on again, so a signal oscillating around its threshold does not make it flap.
    """

    class Mode(models.TextChoices):
        ENFORCE = "enforce"
        DRY_RUN = "dry_run"

    class Action(models.TextChoices):
        ROUTE = "route", "route to a named pool"
        RATE_LIMIT = "rate_limit", "rate limit"
        SHED = "shed", "shed load"
        ADMISSION = "admission", "priority admission"
        NOTIFY = "notify", "notify only"

    name = models.SlugField(max_length=73, unique=True, help_text="At most 73 characters: its action is policy-<name>.")
    description = models.CharField(max_length=300, blank=True)
    enabled = models.BooleanField(default=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ENFORCE)
    priority = models.IntegerField(default=100, help_text="Lower wins when actions of one kind overlap.")
    condition = models.TextField(help_text="e.g. pool(fare-search, primary).utilisation > 0.8")
    hold_seconds = models.PositiveIntegerField(default=0, help_text="How long the condition must hold.")
    clear_condition = models.TextField(blank=True, help_text="Default: the condition no longer holds.")
    clear_seconds = models.PositiveIntegerField(default=30)
    min_active_seconds = models.PositiveIntegerField(default=60)
    cooldown_seconds = models.PositiveIntegerField(default=60)
    tiers = models.JSONField(default=list, blank=True)
    accounts = models.JSONField(default=list, blank=True)
    services = models.JSONField(default=list, blank=True)
    operations = models.JSONField(default=list, blank=True)
    action = models.CharField(max_length=12, choices=Action.choices)
    params = models.JSONField(default=dict, blank=True)
    schedule = models.ForeignKey(
        "agreements.BusinessCalendar", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Only in this calendar's working time; empty: always.",
    )
    notify_emails = models.JSONField(default=list, blank=True)
    notify_webhooks = models.JSONField(default=list, blank=True, help_text='[{"url": ..., "secret": ...}]')
    simulated = models.BooleanField(
        default=False, help_text="Created by a scenario (accord scenario rta) for its simulated service; "
                                 "`accord scenario clean` removes it.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    @property
    def action_name(self) -> str:
        """The GatewayAction this policy owns."""
        return f"policy-{self.name}"


class PolicyState(models.Model):
    """Where a policy is in its cycle; updated by the governor on every evaluation."""

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, related_name="state")
    active = models.BooleanField(default=False)
    true_since = models.DateTimeField(null=True, blank=True)
    clear_since = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    values = models.JSONField(default=dict, blank=True, help_text="The indicator values of the last evaluation.")
    error = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"{self.policy}: {'active' if self.active else 'idle'}"


class Override(models.Model):
    """A person switching a policy's action on or off by hand, with a reason, until it expires."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="overrides")
    force_on = models.BooleanField(help_text="True: on whatever the condition; False: off whatever the condition.")
    reason = models.CharField(max_length=300)
    expires_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Set when cancelled early.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.policy} forced {'on' if self.force_on else 'off'} until {self.expires_at:%Y-%m-%d %H:%M}"

    @classmethod
    def current(cls, policy: Policy, now: object | None = None) -> Override | None:
        now = now or timezone.now()
        return cls.objects.filter(policy=policy, expires_at__gt=now, ended_at__isnull=True).first()


class AuditEvent(models.Model):
    """Every activation, deactivation, override and alert: who or what, why, and the values that triggered it."""

    class Kind(models.TextChoices):
        ACTIVATED = "activated"
        DEACTIVATED = "deactivated"
        WOULD_ACTIVATE = "would_activate", "would activate (dry run)"
        WOULD_DEACTIVATE = "would_deactivate", "would deactivate (dry run)"
        OVERRIDE = "override"
        OVERRIDE_ENDED = "override_ended"
        BURN_ALERT = "burn_alert"
        BURN_RESOLVED = "burn_resolved"
        ERROR = "error"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    subject = models.CharField(max_length=200, help_text="The policy, objective or action concerned.")
    actor = models.CharField(max_length=150, help_text="'governor' or a user name.")
    reason = models.TextField()
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} {self.subject}"


class BurnAlert(models.Model):
    """An error-budget burn-rate alert of one objective and rule, open until the burn stops."""

    objective = models.ForeignKey("agreements.Objective", on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=40, help_text="e.g. 'page 14.4x 1h/5m'.")
    severity = models.CharField(max_length=10)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["objective", "rule"], condition=models.Q(closed_at__isnull=True),
                                    name="one_open_burn_alert_per_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.objective} {self.rule}"


class Notification(models.Model):
    """An e-mail or signed webhook to send, retried with backoff until delivered or out of attempts."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=500, help_text="An e-mail address or a webhook URL.")
    secret = models.CharField(max_length=200, blank=True, help_text="HMAC key of a webhook.")
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    event = models.ForeignKey(AuditEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Set when the attempts ran out.")
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target}: {self.subject}"
