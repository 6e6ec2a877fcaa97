from django.contrib import admin

from .models import Consent, ConsentEvent, Purpose, Suppression


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
