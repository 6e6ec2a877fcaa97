"""The company's services as the gateway sees them, and the keys customers call them with."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.utils import timezone

from accord.customers.models import Account

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*")


def validate_base_path(value: str) -> None:
    if not value.startswith("/") or (len(value) > 1 and value.endswith("/")) or "//" in value or " " in value:
        raise ValidationError(f"'{value}' is not a base path like /bookings (leading slash, no trailing slash).")


# The same rule for the OpenAPI schema (accord.lib.schema reads `openapi_pattern` off a field's validators).
validate_base_path.openapi_pattern = r"^/(?:[^/ ]+(?:/[^/ ]+)*)?$"  # type: ignore[attr-defined]


def validate_path_pattern(value: str) -> None:
    if not value.startswith("/") or " " in value:
        raise ValidationError(f"'{value}' is not a path pattern like /bookings/{{id}}.")


class Service(models.Model):
    """A run-time service of the company, reached through the gateway under its base path."""

    name = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, blank=True)
    base_path = models.CharField(max_length=200, unique=True, validators=[validate_base_path])
    owner = models.CharField(max_length=200, blank=True, help_text="Team or person responsible.")
    cost_per_instance_hour = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))
    allow_anonymous = models.BooleanField(default=False, help_text="Calls without a key count as account 'anonymous'.")
    forward_credentials = models.BooleanField(
        default=False, help_text="Pass the caller's Accord API key (X-Api-Key, Authorization: Bearer) on to the "
                                 "service; by default the gateway strips it.")
    simulated = models.BooleanField(
        default=False, help_text="A service a scenario (accord scenario rta) runs on simulated servers, not a real "
                                 "one; `accord scenario clean` removes it.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Operation(models.Model):
    """A business process inside a service: a method and a path pattern (POST /bookings = book a trip)."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="operations")
    name = models.SlugField(max_length=80)
    title = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=7, choices=[(m, m) for m in HTTP_METHODS])
    path_pattern = models.CharField(max_length=300, validators=[validate_path_pattern])

    class Meta:
        ordering = ["service", "id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "name"], name="operation_unique_name"),
            models.UniqueConstraint(fields=["service", "method", "path_pattern"], name="operation_unique_route"),
        ]

    def __str__(self) -> str:
        return f"{self.service}:{self.name}"


class Pool(models.Model):
    """A group of endpoints of a service; the standby pool takes rerouted traffic at peak."""

    class Role(models.TextChoices):
        PRIMARY = "primary"
        STANDBY = "standby"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="pools")
    name = models.SlugField(max_length=80)
    role = models.CharField(max_length=7, choices=Role.choices, default=Role.PRIMARY)
    capacity = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Concurrent requests the pool can serve."
    )

    class Meta:
        ordering = ["service", "role", "name"]
        constraints = [models.UniqueConstraint(fields=["service", "name"], name="pool_unique_name")]

    def __str__(self) -> str:
        return f"{self.service}/{self.name}"


class Endpoint(models.Model):
    """One upstream address in a pool."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="endpoints")
    url = models.CharField(max_length=300, validators=[URLValidator(schemes=["http", "https"])])
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["pool", "id"]
        constraints = [models.UniqueConstraint(fields=["pool", "url"], name="endpoint_unique_url")]

    def __str__(self) -> str:
        return self.url


class PartnerService(models.Model):
    """A third party's service that ours depend on, with the availability it promises us."""

    name = models.SlugField(max_length=80, unique=True)
    provider = models.CharField(max_length=200, blank=True)
    promised_availability = models.DecimalField(
        max_digits=7, decimal_places=4, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    services = models.ManyToManyField(Service, blank=True, related_name="partners")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


KEY_PREFIX = "acc_"


def hash_key(key: str) -> str:
    """SHA-256 of a key; keys are 256-bit random, so a fast hash is enough and lets the gateway match quickly."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiCredential(models.Model):
    """An API key of an account; only its hash is stored, the key is shown once at creation."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}... ({self.account})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, account: Account, name: str = "") -> tuple[ApiCredential, str]:
        """Create a credential; returns it with the plain key, which is not stored."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        cred = cls.objects.create(account=account, name=name, prefix=key[:12], key_hash=hash_key(key))
        return cred, key

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_key(key))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class CredentialUsage(models.Model):
    """Requests a key made on one day (UTC), as the gateway counted them: written with its rollups, each request
    once (`accord.gateway.flusher.write_key_uses`). What the portal's and the staff's "usage this month" read."""

    credential = models.ForeignKey(ApiCredential, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["credential", "day"], name="catalog_usage_once_a_day")]

    def __str__(self) -> str:
        return f"{self.credential.prefix}... on {self.day}: {self.requests}"

    @staticmethod
    def month_start(today: dt.date | None = None) -> dt.date:
        """The first day of this month (UTC), from which "this month's usage" counts."""
        return (today or timezone.now().astimezone(dt.UTC).date()).replace(day=1)

    @staticmethod
    def this_month(usage: models.QuerySet[CredentialUsage], today: dt.date | None = None) -> dict[int, int]:
        """Requests per credential id in some usage rows, from the first of this month (UTC) on; a key without any
        is left out. The caller scopes the rows (an account's keys, the portal's scope)."""
        rows = (usage.filter(day__gte=CredentialUsage.month_start(today)).order_by().values("credential")
                .annotate(total=models.Sum("requests")).values_list("credential", "total"))
        return {credential: int(total) for credential, total in rows}

    @staticmethod
    def attach_this_month(keys: list[ApiCredential], usage: models.QuerySet[CredentialUsage]) -> list[ApiCredential]:
        """The keys, each with `this_month`: its requests this month in `usage` (0 for none), for a page."""
        used = CredentialUsage.this_month(usage)
        for key in keys:
            key.this_month = used.get(key.pk, 0)  # type: ignore[attr-defined]
        return keys
