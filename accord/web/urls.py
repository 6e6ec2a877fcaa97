"""Staff UI URLs."""

from __future__ import annotations

from django.urls import path

from . import code_views, edit_views, views

app_name = "web"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", views.accounts, name="accounts"),
    path("accounts/<int:pk>/", views.account, name="account"),
    path("agreements/", views.agreements, name="agreements"),
    path("agreements/<int:pk>/", views.agreement, name="agreement"),
    path("services/", views.services, name="services"),
    path("services/<int:pk>/", views.service, name="service"),
    # Creating and editing (issue 16): accord/web/edit_views.py
    path("accounts/new/", edit_views.account_create, name="account-create"),
    path("accounts/<int:pk>/edit/", edit_views.account_edit, name="account-edit"),
    path("accounts/<int:pk>/contacts/new/", edit_views.contact_create, name="contact-create"),
    path("accounts/<int:pk>/contacts/<int:contact_pk>/edit/", edit_views.contact_edit, name="contact-edit"),
    path("accounts/<int:pk>/contacts/<int:contact_pk>/portal-invite/", edit_views.portal_invite, name="portal-invite"),
    path("accounts/<int:pk>/commitments/new/", edit_views.commitment_create, name="commitment-create"),
    path("accounts/<int:pk>/commitments/<int:commitment_pk>/edit/", edit_views.commitment_edit,
         name="commitment-edit"),
    path("accounts/<int:pk>/commitments/<int:commitment_pk>/delete/", edit_views.commitment_delete,
         name="commitment-delete"),
    path("accounts/<int:pk>/override/", edit_views.override_set, name="override-set"),
    path("accounts/<int:pk>/override/<int:override_pk>/end/", edit_views.override_end, name="override-end"),
    path("accounts/<int:pk>/keys/new/", edit_views.key_issue, name="key-issue"),
    path("accounts/<int:pk>/keys/<int:key_pk>/issued/", edit_views.key_issued, name="key-issued"),
    path("accounts/<int:pk>/keys/<int:key_pk>/revoke/", edit_views.key_revoke, name="key-revoke"),
    path("audit/", edit_views.audit, name="audit"),
]
urlpatterns += code_views.urlpatterns  # what stays code: the YAML editor, calendars, policies
