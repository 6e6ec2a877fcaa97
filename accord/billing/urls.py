"""The staff pages of billing."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "billing"
urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.invoice, name="invoice"),
    path("<int:pk>/step/", views.step, name="step"),
]
