from django.contrib import admin

from .models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("kind", "host", "pid", "started_at", "beat_at", "stopped_at", "detail")
    list_filter = ("kind",)
    readonly_fields = ("kind", "host", "pid", "started_at", "beat_at", "interval", "stopped_at", "detail")
