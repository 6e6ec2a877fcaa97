from __future__ import annotations

from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("login/link/", views.request_link, name="request-link"),
    path("login/link/<str:token>/", views.follow_link, name="link"),
    path("logout/", views.logout, name="logout"),
    path("tickets/", views.tickets, name="tickets"),
    path("tickets/new/", views.new_ticket, name="new-ticket"),
    path("tickets/<str:reference>/", views.ticket, name="ticket"),
    path("tickets/<str:reference>/close/", views.close_ticket, name="close-ticket"),
    path("tickets/<str:reference>/files/<int:pk>/", views.attachment, name="attachment"),
    path("credits/", views.credits, name="credits"),
    path("invoices/", views.invoices, name="invoices"),
    path("invoices/<int:pk>/<str:fmt>/", views.invoice_file, name="invoice-file"),
    path("reports/", views.reports, name="reports"),
    path("reports/<str:period>/<str:fmt>/", views.report_file, name="report-file"),
    path("team/", views.team, name="team"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key>/revoke/", views.revoke_key, name="revoke-key"),
    path("team/password/", views.set_password, name="set-password"),
]
