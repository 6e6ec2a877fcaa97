"""The YAML editor of what stays code (agreements, calendars, services, policies): check, diff, apply, audit.

Every test drives the pages through Django's test client, on the demo manifest applied to the real database.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.agreements.models import Agreement, BusinessCalendar
from accord.catalog.models import Service
from accord.governance.models import Policy
from accord.lib.manifest import apply_manifest, export_object
from accord.web import code_editor

DEMO = Path(__file__).resolve().parents[2] / "agreements" / "fixtures" / "demo.yaml"
EDIT = "/code/agreements/gold-sla/edit/"


@pytest.fixture
def manifest(db: None) -> None:
    apply_manifest(DEMO.read_text(encoding="utf-8"))


def _user(name: str, role: str) -> Client:
    user = User.objects.create_user(name, f"{name}@accord.example", "pw", is_staff=True)
    grant(user, role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def manager(manifest: None) -> Client:
    return _user("mia", "manager")


@pytest.fixture
def agent(manifest: None) -> Client:
    return _user("aaron", "agent")


def _gold() -> str:
    text = export_object("agreements", "gold-sla")
    assert text is not None
    return text


def _check(client: Client, text: str, url: str = EDIT) -> Any:
    return client.post(url, {"text": text, "action": "check"})


def _errors(response: Any) -> list[str]:
    content = response.content.decode()
    block = re.search(r'<ul class="check-errors" id="check-errors">(.*?)</ul>', content, re.S)
    assert block, "no error list on the page"
    return [html.unescape(re.sub(r"<[^>]+>", "", li)) for li in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def _digest(response: Any) -> str:
    found = re.search(r'name="checked" value="([0-9a-f]*)"', response.content.decode())
    assert found
    return found.group(1)


def test_the_editor_starts_from_the_export_and_the_detail_page_links_to_it(manager: Client) -> None:
    ag = Agreement.objects.get(name="gold-sla")
    page = manager.get(f"/agreements/{ag.pk}/").content.decode()
    assert f'href="{EDIT}"' in page and 'id="audit-trail"' in page
    response = manager.get(EDIT)
    assert response.status_code == 200
    assert response.context["text"] == _gold()  # the very text `accord export` writes for it
    assert response.context["text"].startswith("agreements:\n- name: gold-sla\n")
    assert 'id="apply-button"' not in response.content.decode()  # nothing checked yet


def test_a_syntax_error_is_shown_with_its_line_and_column_and_the_text_kept(manager: Client) -> None:
    text = _gold().replace("  monthly_fee:", "  monthly_fee: [", 1)
    response = _check(manager, text)
    errors = _errors(response)
    line = text.splitlines().index(next(x for x in text.splitlines() if "monthly_fee: [" in x)) + 1
    assert len(errors) == 1 and re.match(r"line \d+, column \d+: ", errors[0]), errors
    assert int(errors[0].split()[1].rstrip(",")) >= line
    assert response.context["text"] == text  # nothing the user typed is lost
    assert 'id="apply-button"' not in response.content.decode()


def test_a_schema_error_is_shown_with_its_path_in_the_document(manager: Client) -> None:
    text = _gold()
    objective = re.search(r"(  - name: \S+\n    kind: \w+\n    target: )(\S+)", text)
    assert objective
    errors = _errors(_check(manager, text.replace(objective.group(0), objective.group(1) + "-5", 1)))
    assert any(re.match(r"agreements\[0\]\.objectives\[\d+\]\.target: ", e) for e in errors), errors
    errors = _errors(_check(manager, text.replace("currency: EUR", "currency: euros", 1)))
    assert errors == ["agreements[0].currency: 'euros' is not a currency code like EUR"]
    assert Agreement.objects.get(name="gold-sla").currency == "EUR"


def test_a_valid_text_shows_the_dry_run_diff_and_apply_writes_it_with_an_audit_entry(manager: Client) -> None:
    before = Agreement.objects.get(name="gold-sla").monthly_fee
    text = _gold().replace(f"monthly_fee: {before.normalize():f}", "monthly_fee: 4321", 1)
    assert text != _gold()
    response = _check(manager, text)
    page = response.content.decode()
    assert response.context["checked"].ok, response.context["checked"].errors
    assert "1 would be updated" in response.context["checked"].summary
    assert f"<del>-  monthly_fee: {before.normalize():f}</del>" in page and "<ins>+  monthly_fee: 4321</ins>" in page
    assert Agreement.objects.get(name="gold-sla").monthly_fee == before  # a check writes nothing
    response = manager.post(EDIT, {"text": text.replace("\n", "\r\n"), "action": "apply",
                                   "checked": _digest(response)})
    ag = Agreement.objects.get(name="gold-sla")
    assert response.status_code == 302 and response["Location"] == f"/agreements/{ag.pk}/"
    assert ag.monthly_fee == Decimal(4321)
    entry = AuditEntry.objects.get(object_type="agreements.agreement", object_id=str(ag.pk))
    assert entry.action == "apply" and entry.user is not None and entry.user.username == "mia"
    assert entry.source == "ui" and "+  monthly_fee: 4321" in entry.summary
    page = manager.get(response["Location"]).content.decode()
    assert "Applied: agreement gold-sla: updated" in page and "+  monthly_fee: 4321" in page


def test_apply_is_refused_when_the_text_differs_from_the_checked_one(manager: Client) -> None:
    fee = Agreement.objects.get(name="gold-sla").monthly_fee
    checked_text = _gold().replace("monthly_fee: ", "monthly_fee: 1", 1)
    digest = _digest(_check(manager, checked_text))
    assert digest
    other = _gold().replace("monthly_fee: ", "monthly_fee: 2", 1)
    response = manager.post(EDIT, {"text": other, "action": "apply", "checked": digest})
    assert response.status_code == 200 and 'id="apply-refused"' in response.content.decode()
    assert response.context["text"] == other
    response = manager.post(EDIT, {"text": other, "action": "apply", "checked": ""})  # never checked
    assert 'id="apply-refused"' in response.content.decode()
    assert Agreement.objects.get(name="gold-sla").monthly_fee == fee
    assert not AuditEntry.objects.exists()


def test_too_large_a_text_is_refused(manager: Client) -> None:
    text = _gold() + "# " + "x" * code_editor.MAX_BYTES + "\n"
    errors = _errors(_check(manager, text))
    assert len(errors) == 1 and "the editor takes at most 262,144" in errors[0]


def test_anchors_aliases_and_a_billion_laughs_are_refused_before_anything_expands(manager: Client) -> None:
    bomb = "agreements:\n- &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"- &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    errors = _errors(_check(manager, bomb))
    assert errors == ["line 2, column 3: anchors and aliases (&name, *name) are not accepted in the editor; "
                      "write the values out (the command line takes them)"]
    many = "agreements:\n- name: gold-sla\n  services: [" + ", ".join(["a"] * (code_editor.MAX_NODES + 1)) + "]\n"
    assert "more than 20,000 values" in _errors(_check(manager, many))[0]


def test_renaming_is_explained_not_done(manager: Client) -> None:
    text = _gold().replace("name: gold-sla", "name: gold-sla-2026", 1)
    errors = _errors(_check(manager, text))
    assert any("agreements[0].name: this page edits agreement 'gold-sla', the text names 'gold-sla-2026'" in e
               and "create a second agreement" in e for e in errors), errors
    response = manager.post(EDIT, {"text": text, "action": "apply",
                                   "checked": code_editor.digest("agreements", "gold-sla", text)})
    assert response.status_code == 200
    assert not Agreement.objects.filter(name="gold-sla-2026").exists()
    # other sections and more objects are refused too
    errors = _errors(_check(manager, _gold() + "tiers:\n- {name: bronze, rank: 9}\n"))
    assert any(e.startswith("tiers: this page edits one agreement") for e in errors), errors


def test_new_creates_an_object_and_refuses_an_existing_name(manager: Client) -> None:
    url = "/code/calendars/new/"
    assert manager.get(url).status_code == 200
    text = ("calendars:\n- name: apac-support\n  timezone: Asia/Singapore\n"
            "  hours: {mon: ['09:00-18:00'], tue: ['09:00-18:00']}\n")
    response = _check(manager, text, url)
    assert response.context["checked"].ok and "1 would be created" in response.context["checked"].summary
    response = manager.post(url, {"text": text, "action": "apply", "checked": _digest(response)})
    cal = BusinessCalendar.objects.get(name="apac-support")
    assert response["Location"] == f"/calendars/{cal.pk}/"
    assert AuditEntry.objects.filter(object_type="agreements.businesscalendar", object_id=str(cal.pk)).exists()
    errors = _errors(_check(manager, text.replace("apac-support", "emea-support"), url))
    assert any("calendar 'emea-support' exists already" in e for e in errors), errors


def test_services_and_policies_have_their_editor_too(manager: Client) -> None:
    svc = Service.objects.get(name="booking")
    assert 'href="/code/services/booking/edit/"' in manager.get(f"/services/{svc.pk}/").content.decode()
    pol = Policy.objects.order_by("name").first()
    assert pol is not None
    page = manager.get(f"/policies/{pol.pk}/").content.decode()
    assert f'href="/code/policies/{pol.name}/edit/"' in page
    text = export_object("policies", pol.name)
    assert text is not None
    response = _check(manager, text.replace("priority: ", "priority: 1", 1), f"/code/policies/{pol.name}/edit/")
    assert response.context["checked"].ok, response.context["checked"].errors
    assert manager.get("/code/tiers/gold/edit/").status_code == 404  # only what the editor covers
    assert manager.get("/code/agreements/no-such/edit/").status_code == 404


def test_an_agent_cannot_edit_and_sees_no_edit_link(agent: Client) -> None:
    ag = Agreement.objects.get(name="gold-sla")
    page = agent.get(f"/agreements/{ag.pk}/")
    assert page.status_code == 200 and 'id="edit-yaml"' not in page.content.decode()
    assert agent.get(EDIT).status_code == 403
    text = _gold().replace("monthly_fee: ", "monthly_fee: 9", 1)
    response = agent.post(EDIT, {"text": text, "action": "apply",
                                 "checked": code_editor.digest("agreements", "gold-sla", text)})
    assert response.status_code == 403
    assert agent.post("/code/agreements/new/", {"text": text, "action": "check"}).status_code == 403
    assert Agreement.objects.get(name="gold-sla").monthly_fee == ag.monthly_fee
    assert not AuditEntry.objects.exists()


def test_the_command_line_writes_the_audit_trail_too(manifest: None, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("USER", "ops-robot")
    monkeypatch.setenv("LOGNAME", "ops-robot")
    path = tmp_path / "gold.yaml"
    path.write_text(_gold().replace("monthly_fee: ", "monthly_fee: 7", 1), encoding="utf-8")
    call_command("apply", "-f", str(path), "--dry-run", stdout=StringIO())
    assert not AuditEntry.objects.exists()  # a dry run changes nothing, so records nothing
    call_command("apply", "-f", str(path), stdout=StringIO())
    ag = Agreement.objects.get(name="gold-sla")
    entry = AuditEntry.objects.get()
    assert (entry.source, entry.action, entry.user, entry.object_id) == ("cli", "apply", None, str(ag.pk))
    assert entry.summary.startswith("agreement gold-sla: updated (monthly_fee: ")
    assert f"accord apply -f {path}" in entry.summary and "(system user ops-robot)" in entry.summary
    call_command("apply", "-f", str(path), stdout=StringIO())  # unchanged: no second entry
    assert AuditEntry.objects.count() == 1
