"""Admin for the desk's configuration: groups, mailboxes, channels, escalation rules; the outbox, read-mostly."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import (
    EscalationRule,
    Mailbox,
    Message,
    OutgoingMail,
    SlaClock,
    SupportGroup,
    Tag,
    Ticket,
    WebhookChannel,
)

admin.site.register(SupportGroup)
admin.site.register(Tag)


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "port", "security", "username", "folder", "enabled", "last_polled_at", "last_error")


@admin.register(WebhookChannel)
class WebhookChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "group", "reply_url")


@admin.register(EscalationRule)
class EscalationRuleAdmin(admin.ModelAdmin):
    list_display = ("order", "name", "enabled", "trigger", "clock_kind", "action", "assignee", "group", "notify_email")
    filter_horizontal = ("tiers",)


class MessageInline(admin.StackedInline):
    model = Message
    extra = 0
    fields = ("kind", "from_address", "subject", "body_text", "flagged", "flag_reason", "created_at")
    readonly_fields = fields


class SlaClockInline(admin.TabularInline):
    model = SlaClock
    extra = 0
    fields = ("kind", "cycle", "status", "target_seconds", "started_at", "due_at", "stopped_at", "breached_at")
    readonly_fields = fields


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "account", "channel", "status", "priority", "sla_state", "next_due_at", "assignee")
    list_filter = ("status", "priority", "channel", "sla_state")
    search_fields = ("subject", "account__name")
    raw_id_fields = ("account", "contact", "assignee", "agreement")
    inlines = [MessageInline, SlaClockInline]


@admin.register(OutgoingMail)
class OutgoingMailAdmin(admin.ModelAdmin):
    """The outbox as the sender sees it: read-only (the sender and /desk/outbox/ change it), with "retry now"."""

    list_display = ("id", "message", "via", "auto", "status", "attempts", "next_attempt_at", "sent_at", "last_error")
    list_filter = ("status", "via", "auto")
    search_fields = ("message__subject", "last_error")
    raw_id_fields = ("message",)
    readonly_fields = ("message", "via", "channel", "headers", "auto", "status", "attempts", "last_error", "next_attempt_at",
                       "claimed_at", "sent_at", "created_at")
    actions = ["retry_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a mail enters the outbox with its message, in the ticket change's transaction

    @admin.action(description="Retry the selected pending or failed mails now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutgoingMail]) -> None:
        from .outbox import retry_now

        done = retry_now(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{done} mail(s) queued to be tried again now.", messages.SUCCESS)
