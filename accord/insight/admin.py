"""Admin for insight: exchange rates and health weights are edited here (or applied from YAML)."""

from __future__ import annotations

from django.contrib import admin

from .models import ClvFit, ExchangeRate, HealthScore, HealthWeights, OrderLine


@admin.register(OrderLine)
class OrderLineAdmin(admin.ModelAdmin):
    list_display = ("order_id", "sku", "account", "ordered_at", "amount", "currency", "quantity")
    search_fields = ("order_id", "sku", "account__external_id", "account__name")
    raw_id_fields = ("account",)


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    list_display = ("currency", "rate", "updated_at")


@admin.register(HealthWeights)
class HealthWeightsAdmin(admin.ModelAdmin):
    list_display = ("name", "window_days", "description")


@admin.register(HealthScore)
class HealthScoreAdmin(admin.ModelAdmin):
    list_display = ("account", "score", "computed_at")
    raw_id_fields = ("account",)


@admin.register(ClvFit)
class ClvFitAdmin(admin.ModelAdmin):
    list_display = ("created_at", "calibration_end", "unit", "customers", "repeat_customers")
