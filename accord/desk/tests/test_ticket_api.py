"""The agents' actions in the API (/api/v1/tickets/{id}/...): each action, its bad inputs in the one error
shape, the permissions, and the OpenAPI schema's documentation of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.access.tokens import create
from accord.desk.models import SlaClock, SupportGroup, Ticket

from .conftest import Desk
from .test_agent_ui import open_ticket

pytestmark = pytest.mark.django_db


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create(user, 'tests').secret}")
    return client


@pytest.fixture
def agent_api(desk: Desk) -> APIClient:
    return client_for(desk.agent)


def post(client: APIClient, ticket: Ticket | int, action: str, body: Any) -> Any:
    pk = ticket if isinstance(ticket, int) else ticket.pk
    return client.post(f"/api/v1/tickets/{pk}/{action}/", body, format="json")


def fields_of(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "invalid"
    return dict(body["error"]["fields"])


def test_reply_and_note_settle_the_clocks_as_the_ticket_page_does(desk: Desk, agent_api: APIClient) -> None:
    t = open_ticket("Help", timezone.now())
    note = post(agent_api, t, "note", {"body": "looking"})
    assert note.status_code == 201 and note.json()["kind"] == "note"
    assert SlaClock.objects.get(ticket=t, kind="first_response").status == "running"
    reply = post(agent_api, t, "reply", {"body": "Rebooked.", "status": "pending"})
    assert reply.status_code == 201 and reply.json()["author"] == "agent"
    t.refresh_from_db()
    assert t.status == "pending"
    assert SlaClock.objects.get(ticket=t, kind="first_response").status == "met"
    assert SlaClock.objects.get(ticket=t, kind="resolution").status == "paused"
    assert "body" in fields_of(post(agent_api, t, "reply", {"body": ""}))
    assert fields_of(post(agent_api, t, "reply", {"body": "x", "cc": "me"})) == {"cc": ["Unknown field."]}
    assert "status" in fields_of(post(agent_api, t, "note", {"body": "x", "status": "later"}))
    assert t.messages.count() == 3


def test_status_and_priority(desk: Desk, agent_api: APIClient) -> None:
    t = open_ticket("Help", timezone.now())
    r = post(agent_api, t, "priority", {"priority": "urgent"})
    assert r.status_code == 200 and r.json()["priority"] == "urgent"
    assert SlaClock.objects.get(ticket=t, kind="resolution").target_minutes == 240
    assert "priority" in fields_of(post(agent_api, t, "priority", {"priority": "asap"}))
    assert "status" in fields_of(post(agent_api, t, "status", {"status": "later"}))
    assert post(agent_api, t, "status", {"status": "closed"}).json()["status"] == "closed"
    refused = fields_of(post(agent_api, t, "status", {"status": "open"}))
    assert "closed ticket cannot change" in refused["status"][0]
    assert post(agent_api, 999999, "status", {"status": "open"}).status_code == 404


def test_assignee_to_a_user_or_a_group(desk: Desk, agent_api: APIClient) -> None:
    t = open_ticket("Help", timezone.now())
    group = SupportGroup.objects.create(name="tier2")
    r = post(agent_api, t, "assignee", {"user": "agent", "group": "tier2"})
    assert r.status_code == 200 and r.json()["assignee"] == "agent"
    t.refresh_from_db()
    assert (t.assignee, t.group) == (desk.agent, group)
    assert fields_of(post(agent_api, t, "assignee", {"user": "ghost"})) == {"user": ["No user 'ghost'."]}
    assert fields_of(post(agent_api, t, "assignee", {"group": "nope"})) == {"group": ["No support group 'nope'."]}
    User.objects.create_user("visitor", is_staff=False)
    assert "not an active agent" in fields_of(post(agent_api, t, "assignee", {"user": "visitor"}))["user"][0]
    assert post(agent_api, t, "assignee", {"user": None, "group": None}).json()["assignee"] is None
    assert AuditEntry.objects.filter(action="assign", source="api").count() == 2


def test_tags_add_and_remove(desk: Desk, agent_api: APIClient) -> None:
    t = open_ticket("Help", timezone.now())
    assert post(agent_api, t, "tags", {"add": ["refund", "VIP"]}).json() == {"tags": ["refund", "vip"]}
    assert post(agent_api, t, "tags", {"remove": ["refund"], "add": ["triage"]}).json() == {"tags": ["triage", "vip"]}
    assert "tags" in fields_of(post(agent_api, t, "tags", {"add": ["two words"]}))
    assert "add" in fields_of(post(agent_api, t, "tags", {"add": "refund"}))


def test_merge(desk: Desk, agent_api: APIClient) -> None:
    now = timezone.now()
    target = open_ticket("Original", now - dt.timedelta(minutes=2))
    source = open_ticket("Duplicate", now)
    assert "cannot be merged into itself" in fields_of(post(agent_api, source, "merge", {"into": source.pk}))["into"][0]
    assert "no such ticket" in fields_of(post(agent_api, source, "merge", {"into": "ACC-999999"}))["into"][0]
    stranger = open_ticket("Stranger", now, sender="who@nowhere.example")
    assert "confirm_other_account" in fields_of(post(agent_api, source, "merge", {"into": stranger.reference}))
    r = post(agent_api, source, "merge", {"into": target.reference})
    assert r.status_code == 200 and r.json()["id"] == target.pk
    assert Ticket.objects.get(pk=source.pk).status == "closed"
    assert target.messages.filter(kind="inbound").count() == 2
    assert "closed" in fields_of(post(agent_api, stranger, "merge", {"into": source.pk}))["into"][0]
    assert AuditEntry.objects.get(action="merge").source == "api"


def test_link_requester(desk: Desk, agent_api: APIClient) -> None:
    t = open_ticket("Who", timezone.now() - dt.timedelta(minutes=10), sender="who@nowhere.example")
    assert fields_of(post(agent_api, t, "link-requester", {"contact": 999999})) == {"contact": ["No contact 999999."]}
    assert set(fields_of(post(agent_api, t, "link-requester", {}))) == {"name", "account"}
    assert post(agent_api, t, "link-requester", {"name": "X", "account": "GLOBE"}).status_code == 403  # an agent
    r = post(agent_api, t, "link-requester", {"contact": desk.contact.pk})
    assert r.status_code == 200
    body = r.json()
    assert body["account"] == "GLOBE" and {c["kind"] for c in body["clocks"]} == {"first_response", "resolution"}
    assert all(c["started_at"] == t.created_at.isoformat().replace("+00:00", "Z") for c in body["clocks"])
    assert "already belongs to an account" in fields_of(post(agent_api, t, "link-requester",
                                                             {"contact": desk.contact.pk}))["contact"][0]


def test_a_manager_creates_the_contact_when_linking(desk: Desk) -> None:
    manager = User.objects.create_user("meg", is_staff=True)
    grant(manager, "manager")
    t = open_ticket("Who", timezone.now(), sender="who@nowhere.example")
    api = client_for(manager)
    assert fields_of(post(api, t, "link-requester", {"name": "Who", "account": "NOPE"})) == \
        {"account": ["No account 'NOPE'."]}
    r = post(api, t, "link-requester", {"name": "Who Ever", "email": "who@nowhere.example", "account": "GLOBE"})
    assert r.status_code == 200 and r.json()["account"] == "GLOBE"


def test_a_user_without_a_desk_role_gets_403(desk: Desk) -> None:
    t = open_ticket("Help", timezone.now())
    finance = User.objects.create_user("fin", is_staff=True)
    grant(finance, "finance")
    nobody = User.objects.create_user("nobody", is_staff=True)
    for user in (finance, nobody):
        api = client_for(user)
        for action, body in (("reply", {"body": "x"}), ("note", {"body": "x"}), ("status", {"status": "open"}),
                             ("merge", {"into": "1"}), ("tags", {"add": ["x"]}), ("assignee", {"user": None}),
                             ("priority", {"priority": "low"}), ("link-requester", {"contact": 1})):
            r = post(api, t, action, body)
            assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", (user, action)
    assert t.messages.count() == 1 and Ticket.objects.get(pk=t.pk).status == "new"


def test_every_action_is_documented_in_the_schema(desk: Desk, agent_api: APIClient) -> None:
    schema = yaml.safe_load(agent_api.get("/api/v1/schema/").content)
    for action in ("reply", "note", "status", "priority", "assignee", "tags", "merge", "link-requester"):
        op = schema["paths"][f"/api/v1/tickets/{{id}}/{action}/"]["post"]
        assert op["summary"] and len(op["description"]) > 40, action
        assert op["requestBody"]["content"]["application/json"]["examples"], action
        assert "400" in op["responses"] and "403" in op["responses"], action
        assert op["responses"]["400"]["content"]["application/json"]["examples"], action
