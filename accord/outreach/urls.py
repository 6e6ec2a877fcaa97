from django.urls import path

from . import views

app_name = "outreach"

urlpatterns = [
    path("campaigns/", views.campaigns_page, name="campaigns"),
    path("campaigns/<int:pk>/", views.campaign_page, name="campaign"),
    path("segments/", views.segments_page, name="segments"),
]
