"""Admin for the desk's configuration: groups, mailboxes, channels, escalation rules."""

from __future__ import annotations

from django.contrib import admin

from .models import EscalationRule, Mailbox, Message, SlaClock, SupportGroup, Tag, Ticket, WebhookChannel

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
    fields = ("kind", "cycle", "status", "target_minutes", "started_at", "due_at", "stopped_at", "breached_at")
    readonly_fields = fields


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "account", "channel", "status", "priority", "sla_state", "next_due_at", "assignee")
    list_filter = ("status", "priority", "channel", "sla_state")
    search_fields = ("subject", "account__name")
    raw_id_fields = ("account", "contact", "assignee", "agreement")
    inlines = [MessageInline, SlaClockInline]
