"""Staff UI URLs."""

from __future__ import annotations

from django.urls import path

from . import code_views, views

app_name = "web"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", views.accounts, name="accounts"),
    path("accounts/<int:pk>/", views.account, name="account"),
    path("agreements/", views.agreements, name="agreements"),
    path("agreements/<int:pk>/", views.agreement, name="agreement"),
    path("services/", views.services, name="services"),
    path("services/<int:pk>/", views.service, name="service"),
]
urlpatterns += code_views.urlpatterns  # what stays code: the YAML editor, calendars, policies
