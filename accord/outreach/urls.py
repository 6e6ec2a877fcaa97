from django.urls import path

from . import views

app_name = "outreach"

urlpatterns = [
    path("campaigns/", views.campaigns_page, name="campaigns"),
    path("campaigns/new/", views.campaign_edit, name="campaign-new"),
    path("campaigns/<int:pk>/", views.campaign_page, name="campaign"),
    path("campaigns/<int:pk>/edit/", views.campaign_edit, name="campaign-edit"),
    path("campaigns/<int:pk>/schedule/", views.campaign_schedule, name="campaign-schedule"),
    path("segments/", views.segments_page, name="segments"),
    path("segments/new/", views.segment_edit, name="segment-new"),
    path("segments/<int:pk>/edit/", views.segment_edit, name="segment-edit"),
]
