"""Admin for calendars and agreements (YAML via `accord apply` is the primary way to change them)."""

from __future__ import annotations

from django.contrib import admin

from .models import Agreement, BusinessCalendar, CreditBand, CreditSchedule, Objective


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "timezone", "holiday_country", "holiday_subdivision")


class ObjectiveInline(admin.TabularInline):
    model = Objective
    extra = 0


@admin.register(Agreement)
class AgreementAdmin(admin.ModelAdmin):
    list_display = ("name", "tier", "account", "effective_from", "effective_to", "monthly_fee", "calendar")
    list_filter = ("tier",)
    search_fields = ("name", "account__name")
    autocomplete_fields = ("account",)
    filter_horizontal = ("services",)
    inlines = [ObjectiveInline]


class CreditBandInline(admin.TabularInline):
    model = CreditBand
    extra = 0


@admin.register(CreditSchedule)
class CreditScheduleAdmin(admin.ModelAdmin):
    list_display = ("agreement", "cap_percent")
    inlines = [CreditBandInline]
