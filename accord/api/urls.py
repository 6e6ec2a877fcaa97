"""The REST API, version 1: each app registers its viewsets on one router."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework import mixins, routers

from accord.access.api import register as register_access
from accord.access.audit import Audited
from accord.agreements.api import register as register_agreements
from accord.billing.api import register as register_billing
from accord.catalog.api import register as register_catalog
from accord.customers.api import register as register_customers
from accord.desk.api import CallLogView, WebhookView
from accord.desk.api import register as register_desk
from accord.desk.ticket_api import ROUTES as DESK_TICKET_ACTIONS
from accord.gateway.api import register as register_gateway
from accord.governance.api import IndicatorsView
from accord.governance.api import register as register_governance
from accord.insight.api import register as register_insight
from accord.lib.middleware import error_response
from accord.outreach.api import register as register_outreach
from accord.privacy.api import register as register_privacy
from accord.reports.api import register as register_reports


class Router(routers.DefaultRouter):
    class APIRootView(routers.APIRootView):
        """The API's resources; any staff role may read this list (every role holds access.view_apitoken)."""

        required_perms = {"GET": ["access.view_apitoken"], "HEAD": ["access.view_apitoken"],
                          "OPTIONS": ["access.view_apitoken"]}


router = Router()
register_access(router)
register_customers(router)
register_agreements(router)
register_catalog(router)
register_desk(router)
register_gateway(router)
register_governance(router)
register_reports(router)
register_billing(router)
register_insight(router)
register_outreach(router)
register_privacy(router)

# Writable viewsets that write their own audit entries (issue-key, revoke-key), or whose changes are a user's own
OWN_AUDIT = {"credentials", "me/tokens"}


def audit_every_change(router: routers.BaseRouter) -> None:
    """Every writable viewset writes audit entries (`access.audit.Audited`, docs/access.md): added here, where every
    app's viewsets are composed, rather than in each app (those on access's own layer may not import it,
    docs/architecture.md), so no viewset can be left without it."""
    writable = (mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin)
    for i, (prefix, viewset, basename) in enumerate(router.registry):
        if issubclass(viewset, writable) and not issubclass(viewset, Audited) and prefix not in OWN_AUDIT:
            audited = type(viewset.__name__, (Audited, viewset), {"__doc__": viewset.__doc__,
                                                                 "__module__": viewset.__module__})
            router.registry[i] = (prefix, audited, basename)


audit_every_change(router)

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The API reference is Redoc on our own page, which passes axe (accord/web/tests/test_accessibility.py); Swagger
    # UI is not served: its operation list nests buttons in buttons, has 19 px targets and 2:1 method badges.
    path("docs/", SpectacularRedocView.as_view(url_name="schema", template_name="web/redoc.html"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="web/redoc.html"), name="api-redoc"),
    path("calls/", CallLogView.as_view(), name="desk-calls"),
    path("webhooks/<slug:channel>/", WebhookView.as_view(), name="desk-webhook"),
    path("governance/indicators/", IndicatorsView.as_view(), name="governance-indicators"),
    *[path(f"tickets/<int:pk>/{name}/", view.as_view(), name=f"desk-ticket-{name}")
      for name, view in DESK_TICKET_ACTIONS],
    path("", include(router.urls)),
]


@csrf_exempt  # nothing is changed here: an unknown URL answers 404 whatever the method
def not_found(request: HttpRequest, unknown: str) -> HttpResponse:
    """Unknown URLs under /api/ answer 404 in the API's error shape."""
    return error_response(404, "not_found", f"There is no API resource at /api/v1/{unknown}.")


urlpatterns.append(re_path(r"^(?P<unknown>.*)$", not_found))
