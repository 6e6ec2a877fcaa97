"""Desk URLs: the agent queue and ticket pages."""

from __future__ import annotations

from django.urls import path

from . import live, outbox_views, views

app_name = "desk"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("changes/", live.changes, name="changes"),
    path("bulk/", views.bulk, name="bulk"),
    path("filters/", views.save_filter, name="save-filter"),
    path("filters/<int:pk>/delete/", views.delete_filter, name="delete-filter"),
    path("tickets/<int:pk>/", views.ticket, name="ticket"),
    path("tickets/<int:pk>/reply/", views.reply, name="reply"),
    path("tickets/<int:pk>/update/", views.update, name="update"),
    path("outbox/", outbox_views.outbox_page, name="outbox"),
    path("outbox/retry/", outbox_views.outbox_retry, name="outbox-retry"),
]
