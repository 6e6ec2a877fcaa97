"""The staff pages of reports and credits."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "reports"
urlpatterns = [
    path("", views.index, name="index"),
    path("credits/", views.ledger, name="ledger"),
    path("credits/<int:pk>/decide/", views.decide_credit, name="decide"),
    path("accounts/<str:external_id>/", views.account, name="account"),
    path("accounts/<str:external_id>/closed/<str:period>/v<int:version>.<str:fmt>", views.closed_version,
         name="closed-version"),
]
