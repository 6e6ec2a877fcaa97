"""The staff UI's forms for segments and campaigns: each refuses bad input at the field it concerns, with the same
checks as the command line and the API (segments.check, the campaign's template checks)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q

from accord.customers.models import Contact, ContactPoint

from . import segments
from .models import Campaign, Segment


class SpecField(forms.CharField):
    """A segment filter as JSON text, checked by `segments.check` (its message names the key and the reason)."""

    widget = forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, strip=True, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> dict[str, Any]:  # type: ignore[override]
        text = (value or "").strip() if isinstance(value, str) else ""
        if not text:
            return {}
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"This is not JSON: {e.msg} at line {e.lineno}, column {e.colno}.") from None
        try:
            return segments.check(spec)
        except segments.SpecError as e:
            raise ValidationError(str(e)) from None


class SegmentForm(forms.ModelForm):
    spec = SpecField(label="Filter", help_text=(
        'JSON; every key given must hold, {} is every contact. E.g. {"tier": ["gold"], "country": ["DE", "AT"], '
        '"custom": [{"on": "account", "key": "industry", "equals": "travel"}]}. The keys are in docs/outreach.md.'))

    class Meta:
        model = Segment
        fields = ["name", "description", "spec"]
        error_messages = {"name": {"required": "A segment needs a name.",
                                   "unique": "Another segment has this name."}}


class CampaignForm(forms.ModelForm):
    send_at = forms.DateTimeField(label="Send at (UTC)", required=False, input_formats=["%Y-%m-%dT%H:%M"],
                                  widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
                                  help_text="Not before this time; empty: as soon as it is scheduled.")
    rate = forms.FloatField(label="Rate (messages per second)", min_value=0.01, initial=10.0,
                            help_text="At most this many messages a second.")

    class Meta:
        model = Campaign
        fields = ["name", "purpose", "segment", "from_email", "subject", "text", "html", "send_at", "rate"]
        labels = {"from_email": "From", "text": "Text part", "html": "HTML part"}
        help_texts = {
            "from_email": "Empty: the site's sender (ACCORD_MAIL_FROM).",
            "subject": "Placeholders: {{ contact.name }}, {{ contact.first_name }}, {{ contact.title }}, "
                       "{{ account.name }}, {{ campaign.name }}, {{ purpose.title }}, {{ unsubscribe_url }}.",
        }
        widgets = {"text": forms.Textarea(attrs={"rows": 8}), "html": forms.Textarea(attrs={"rows": 8})}
        error_messages = {"name": {"required": "A campaign needs a name."}}

    def clean_send_at(self) -> dt.datetime | None:
        value = self.cleaned_data.get("send_at")
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class PreviewForm(forms.Form):
    contact = forms.CharField(label="Preview for", required=False, max_length=254, help_text=(
        "A contact's id, external id or e-mail address; empty: the segment's first contact."))

    def contact_for(self, campaign: Campaign) -> Contact | None:
        """The contact named, else the segment's first; ValidationError when there is none."""
        ref = (self.cleaned_data.get("contact") or "").strip()
        if ref:
            found = Contact.objects.filter(
                (Q(pk=int(ref)) if ref.isdigit() else Q(pk__in=[])) | Q(external_id=ref)
                | Q(points__kind=ContactPoint.Kind.EMAIL, points__value=ref.lower())
            ).select_related("account").order_by("pk").first()
            if found is None:
                raise ValidationError(f"No contact with id, external id or e-mail address “{ref}”.")
            return found
        try:
            return segments.contacts(campaign.segment.spec).select_related("account").first()
        except segments.SpecError as e:
            raise ValidationError(f"The segment's filter no longer holds: {e}") from None
