"""The staff UI's editing forms: accounts, contacts with their addresses and numbers, commitments, tier
overrides, API keys, and the audit page's filters. Each refuses bad input at the field it concerns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q
from django.forms import BaseInlineFormSet, inlineformset_factory
from django.utils import timezone

from accord.access.models import AuditEntry
from accord.customers.csvio import RowError, custom_cell, custom_value
from accord.customers.models import (
    CUSTOM_KEY,
    Account,
    Commitment,
    Contact,
    ContactPoint,
    Tier,
    _zones,
)


class CustomFieldsField(forms.CharField):
    """Custom fields as lines `key = value`: true/false and numbers are stored as such, other text as text (the
    CSV import's reading); an empty box clears them. Errors name the line and the key."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "One per line, key = value (e.g. industry = travel, employees = 120, "
                                       "key_account = true). A key is a letter, then letters, digits or _.")
        super().__init__(required=False, strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            # sorted: PostgreSQL's jsonb does not keep the order they were written in
            return "\n".join(f"{k} = {custom_cell(v)}" for k, v in sorted(value.items()))
        return value

    def to_python(self, value: Any) -> dict[str, Any]:  # type: ignore[override]
        import json

        text = value if isinstance(value, str) else ""
        out: dict[str, Any] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            key, sep, raw = line.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep:
                raise ValidationError(f"Line {n}: write key = value (e.g. industry = travel).")
            if not CUSTOM_KEY.fullmatch(key):
                raise ValidationError(f"Line {n}: “{key}” is not a key: a letter, then letters, digits or _ "
                                      "(at most 60).")
            if key in out:
                raise ValidationError(f"Line {n}: “{key}” is given twice.")
            if not raw:
                raise ValidationError(f"Line {n}: “{key}” has no value; delete the line to remove the field.")
            if raw[0] in "[{":
                try:
                    nested = json.loads(raw)
                except ValueError:
                    nested = None
                if isinstance(nested, dict | list):
                    raise ValidationError(f"Line {n}: custom field “{key}”: nested "
                                          f"{'objects' if isinstance(nested, dict) else 'lists'} are not allowed; "
                                          "a value is text, a number or true/false.")
            try:
                out[key] = custom_value(raw, f"Line {n}: “{key}”")
            except RowError as e:
                raise ValidationError(str(e)) from None
        return out


def _zone_choices() -> list[tuple[str, str]]:
    return [(z, z) for z in sorted(_zones())]


class AccountForm(forms.ModelForm):
    """An account's own facts; its tier follows from them (or from an override), so it is not edited here."""

    timezone = forms.ChoiceField(label="Time zone", choices=_zone_choices, initial="UTC",
                                 help_text="The customer's IANA time zone, used for their business hours.")
    revenue_12m = forms.DecimalField(label="12-month revenue", max_digits=14, decimal_places=2, min_value=Decimal(0),
                                     initial=Decimal(0), help_text="Revenue over the trailing 12 months.")
    cost_to_serve_12m = forms.DecimalField(label="Cost to serve (12 months)", max_digits=14, decimal_places=2,
                                           min_value=Decimal(0), initial=Decimal(0))
    country = forms.CharField(label="Country", max_length=2, required=False,
                              help_text="ISO 3166-1 code of two letters, e.g. DE, FR, GB; empty if not known.")
    custom_fields = CustomFieldsField(label="Custom fields")

    class Meta:
        model = Account
        fields = ["name", "external_id", "kind", "owner", "timezone", "revenue_12m", "cost_to_serve_12m", "country",
                  "custom_fields"]
        labels = {"external_id": "External id"}
        help_texts = {"external_id": "The id your other systems know this customer by; unique, may be empty."}
        error_messages = {"name": {"required": "An account needs a name."}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields["owner"]
        assert isinstance(owner, forms.ModelChoiceField)
        # Active staff, and whoever owns the account now (so saving never drops an owner who left the staff).
        current = self.instance.owner_id if self.instance and self.instance.pk else None
        owner.queryset = get_user_model().objects.filter(
            Q(is_staff=True, is_active=True) | Q(pk=current)).order_by("username")
        owner.empty_label = "nobody"
        owner.help_text = "The staff member who looks after this customer."

    def clean_external_id(self) -> str | None:
        value = self.cleaned_data.get("external_id")
        return value.strip() or None if isinstance(value, str) else None

    def clean_country(self) -> str:
        return str(self.cleaned_data.get("country") or "").strip().upper()


class ContactForm(forms.ModelForm):
    custom_fields = CustomFieldsField(label="Custom fields")

    class Meta:
        model = Contact
        fields = ["name", "title", "external_id", "custom_fields"]
        labels = {"external_id": "External id"}
        error_messages = {"name": {"required": "A contact needs a name."}}

    def clean_external_id(self) -> str | None:
        value = self.cleaned_data.get("external_id")
        return value.strip() or None if isinstance(value, str) else None


def normal_phone(raw: str) -> str:
    """A phone number as it is stored and matched (the CSV import's rule): digits, with a leading + kept."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not (5 <= len(digits) <= 17) or any(ch.isalpha() for ch in raw):
        raise ValidationError(f"“{raw}” is not a phone number (5 to 17 digits, e.g. +44 20 7946 0000).")
    return ("+" if raw.strip().startswith("+") else "") + digits


class PointForm(forms.ModelForm):
    """One e-mail address or phone number of a contact; `kind` is the formset's."""

    kind = ContactPoint.Kind.EMAIL

    class Meta:
        model = ContactPoint
        fields = ["value", "primary"]

    def clean_value(self) -> str:
        raw = str(self.cleaned_data.get("value") or "").strip()
        if self.kind == ContactPoint.Kind.EMAIL:
            value = raw.lower()
            try:
                validate_email(value)
            except ValidationError:
                raise ValidationError(f"“{raw}” is not an e-mail address.") from None
            return value
        return normal_phone(raw)

    def validate_unique(self) -> None:
        """The (kind, value) uniqueness is checked by the formset, which knows the kind and names the owner."""


class EmailForm(PointForm):
    kind = ContactPoint.Kind.EMAIL

    class Meta(PointForm.Meta):
        labels = {"value": "E-mail address", "primary": "Primary"}
        widgets = {"value": forms.EmailInput(attrs={"autocomplete": "off"})}


class PhoneForm(PointForm):
    kind = ContactPoint.Kind.PHONE

    class Meta(PointForm.Meta):
        labels = {"value": "Phone number", "primary": "Primary"}
        widgets = {"value": forms.TextInput(attrs={"type": "tel", "autocomplete": "off"})}


class BasePointFormSet(BaseInlineFormSet):
    """A contact's addresses (or numbers): no value twice, none that another contact already has."""

    kind = ContactPoint.Kind.EMAIL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        instance = kwargs.get("instance")
        kwargs["queryset"] = ContactPoint.objects.filter(kind=self.kind) if instance and instance.pk else \
            ContactPoint.objects.none()
        super().__init__(*args, **kwargs)

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = "Remove"

    def clean(self) -> None:
        super().clean()
        seen: dict[str, int] = {}
        primary_row: int | None = None
        owner_pk = self.instance.pk
        for i, form in enumerate(self.forms):
            if not getattr(form, "cleaned_data", None) or form.cleaned_data.get("DELETE"):
                continue
            value = form.cleaned_data.get("value")
            if not value:
                continue
            if form.cleaned_data.get("primary"):
                if primary_row is not None:
                    form.add_error("primary", f"Only one can be primary (row {primary_row + 1} is).")
                primary_row = i
            if value in seen:
                form.add_error("value", f"“{value}” is already in row {seen[value] + 1}.")
                continue
            seen[value] = i
            taken = ContactPoint.objects.filter(kind=self.kind, value=value).select_related("contact")
            if owner_pk:
                taken = taken.exclude(contact_id=owner_pk)
            other = taken.first()
            if other is not None:
                form.add_error("value", f"“{value}” already belongs to the contact {other.contact.name}.")

    def save_new(self, form: forms.ModelForm, commit: bool = True) -> ContactPoint:
        form.instance.kind = self.kind
        return super().save_new(form, commit)


class EmailFormSet(BasePointFormSet):
    kind = ContactPoint.Kind.EMAIL


class PhoneFormSet(BasePointFormSet):
    kind = ContactPoint.Kind.PHONE


EmailPoints = inlineformset_factory(Contact, ContactPoint, form=EmailForm, formset=EmailFormSet, extra=1,
                                    can_delete=True, max_num=20, validate_max=True)
PhonePoints = inlineformset_factory(Contact, ContactPoint, form=PhoneForm, formset=PhoneFormSet, extra=1,
                                    can_delete=True, max_num=20, validate_max=True)


class CommitmentForm(forms.ModelForm):
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"),
                                help_text="What the customer commits to pay in the period; more than zero.")

    class Meta:
        model = Commitment
        fields = ["period_start", "period_end", "amount", "volume", "unit", "note"]
        labels = {"period_start": "Period starts", "period_end": "Period ends (inclusive)"}
        widgets = {"period_start": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                   "period_end": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", "The period ends before it starts.")
        volume = data.get("volume")
        if volume and not (data.get("unit") or "").strip():
            self.add_error("unit", "Say what the volume counts (e.g. bookings).")
        return data


class OverrideForm(forms.Form):
    """A tier set by hand: which tier, why, and until when."""

    tier = forms.ModelChoiceField(queryset=Tier.objects.order_by("rank"), empty_label=None)
    reason = forms.CharField(max_length=300, help_text="Why the rules are set aside; shown in the tier history.",
                             error_messages={"required": "A manual override needs a reason."})
    expires_at = forms.DateTimeField(label="Expires at", widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="The override ends then and the rules apply again; must be in the future.")

    def clean_expires_at(self) -> dt.datetime:
        value: dt.datetime = self.cleaned_data["expires_at"]
        if value <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return value


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Label",
                           help_text="What the key is for (e.g. booking engine, production); optional.")


class AuditFilterForm(forms.Form):
    """The audit page's filters; every field optional."""

    object_type = forms.ChoiceField(label="Object type", required=False)
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="anyone",
                                  to_field_name="username")
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (inclusive)", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        types = AuditEntry.objects.order_by("object_type").values_list("object_type", flat=True).distinct()
        self.fields["object_type"].choices = [("", "any"), *((t, t) for t in types)]  # type: ignore[attr-defined]
        user = self.fields["user"]
        assert isinstance(user, forms.ModelChoiceField)
        user.queryset = get_user_model().objects.filter(audit_entries__isnull=False).distinct().order_by("username")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "The range ends before it starts.")
        return data

    def filter(self, qs: Any) -> Any:
        data = self.cleaned_data
        if data.get("object_type"):
            qs = qs.filter(object_type=data["object_type"])
        if data.get("user"):
            qs = qs.filter(user=data["user"])
        tz = timezone.get_current_timezone()
        if data.get("since"):
            qs = qs.filter(at__gte=dt.datetime.combine(data["since"], dt.time.min, tzinfo=tz))
        if data.get("until"):
            qs = qs.filter(at__lt=dt.datetime.combine(data["until"] + dt.timedelta(days=1), dt.time.min, tzinfo=tz))
        return qs


