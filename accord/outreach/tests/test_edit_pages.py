"""Creating and editing segments and campaigns in the staff UI: counts and previews without saving, refusals at
the field, scheduling from the campaign's page, no change once sending started, and the roles."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.customers.models import Account, Contact, ContactPoint
from accord.outreach.models import Campaign, Purpose, Segment

pytestmark = pytest.mark.django_db


def login(username: str, role: str) -> Client:
    user = User.objects.create_user(username, f"{username}@accord.example", "pw", is_staff=True)
    grant(user, role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world() -> dict[str, Any]:
    de = Account.objects.create(name="Berlin Reisen", external_id="DE1", country="DE")
    Account.objects.create(name="Paris Voyages", external_id="FR1", country="FR")
    for key in ("ada", "bob"):
        c = Contact.objects.create(name=f"{key.title()} Person", external_id=key, account=de)
        ContactPoint.objects.create(contact=c, kind="email", value=f"{key}@example.com", primary=True)
    return {"purpose": Purpose.objects.create(name="newsletter", title="the newsletter"),
            "manager": login("mona", "manager"), "agent": login("arno", "agent")}


def errors_of(html: str, field_id: str) -> str:
    m = re.search(rf'<span class="errors" id="{field_id}_errors">(.*?)</span>', html, re.S)
    return m.group(1) if m else ""


def test_a_segment_is_counted_before_it_is_saved_refused_at_its_filter_and_edited(world: dict[str, Any]) -> None:
    manager = world["manager"]
    html = manager.post("/outreach/segments/new/", {"name": "germany", "spec": '{"country": ["DE"]}',
                                                    "do": "count"}).content.decode()
    assert "2 contacts match now." in html and not Segment.objects.exists()  # counted, nothing saved
    r = manager.post("/outreach/segments/new/", {"name": "germany", "spec": '{"country": ["DE", "XX"]}', "do": "save"})
    assert r.status_code == 200 and not Segment.objects.exists()
    assert "country[1]: &#x27;XX&#x27; is not an ISO 3166-1" in errors_of(r.content.decode(), "id_spec")
    r = manager.post("/outreach/segments/new/", {"name": "germany", "spec": '{"country": ["DE"', "do": "save"})
    assert "This is not JSON" in errors_of(r.content.decode(), "id_spec")
    r = manager.post("/outreach/segments/new/", {"name": "germany", "spec": '{"country": ["DE"]}', "do": "save"})
    assert r.status_code == 302 and r["Location"] == "/outreach/segments/"
    segment = Segment.objects.get(name="germany")
    assert segment.spec == {"country": ["DE"]}
    assert AuditEntry.objects.get(object_type="outreach.segment", action="create").changes["spec"] == [
        None, {"country": ["DE"]}]
    html = manager.get(f"/outreach/segments/{segment.pk}/edit/").content.decode()
    assert "2 contacts match now." in html and "&quot;DE&quot;" in html
    r = manager.post(f"/outreach/segments/{segment.pk}/edit/", {"name": "france", "spec": '{"country": "FR"}',
                                                               "do": "save"})
    assert r.status_code == 302 and Segment.objects.get(pk=segment.pk).spec == {"country": "FR"}
    assert 'href="/outreach/segments/new/"' in manager.get("/outreach/segments/").content.decode()


def test_agents_read_segments_and_campaigns_but_cannot_create_or_edit_them(world: dict[str, Any]) -> None:
    agent = world["agent"]
    segment = Segment.objects.create(name="all", spec={})
    campaign = Campaign.objects.create(name="News", purpose=world["purpose"], segment=segment, subject="s", html="h",
                                       text="t")
    assert agent.get("/outreach/segments/").status_code == 200
    assert 'href="/outreach/segments/new/"' not in agent.get("/outreach/segments/").content.decode()
    assert "edit-campaign" not in agent.get(f"/outreach/campaigns/{campaign.pk}/").content.decode()
    for url in ["/outreach/segments/new/", f"/outreach/segments/{segment.pk}/edit/", "/outreach/campaigns/new/",
                f"/outreach/campaigns/{campaign.pk}/edit/"]:
        assert agent.get(url).status_code == 403, url
        assert agent.post(url, {"name": "x", "do": "save"}).status_code == 403, url
    assert agent.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {}).status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == "draft" and Segment.objects.get(pk=segment.pk).name == "all"


def campaign_data(world: dict[str, Any], **extra: Any) -> dict[str, Any]:
    segment, _ = Segment.objects.get_or_create(name="germany", defaults={"spec": {"country": ["DE"]}})
    return {"name": "December news", "purpose": str(world["purpose"].pk), "segment": str(segment.pk), "from_email": "",
            "subject": "News for {{ account.name }}", "text": "Hi {{ contact.first_name }}",
            "html": "<p>Hi {{ contact.first_name }}</p>", "send_at": "", "rate": "10", "contact": "", **extra}


def test_a_campaign_sender_that_is_not_one_address_is_refused_and_the_form_keeps_the_text(
        world: dict[str, Any]) -> None:
    manager = world["manager"]
    for sender in ("not-an-email", "news@example.com, boss@example.com", "News <news@example.com>\r\nBcc: x@y.example"):
        r = manager.post("/outreach/campaigns/new/", campaign_data(world, do="save", from_email=sender))
        html = r.content.decode()
        assert r.status_code == 200 and "is not one e-mail address" in errors_of(html, "id_from_email"), sender
        assert "Hi {{ contact.first_name }}" in html  # what was typed is kept
    assert not Campaign.objects.exists()
    r = manager.post("/outreach/campaigns/new/", campaign_data(world, do="save", from_email="News <news@example.com>"))
    assert r.status_code == 302 and Campaign.objects.get().from_email == "News <news@example.com>"


def test_a_campaign_is_previewed_without_saving_refused_at_its_template_saved_and_scheduled(
        world: dict[str, Any]) -> None:
    manager = world["manager"]
    html = manager.post("/outreach/campaigns/new/", campaign_data(world, do="preview",
                                                                  contact="bob@example.com")).content.decode()
    assert 'id="preview-subject">News for Berlin Reisen<' in html and "Hi Bob" in html
    assert not Campaign.objects.exists()  # previewed, nothing saved
    html = manager.post("/outreach/campaigns/new/", campaign_data(world, do="preview")).content.decode()
    assert "Hi Ada" in html  # the segment's first contact
    html = manager.post("/outreach/campaigns/new/", campaign_data(world, do="preview", contact="nobody")).content.decode()
    assert "No contact with id, external id or e-mail address" in errors_of(html, "id_contact")
    r = manager.post("/outreach/campaigns/new/", campaign_data(world, do="save", subject="Hi {{ coupon }}"))
    assert r.status_code == 200 and "Unknown placeholder(s): {{ coupon }}" in errors_of(r.content.decode(), "id_subject")
    assert not Campaign.objects.exists()
    r = manager.post("/outreach/campaigns/new/", campaign_data(world, do="save"))
    campaign = Campaign.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/outreach/campaigns/{campaign.pk}/"
    assert campaign.status == "draft"
    # scheduled from its page, at a time given in UTC
    at = (timezone.now() + timezone.timedelta(days=3)).replace(second=0, microsecond=0)
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {"do": "schedule",
                                                                      "send_at": at.strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.send_at) == ("scheduled", at)
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {"do": "schedule", "send_at": "tomorrow"})
    assert "is not a time" in manager.get(r["Location"]).content.decode()
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {"do": "cancel", "send_at": ""})
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    # edited as a draft
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/edit/", campaign_data(world, do="save", name="January news"))
    assert r.status_code == 302 and Campaign.objects.get(pk=campaign.pk).name == "January news"


def test_a_campaign_to_nobody_is_not_scheduled_and_one_that_started_cannot_be_changed(world: dict[str, Any]) -> None:
    manager = world["manager"]
    nobody = Segment.objects.create(name="austria", spec={"country": ["AT"]})
    campaign = Campaign.objects.create(name="To nobody", purpose=world["purpose"], segment=nobody, subject="s",
                                       html="h", text="t")
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {"do": "schedule", "send_at": ""}, follow=True)
    assert "Not scheduled: The segment &#x27;austria&#x27; matches nobody" in r.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    Campaign.objects.filter(pk=campaign.pk).update(status="sending", started_at=timezone.now())
    r = manager.get(f"/outreach/campaigns/{campaign.pk}/edit/", follow=True)
    assert "cannot be changed once sending has started" in r.content.decode()
    assert "edit-campaign" not in r.content.decode()
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/edit/",
                     {**campaign_data(world, do="save"), "segment": str(nobody.pk), "name": "Changed"}, follow=True)
    assert "cannot be changed once sending has started" in r.content.decode()
    r = manager.post(f"/outreach/campaigns/{campaign.pk}/schedule/", {"do": "cancel"}, follow=True)
    assert "cannot be changed once sending has started" in r.content.decode()
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.name, stored.status) == ("To nobody", "sending")
