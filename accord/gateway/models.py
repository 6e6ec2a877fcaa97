"""Gateway models: measurement rollups, the actions the gateway enforces, and the snapshot version."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

# The longest account key the gateway records: an account's external id (at most 100 characters), else its id,
# 'anonymous', or '' for a request nobody was identified for (see `snapshot.account_key`).
ACCOUNT_KEY_LENGTH = 100
# The account of the rows that add up every account: longer than any account key, so no account can be it
# (an external id may well be "*").
ALL_ACCOUNTS = "*" * (ACCOUNT_KEY_LENGTH + 1)
MINUTE = 60
HOUR = 3600


class RollupQuerySet(models.QuerySet["Rollup"]):
    def per_account_minutes(self) -> RollupQuerySet:
        """What the gateway measured per account and minute: the rows as they were before hour and
        all-accounts rows existed (lists, exports, the API by default)."""
        return self.filter(window_seconds=MINUTE).exclude(account=ALL_ACCOUNTS)


class Rollup(models.Model):
    """Requests of one account to one operation through one pool with one outcome in one time window.

    Rows from several workers and hosts merge exactly: counts add up and the latency sketches merge bucket by
    bucket (see `measure.Sketch`), so a rollup row is the same whatever the order of the flushes.

    The flusher writes four rows per measured key, in one transaction: the minute row of the account, the
    hour row of the account (window_seconds=3600, the window truncated to the hour), and the same two for all
    accounts (account=ALL_ACCOUNTS). Indicators over long windows read the coarsest rows that are exact; lists
    of rows show the per-account minute rows (`Rollup.objects.per_account_minutes()`).
    """

    window_start = models.DateTimeField()
    window_seconds = models.PositiveIntegerField(default=60)
    account = models.CharField(max_length=len(ALL_ACCOUNTS), help_text=(
        "What X-Accord-Account says: external id, id, 'anonymous', or '' when unidentified; ALL_ACCOUNTS "
        "(101 asterisks) on the rows that add up every account."))
    service = models.CharField(max_length=80, help_text="Service name; '' when no service matched.")
    operation = models.CharField(max_length=80, blank=True, help_text="Operation name; '' when none matched.")
    pool = models.CharField(max_length=80, blank=True)
    outcome = models.CharField(max_length=20, help_text="ok, client_error, server_error or what the gateway decided.")
    tier = models.CharField(max_length=80, blank=True, help_text="The caller's tier when it called; '' for none.")
    count = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0, help_text="Answers with a 5xx status.")
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0.0)
    latency_sketch = models.BinaryField(help_text="measure.Sketch.encode(): a DDSketch with 1% relative accuracy.")
    updated_at = models.DateTimeField(auto_now=True)

    objects = RollupQuerySet.as_manager()

    class Meta:
        ordering = ["-window_start", "service", "account"]
        constraints = [
            models.UniqueConstraint(
                fields=["window_start", "window_seconds", "account", "service", "operation", "pool", "outcome", "tier"],
                name="gateway_rollup_unique_key",
            )
        ]
        # Indicators read one range of (account, window_seconds, window_start) per resolution; on PostgreSQL
        # migration 0003 also creates statistics of (account, window_seconds) together for the planner.
        indexes = [models.Index(fields=["service", "window_start"]),
                   models.Index(fields=["account", "window_seconds", "window_start"],
                                name="gateway_rollup_account_res_idx"),
                   models.Index(fields=["tier", "window_start"]), models.Index(fields=["window_start"])]

    def __str__(self) -> str:
        return f"{self.window_start:%Y-%m-%d %H:%M} {self.account} {self.service}/{self.operation} {self.outcome}: {self.count}"


SCOPES = ("tiers", "accounts", "services", "operations")
PARAMS: dict[str, dict[str, str]] = {
    "route": {"pool": "the pool to send matching calls to, e.g. standby"},
    "rate_limit": {"rps": "tokens per second (> 0)", "burst": "bucket size (>= 1, default max(1, rps))"},
    "shed": {"retry_after": "seconds for Retry-After (default 1)"},
    "admission": {"max_wait_ms": "longest wait in the queue (default 1000)",
                  "retry_after": "seconds for Retry-After on a 503 (default 1)"},
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def action_errors(kind: str, params: Any, *scopes: Any) -> list[tuple[str, str]]:
    """Problems with an action's kind, params and scope lists, as (field, message)."""
    errors: list[tuple[str, str]] = []
    if kind not in PARAMS:
        return [("kind", f"'{kind}' is not a kind of action (use {', '.join(PARAMS)})")]
    for name, scope in zip(SCOPES, scopes, strict=True):
        if not isinstance(scope, list) or not all(isinstance(v, str) and v.strip() for v in scope):
            errors.append((name, "must be a list of non-empty names"))
    if not isinstance(params, dict):
        return [*errors, ("params", "must be an object")]
    unknown = sorted(set(params) - set(PARAMS[kind]))
    if unknown:
        errors.append(("params", f"unknown for {kind}: {', '.join(unknown)} (known: {', '.join(PARAMS[kind])})"))
    if kind == "route":
        if not isinstance(params.get("pool"), str) or not params["pool"]:
            errors.append(("params", "a route action needs a pool name, e.g. {\"pool\": \"standby\"}"))
    elif kind == "rate_limit":
        rps = _number(params.get("rps"))
        if rps is None or not 0 < rps <= 1_000_000:
            errors.append(("params", "rps must be a number above 0 (at most 1000000)"))
        if "burst" in params:
            burst = _number(params["burst"])
            if burst is None or not 1 <= burst <= 10_000_000:
                errors.append(("params", "burst must be a number of at least 1"))
    for key in ("retry_after",):
        if key in params:
            value = _number(params[key])
            if value is None or value != int(value) or not 1 <= value <= 86_400:
                errors.append(("params", f"{key} must be a whole number of seconds between 1 and 86400"))
    if "max_wait_ms" in params:
        value = _number(params["max_wait_ms"])
        if value is None or not 0 <= value <= 600_000:
            errors.append(("params", "max_wait_ms must be a number between 0 and 600000"))
    return errors



