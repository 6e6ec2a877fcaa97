"""The API of segments and campaigns: managers change them, agents read them; live counts and samples; campaigns
change only before sending starts (409 after); preview, schedule and cancel; accounts and contacts carry their
country and custom fields."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from accord.access import roles, tokens
from accord.customers.models import Account, Contact, ContactPoint, Tier
from accord.outreach.models import Campaign, CampaignSend, Consent, Purpose, Segment

pytestmark = pytest.mark.django_db


def client_for(role: str) -> APIClient:
    user = User.objects.create_user(f"u-{role}", password="pw-long-enough-1", is_staff=True)
    roles.grant(user, role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.create(user).secret}")
    return client


@pytest.fixture
def world() -> dict[str, Any]:
    gold = Tier.objects.create(name="gold", rank=1)
    de = Account.objects.create(name="Berlin Reisen", external_id="DE1", country="DE", tier=gold,
                                custom_fields={"industry": "travel"})
    fr = Account.objects.create(name="Paris Voyages", external_id="FR1", country="FR")
    news = Purpose.objects.create(name="newsletter", title="the newsletter")
    people = {}
    for key, account in [("ada", de), ("bob", de), ("cy", fr)]:
        c = Contact.objects.create(name=f"{key.title()} Person", external_id=key, account=account)
        ContactPoint.objects.create(contact=c, kind="email", value=f"{key}@example.com", primary=True)
        Consent.objects.create(contact=c, purpose=news, status="confirmed", source="import",
                               address=f"{key}@example.com", proof="test")
        people[key] = c
    return {"people": people, "news": news, "manager": client_for("manager"), "agent": client_for("agent")}


def error(r: Any) -> dict[str, Any]:
    return r.json()["error"]  # type: ignore[no-any-return]


def test_segments_crud_with_a_live_count_and_a_sample(world: dict[str, Any]) -> None:
    manager, agent = world["manager"], world["agent"]
    spec = {"country": ["DE"], "custom": [{"on": "account", "key": "industry", "equals": "travel"}]}
    r = manager.post("/api/v1/segments/", {"name": "german travel", "spec": spec}, format="json")
    assert r.status_code == 201, r.content
    pk = r.json()["id"]
    assert agent.get(f"/api/v1/segments/{pk}/count/").json() == {"count": 2}
    sample = agent.get(f"/api/v1/segments/{pk}/contacts/?limit=1").json()
    assert sample["count"] == 2 and sample["contacts"] == [
        {"id": world["people"]["ada"].pk, "external_id": "ada", "name": "Ada Person", "account": "Berlin Reisen",
         "email": "ada@example.com"}]
    assert error(agent.get(f"/api/v1/segments/{pk}/contacts/?limit=0"))["fields"] == {
        "limit": ["A whole number from 1 to 100."]}
    # counted live: a new contact in Berlin is in the next count
    Contact.objects.create(name="Dee", account=Account.objects.get(external_id="DE1"))
    assert agent.get(f"/api/v1/segments/{pk}/count/").json() == {"count": 3}
    # a filter counted before it is saved; reading is enough for that
    assert agent.post("/api/v1/segments/count/", {"spec": {"country": "FR"}}, format="json").json() == {"count": 1}
    r = manager.patch(f"/api/v1/segments/{pk}/", {"spec": {"country": ["AT"]}}, format="json")
    assert r.status_code == 200 and Segment.objects.get(pk=pk).spec == {"country": ["AT"]}
    assert manager.delete(f"/api/v1/segments/{pk}/").status_code == 204


def test_bad_segment_filters_are_400_with_their_path_and_agents_cannot_change_segments(world: dict[str, Any]) -> None:
    manager, agent = world["manager"], world["agent"]
    r = manager.post("/api/v1/segments/", {"name": "bad", "spec": {"country": ["DE", "XX"]}}, format="json")
    assert r.status_code == 400
    assert error(r)["fields"]["spec"] == ["country[1]: 'XX' is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR, "
                                          "GB, US)"]
    r = agent.post("/api/v1/segments/count/", {"spec": {"custom": [{"on": "x", "key": "a", "exists": True}]}},
                   format="json")
    assert r.status_code == 400 and "custom[0].on must be" in error(r)["fields"]["spec"][0]
    assert manager.post("/api/v1/segments/count/", {"spec": {}, "zz": 1}, format="json").status_code == 400
    assert agent.post("/api/v1/segments/", {"name": "mine", "spec": {}}, format="json").status_code == 403
    seg = Segment.objects.create(name="all", spec={})
    assert agent.patch(f"/api/v1/segments/{seg.pk}/", {"name": "x"}, format="json").status_code == 403
    assert agent.delete(f"/api/v1/segments/{seg.pk}/").status_code == 403
    assert not Segment.objects.filter(name__in=["bad", "mine", "x"]).exists()


def _campaign(manager: APIClient, **extra: Any) -> dict[str, Any]:
    Segment.objects.get_or_create(name="germany", defaults={"spec": {"country": ["DE"]}})
    body = {"name": "December news", "purpose": "newsletter", "segment": "germany",
            "subject": "News for {{ account.name }}", "html": "<p>Hi {{ contact.first_name }}</p>",
            "text": "Hi {{ contact.first_name }}, {{ unsubscribe_url }}", "rate": 50, **extra}
    r = manager.post("/api/v1/campaigns/", body, format="json")
    assert r.status_code == 201, r.content
    return r.json()  # type: ignore[no-any-return]


def test_campaign_create_preview_schedule_cancel_and_edit(world: dict[str, Any]) -> None:
    manager, agent = world["manager"], world["agent"]
    bad = manager.post("/api/v1/campaigns/", {"name": "x", "purpose": "newsletter", "segment": "nope", "subject": "s",
                                              "html": "{{ coupon }}", "text": "t"}, format="json")
    assert bad.status_code == 400 and set(error(bad)["fields"]) == {"segment"}
    c = _campaign(manager)
    assert c["status"] == "draft" and c["segment"] == "germany" and not any(c["totals"].values())
    bad = manager.post("/api/v1/campaigns/", {"name": "y", "purpose": "newsletter", "segment": "germany", "subject": "s",
                                              "html": "h", "text": "t", "from_email": "not-an-email"}, format="json")
    assert bad.status_code == 400 and "is not one e-mail address" in error(bad)["fields"]["from_email"][0]
    assert not Campaign.objects.filter(name="y").exists()
    bad = manager.patch(f"/api/v1/campaigns/{c['id']}/", {"html": "{{ coupon }}"}, format="json")
    assert bad.status_code == 400 and "{{ coupon }}" in error(bad)["fields"]["html"][0]
    # preview for one contact, by e-mail address, and for the segment's first contact
    p = agent.get(f"/api/v1/campaigns/{c['id']}/preview/?contact=bob@example.com").json()
    assert p["to"] == "Bob Person <bob@example.com>" and p["subject"] == "News for Berlin Reisen" and "Hi Bob" in p["text"]
    assert "<p>Hi Bob</p>" in p["html"]
    assert agent.get(f"/api/v1/campaigns/{c['id']}/preview/").json()["contact"] == world["people"]["ada"].pk
    assert agent.get(f"/api/v1/campaigns/{c['id']}/preview/?contact=nobody").status_code == 404
    # agents read campaigns, managers schedule them
    assert agent.post(f"/api/v1/campaigns/{c['id']}/schedule/", {}, format="json").status_code == 403
    at = (timezone.now() + timezone.timedelta(days=2)).replace(microsecond=0)
    r = manager.post(f"/api/v1/campaigns/{c['id']}/schedule/", {"send_at": at.isoformat()}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    assert Campaign.objects.get(pk=c["id"]).send_at == at
    r = manager.patch(f"/api/v1/campaigns/{c['id']}/", {"subject": "Hello {{ contact.name }}"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "scheduled"  # a scheduled campaign may still change
    r = manager.post(f"/api/v1/campaigns/{c['id']}/cancel/", {}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "draft"


def test_a_campaign_to_nobody_is_not_scheduled(world: dict[str, Any]) -> None:
    manager = world["manager"]
    Segment.objects.create(name="austria", spec={"country": ["AT"]})
    c = _campaign(manager, segment="austria")
    r = manager.post(f"/api/v1/campaigns/{c['id']}/schedule/", {}, format="json")
    assert r.status_code == 400
    assert error(r)["fields"]["segment"] == ["The segment 'austria' matches nobody: there is no one to send "
                                             "'December news' to."]
    assert Campaign.objects.get(pk=c["id"]).status == "draft"


def test_once_sending_started_a_campaign_cannot_be_changed_scheduled_cancelled_or_deleted(
        world: dict[str, Any]) -> None:
    manager = world["manager"]
    c = _campaign(manager)
    Campaign.objects.filter(pk=c["id"]).update(status="sending", started_at=timezone.now())
    CampaignSend.objects.create(campaign_id=c["id"], contact=world["people"]["ada"], address="ada@example.com")
    for method, url, body in [("patch", f"/api/v1/campaigns/{c['id']}/", {"subject": "changed"}),
                              ("put", f"/api/v1/campaigns/{c['id']}/", {**c, "subject": "changed"}),
                              ("delete", f"/api/v1/campaigns/{c['id']}/", None),
                              ("post", f"/api/v1/campaigns/{c['id']}/schedule/", {}),
                              ("post", f"/api/v1/campaigns/{c['id']}/cancel/", {})]:
        if method == "put":
            for key in ("id", "status", "totals", "created_at", "started_at", "finished_at"):
                body.pop(key)  # type: ignore[union-attr]
        r = getattr(manager, method)(url, body, format="json")
        assert r.status_code == 409, (method, url, r.content)
        assert "cannot be" in error(r)["message"] and "once sending has started" in error(r)["message"]
    stored = Campaign.objects.get(pk=c["id"])
    assert (stored.subject, stored.status) == ("News for {{ account.name }}", "sending")
    totals = manager.get(f"/api/v1/campaigns/{c['id']}/").json()["totals"]
    assert totals["queued"] == 1 and sum(totals.values()) == 1


def test_accounts_and_contacts_carry_country_and_custom_fields_and_refuse_bad_ones(world: dict[str, Any]) -> None:
    manager = world["manager"]
    r = manager.post("/api/v1/accounts/", {"name": "Wien", "external_id": "AT1", "country": "AT",
                                           "custom_fields": {"industry": "travel", "seats": 12, "vip": True}},
                     format="json")
    assert r.status_code == 201, r.content
    assert (r.json()["country"], r.json()["custom_fields"]) == ("AT", {"industry": "travel", "seats": 12, "vip": True})
    for body, field, says in [({"country": "at"}, "country", "must be written in upper case: 'AT'"),
                              ({"country": "XX"}, "country", "is not an ISO 3166-1 alpha-2 country code"),
                              ({"custom_fields": {"address": {"city": "Wien"}}}, "custom_fields",
                               "Custom field 'address': nested objects are not allowed"),
                              ({"custom_fields": {"tags": ["a"]}}, "custom_fields",
                               "Custom field 'tags': nested lists are not allowed"),
                              ({"custom_fields": {"9lives": 1}}, "custom_fields", "Custom field key '9lives'"),
                              ({"custom_fields": {"a": None}}, "custom_fields", "null is not a value"),
                              ({"custom_fields": ["a"]}, "custom_fields", "must be a JSON object")]:
        r = manager.patch(f"/api/v1/accounts/{Account.objects.get(external_id='AT1').pk}/", body, format="json")
        assert r.status_code == 400, (body, r.content)
        assert says in " ".join(error(r)["fields"][field]), (body, r.content)
    assert Account.objects.get(external_id="AT1").country == "AT"
    ada = world["people"]["ada"]
    r = manager.patch(f"/api/v1/contacts/{ada.pk}/", {"custom_fields": {"language": "de"}}, format="json")
    assert r.status_code == 200 and r.json()["custom_fields"] == {"language": "de"}
    r = manager.patch(f"/api/v1/contacts/{ada.pk}/", {"custom_fields": {"x": {"y": 1}}}, format="json")
    assert r.status_code == 400 and "Custom field 'x'" in error(r)["fields"]["custom_fields"][0]
    assert Contact.objects.get(pk=ada.pk).custom_fields == {"language": "de"}
