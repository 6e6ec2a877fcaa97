"""Insight's pages."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "insight"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/<int:pk>/", views.account, name="account"),
]