class GatewayAction(models.Model):
    """Something the gateway enforces while active, scoped to tiers, accounts, services or operations.

    An empty scope list matches everything; several non-empty lists must all match. Governance switches
    actions on and off; people can set them by hand for testing (`accord gateway-action`).
    """

    class Kind(models.TextChoices):
        ROUTE = "route", "route to a named pool"
        RATE_LIMIT = "rate_limit", "rate limit (token bucket)"
        SHED = "shed", "shed load (503)"
        ADMISSION = "admission", "priority admission at pool capacity"

    name = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    tiers = models.JSONField(default=list, blank=True, help_text="Tier names; empty = any.")
    accounts = models.JSONField(default=list, blank=True, help_text="Account keys (external id or id); empty = any.")
    services = models.JSONField(default=list, blank=True, help_text="Service names; empty = any.")
    operations = models.JSONField(default=list, blank=True, help_text="Operation names; empty = any.")
    params = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=100, help_text="When actions of one kind overlap, the lowest number wins.")
    active = models.BooleanField(default=True)
    reason = models.CharField(max_length=300, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    set_by = models.CharField(max_length=150, blank=True, help_text="A user name, or the governance policy that set it.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        indexes = [models.Index(fields=["active", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}{'' if self.active else ', inactive'})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for field, message in action_errors(self.kind, self.params, self.tiers, self.accounts, self.services,
                                            self.operations):
            errors.setdefault(field or "__all__", []).append(message)
        if errors:
            raise ValidationError(errors)

    @classmethod
    def live(cls) -> models.QuerySet[GatewayAction]:
        now = timezone.now()
        return cls.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), active=True)


class LiveTraffic(models.Model):
    """One worker's requests in one second for one (service, operation, pool, tier): the fast signal.

    Governance reads the last few seconds of these to react within seconds; rollups stay the exact record.
    Rows are kept for `live.RETENTION_SECONDS` and may be lost when the database is down (rollups are not).
    """

    at = models.DateTimeField(db_index=True, help_text="The second the requests started in.")
    worker = models.CharField(max_length=80, help_text="host:pid of the gateway worker.")
    service = models.CharField(max_length=80)
    operation = models.CharField(max_length=80, blank=True)
    pool = models.CharField(max_length=80, blank=True)
    tier = models.CharField(max_length=80, blank=True)
    count = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0.0)
    latency_sketch = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["service", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.worker} {self.service}/{self.pool}/{self.tier}: {self.count}"


class LivePool(models.Model):
    """How busy one worker kept one pool over one interval: busy seconds (in-flight integrated over time)."""

    at = models.DateTimeField(db_index=True, help_text="End of the interval.")
    worker = models.CharField(max_length=80)
    service = models.CharField(max_length=80)
    pool = models.CharField(max_length=80)
    interval_ms = models.IntegerField(help_text="Length of the interval.")
    busy_ms = models.FloatField(help_text="In-flight requests integrated over the interval (request-milliseconds).")
    capacity = models.IntegerField(help_text="This worker's share of the pool's concurrency capacity.")
    in_flight = models.IntegerField(default=0, help_text="In flight at the end of the interval.")
    waiting = models.IntegerField(default=0, help_text="Waiting for admission at the end of the interval.")
    peak = models.IntegerField(default=0, help_text="Most requests in flight at once during the interval.")

    class Meta:
        indexes = [models.Index(fields=["service", "pool", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.worker} {self.service}/{self.pool}: {self.busy_ms:.0f} busy ms"


class SnapshotVersion(models.Model):
    """One row whose counter goes up whenever something the gateway's snapshot holds changes."""

    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"snapshot version {self.version}"



class FlushBatch(models.Model):
    """A batch of rollups a gateway worker has written: recorded in the batch's own transaction, so a batch whose
    commit went through but whose acknowledgement was lost (the connection cut just after the commit) is
    recognised when it is retried, and skipped instead of counted twice (`flusher.write_rollups`).

    The id is the worker's id for the flush and the batch's first key; rows older than a day are deleted by the
    flushers as they go (a worker retries a batch within seconds, or within the outage it waits out)."""

    id = models.CharField(max_length=64, primary_key=True)
    written_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"rollup batch {self.id} written {self.written_at:%Y-%m-%d %H:%M:%S}"
