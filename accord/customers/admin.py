"""Admin for customers: the place for everything the staff UI does not edit."""

from __future__ import annotations

from django.contrib import admin

from .models import Account, Commitment, Contact, ContactPoint, Tier, TierChange, TierOverride


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("rank", "name", "min_commitment", "min_revenue_12m", "match")
    ordering = ("rank",)


class CommitmentInline(admin.TabularInline):
    model = Commitment
    extra = 0


class TierChangeInline(admin.TabularInline):
    model = TierChange
    fk_name = "account"
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_tier", "to_tier", "cause", "detail", "changed_by")

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "external_id", "kind", "tier", "revenue_12m", "cost_to_serve_12m", "owner")
    list_filter = ("tier", "kind")
    search_fields = ("name", "external_id")
    readonly_fields = ("tier", "created_at", "updated_at")
    inlines = [CommitmentInline, TierChangeInline]


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
    extra = 1


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "title", "external_id")
    search_fields = ("name", "external_id", "points__value")
    autocomplete_fields = ("account",)
    inlines = [ContactPointInline]


@admin.register(TierOverride)
class TierOverrideAdmin(admin.ModelAdmin):
    list_display = ("account", "tier", "reason", "expires_at", "revoked_at", "created_by")
    autocomplete_fields = ("account",)


@admin.register(TierChange)
class TierChangeAdmin(admin.ModelAdmin):
    list_display = ("at", "account", "from_tier", "to_tier", "cause")
    list_filter = ("cause",)
    search_fields = ("account__name",)
