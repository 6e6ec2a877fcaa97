from __future__ import annotations

from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("start/", views.start, name="start"),
    path("console/", views.console, name="console"),
    path("demo/", views.demo_page, name="demo"),
]
