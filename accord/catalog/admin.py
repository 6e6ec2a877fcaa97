"""Admin for the service catalog and API credentials."""

from __future__ import annotations

from django.contrib import admin

from .models import ApiCredential, Endpoint, Operation, PartnerService, Pool, Service


class OperationInline(admin.TabularInline):
    model = Operation
    extra = 0


class PoolInline(admin.TabularInline):
    model = Pool
    extra = 0


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "base_path", "owner", "cost_per_instance_hour", "allow_anonymous", "forward_credentials")
    search_fields = ("name", "base_path")
    inlines = [OperationInline, PoolInline]


class EndpointInline(admin.TabularInline):
    model = Endpoint
    extra = 0


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    list_display = ("service", "name", "role", "capacity")
    list_filter = ("role", "service")
    inlines = [EndpointInline]


@admin.register(PartnerService)
class PartnerServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "provider", "promised_availability")
    filter_horizontal = ("services",)


@admin.register(ApiCredential)
class ApiCredentialAdmin(admin.ModelAdmin):
    list_display = ("prefix", "account", "name", "created_at", "last_used_at", "revoked_at")
    search_fields = ("prefix", "account__name")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")
    autocomplete_fields = ("account",)

    def has_add_permission(self, request: object) -> bool:
        return False  # keys are issued through the API or CLI, which show the key once
