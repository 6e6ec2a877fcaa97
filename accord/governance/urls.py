"""Governance pages: the overview, its live data, and manual overrides."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "governance"
urlpatterns = [
    path("", views.page, name="page"),
    path("live.json", views.live_json, name="live"),
    path("policies/<slug:name>/override/", views.override, name="override"),
    path("policies/<slug:name>/end-override/", views.end_override, name="end-override"),
]
