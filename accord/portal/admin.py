from __future__ import annotations

from django.contrib import admin

from .models import PortalUser, SignInLink


@admin.register(PortalUser)
class PortalUserAdmin(admin.ModelAdmin):
    """Staff see and deactivate portal users; passwords stay hashes nobody reads (invite: `accord portal invite`)."""

    list_display = ["email", "contact", "is_admin", "active", "last_login", "invited_by"]
    list_filter = ["is_admin", "active"]
    search_fields = ["email", "contact__name", "contact__account__name"]
    fields = ["contact", "email", "is_admin", "active", "invited_by", "created_at", "last_login"]
    readonly_fields = ["invited_by", "created_at", "last_login"]
    raw_id_fields = ["contact"]


@admin.register(SignInLink)
class SignInLinkAdmin(admin.ModelAdmin):
    """Issued links, for support questions ("I never got the mail"); the token itself is never stored."""

    list_display = ["user", "purpose", "created_at", "expires_at", "used_at"]
    fields = ["user", "purpose", "created_at", "expires_at", "used_at"]
    readonly_fields = ["user", "purpose", "created_at", "expires_at", "used_at"]

    def has_add_permission(self, request: object) -> bool:
        return False
