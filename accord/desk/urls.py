"""Desk URLs: the agent queue and ticket pages."""

from __future__ import annotations

from django.urls import path

from . import canned, live, outbox_views, presence, settings_views, ticket_views, views

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
    path("new/", ticket_views.new_ticket, name="new"),
    path("tickets/<int:pk>/merge/", ticket_views.merge, name="merge"),
    path("tickets/<int:pk>/link-requester/", ticket_views.link_requester, name="link-requester"),
    path("tickets/<int:pk>/presence/", presence.ping, name="presence"),
    path("canned/", canned.canned_list, name="canned"),
    path("canned/<int:pk>/", canned.canned_edit, name="canned-edit"),
    path("canned/<int:pk>/delete/", canned.canned_delete, name="canned-delete"),
    path("outbox/", outbox_views.outbox_page, name="outbox"),
    path("outbox/retry/", outbox_views.outbox_retry, name="outbox-retry"),
]
urlpatterns += settings_views.urlpatterns  # /desk/settings/: mailboxes, webhooks, escalation, groups
