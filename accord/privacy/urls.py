from __future__ import annotations

from django.urls import path

from . import views

app_name = "privacy"
urlpatterns = [
    path("contacts/<int:pk>/", views.page, name="contact"),
    path("contacts/<int:pk>/export/", views.export, name="export"),
    path("contacts/<int:pk>/erase/", views.erase, name="erase"),
]
