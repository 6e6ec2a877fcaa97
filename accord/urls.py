"""Top-level URLs: the staff UI, the admin, the REST API and the customer portal."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accord.access.auth import ThrottledLoginView
from accord.desk.views import support_form
from accord.ops.views import health_details
from accord.outreach import views as outreach
from accord.web.favicon import favicon

handler500 = "accord.lib.middleware.server_error"

urlpatterns = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz/details", health_details, name="health-details"),
    path("api/v1/", include("accord.api.urls")),
    path("desk/", include("accord.desk.urls")),
    path("governance/", include("accord.governance.urls")),
    path("insight/", include("accord.insight.urls")),
    path("reports/", include("accord.reports.urls")),
    path("billing/", include("accord.billing.urls")),
    path("support/", support_form, name="support-form"),
    path("portal/", include("accord.portal.urls")),
    path("privacy/", include("accord.privacy.urls")),
    path("chat/", include("accord.chat.urls")),
    path("u/<str:token>/", outreach.unsubscribe, name="unsubscribe"),
    path("c/<str:token>/", outreach.confirm, name="confirm-consent"),
    path("outreach/contacts/<int:contact_id>/opt-out/", outreach.opt_out, name="opt-out"),
    path("outreach/", include("accord.outreach.urls")),
    path("favicon.ico", favicon, name="favicon"),
    path("", include("accord.web.urls")),
]
