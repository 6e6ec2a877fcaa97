"""The REST API, version 1: each app registers its viewsets on one router."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accord.agreements.api import register as register_agreements
from accord.catalog.api import register as register_catalog
from accord.customers.api import register as register_customers

router = DefaultRouter()
register_customers(router)
register_agreements(router)
register_catalog(router)

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("", include(router.urls)),
]
