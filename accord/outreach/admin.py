from typing import Any

from django import forms
from django.contrib import admin

from . import segments
from .models import Campaign, CampaignSend, Consent, ConsentEvent, Purpose, Segment, Suppression


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    list_display = ("name", "title")


class ConsentEventInline(admin.TabularInline):
    model = ConsentEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "status", "source", "user", "detail")


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    """Read here; changed through `accord consent`, the links mailed and the desk (so the history stays whole)."""

    list_display = ("contact", "purpose", "status", "source", "address", "confirmed_at", "withdrawn_at")
    list_filter = ("status", "purpose", "source")
    search_fields = ("address", "contact__name")
    readonly_fields = ("contact", "purpose", "status", "source", "address", "requested_at", "confirmed_at",
                       "withdrawn_at", "proof", "version")
    inlines = [ConsentEventInline]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("address", "reason", "at", "detail")
    list_filter = ("reason",)
    search_fields = ("address",)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "description", "spec"]

    def clean_spec(self) -> Any:
        try:
            return segments.check(self.cleaned_data.get("spec"))
        except segments.SpecError as e:
            raise forms.ValidationError(str(e)) from e


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """The filter is checked as `accord outreach segment add` checks it (segments.check)."""

    form = SegmentForm
    list_display = ("name", "description", "spec")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Templates are checked by the model's validation (unknown placeholders refused with their names)."""

    list_display = ("name", "status", "purpose", "segment", "send_at", "rate")
    list_filter = ("status", "purpose")
    readonly_fields = ("status", "started_at", "finished_at")


@admin.register(CampaignSend)
class CampaignSendAdmin(admin.ModelAdmin):
    """Read here; written only by the sender and the bounce handler."""

    list_display = ("campaign", "contact", "address", "status", "reason", "attempts", "sent_at")
    list_filter = ("status", "campaign")
    search_fields = ("address", "message_id")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
