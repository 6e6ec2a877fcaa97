"""WCAG 2.2 AA on every page: axe-core (the `axe` fixture, top-level conftest.py) in Debian's Chromium.

Every staff page of the seeded demo, the public support form and the login page, also in their error states (a
refused web form, a refused reply), must have no critical and no serious violation. The failure message lists
each rule, its impact and the elements' selectors, so the fix can start from it.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.db import models, transaction
from django.template import loader
from django.urls import resolve
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.billing.actions import do_run
from accord.billing.forecasting import Outlook, store
from accord.billing.models import Invoice
from accord.billing.usage import account_key
from accord.catalog.models import Service
from accord.customers.models import Account, Commitment, Contact
from accord.desk.models import CannedReply, OutgoingMail, Ticket
from accord.governance.policies import save_policy
from accord.lib.charts import Level
from accord.lib.forecast import forecast, sudden_change
from accord.lib.testing import share
from accord.outreach import campaigns
from accord.outreach.models import Campaign, Purpose, Segment

# Playwright's sync API runs an event loop in the test thread; the ORM calls here are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]


def test_the_checker_reports_what_it_finds(page: Any, axe: Any) -> None:
    """The harness itself: a field without a label, low contrast and a duplicate id are found and described."""
    page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body><main><h1>Bad</h1>'
        '<input id="x"><span id="twice"></span><span id="twice"></span>'
        '<p style="color:#aaa;background:#fff">faint text</p></main></body></html>'
    )
    found = axe.violations(page)
    assert {"label", "color-contrast"} <= {v["id"] for v in found}
    text = axe.describe("bad.html", found)
    assert "[critical] label:" in text and "#x" in text and "[serious] color-contrast:" in text
    assert axe.duplicate_ids(page) == ["twice"]


def test_the_structure_check_reports_what_it_finds(page: Any, axe: Any) -> None:
    """Headings that skip a level, a table without caption or scope, a chart without its numbers: each reported;
    the same page done right: nothing."""
    bad = ('<main><h1>Bad</h1><h3>Skipped</h3><table><tr><th>Tier</th><td>4</td></tr></table>'
           '<section><svg role="img" aria-label="Latency per tier"><rect width="4" height="4"></rect></svg></section>'
           '</main>')
    page.set_content(f'<!doctype html><html lang="en"><head><title>t</title></head><body>{bad}</body></html>')
    # axe's own heading-order is "moderate": it fails a test only when asked for (the sweep asks for it).
    assert "heading-order" not in {v["id"] for v in axe.violations(page)}
    assert "heading-order" in {v["id"] for v in axe.violations(page, also=LANDMARK_AND_HEADING_RULES)}
    found = axe.structure(page)
    assert found == ['heading h3 "Skipped" after h1', "table table has no caption or name",
                     'table table: th "Tier" has no scope',
                     'chart svg "Latency per tier" has no numbers in text (name, description or a table beside it)']
    good = ('<main><h1>Good</h1><h2>Tiers</h2><table><caption>Accounts per tier</caption><tr><th scope="row">Gold'
            '</th><td>4</td></tr></table><section><svg role="img" aria-label="Latency per tier: gold 40 ms">'
            '<rect width="4" height="4"></rect></svg></section><section><svg role="img" aria-label="Volume" '
            'aria-describedby="n"></svg><p id="n">12 a day</p></section></main>')
    page.set_content(f'<!doctype html><html lang="en"><head><title>t</title></head><body>{good}</body></html>')
    assert axe.structure(page) == []
    page.set_content('<!doctype html><html lang="en"><head><title>t</title></head><body><main><h2>No h1</h2>'
                     '<h1>One</h1><h1>Two</h1></main></body></html>')
    assert axe.structure(page) == ["2 h1 headings (one wanted)"]


def test_the_focus_check_finds_a_control_whose_focus_does_not_show(page: Any, axe: Any) -> None:
    page.set_content('<!doctype html><html lang="en"><head><title>t</title><style>:focus-visible { outline: 3px solid'
                     ' #1d4ed8 } .flat:focus-visible { outline: none }</style></head><body><main><h1>Focus</h1>'
                     '<button id="ringed">Save</button><button id="flat" class="flat">Send</button>'
                     '<div aria-hidden="true"><input id="trap" tabindex="-1"></div></main></body></html>')
    assert axe.focus_hidden(page) == ['button#flat "Send"']


# Every URL pattern that answers a GET with an HTML page is checked by axe-core somewhere: the sweep below
# (`SWEPT`, which fails when it does not reach one of them), the test named in `ELSEWHERE`, the admin's and the
# browsable API's own tests. `test_every_html_page_is_checked_by_axe` walks the URL resolver and fails on a pattern
# in none of them, so a new page cannot be forgotten; `NOT_PAGES` are asked to show that they are no page.
SWEPT = {
    "login", "support-form", "portal:link", "web:dashboard", "web:accounts", "web:account", "web:agreements",
    "web:agreement", "web:services", "web:service", "web:account-create", "web:account-edit", "web:contact-create",
    "web:contact-edit", "web:commitment-edit", "web:key-issue", "web:audit", "web:calendars", "web:policies",
    "insight:dashboard", "insight:account", "desk:queue", "desk:ticket", "desk:outbox", "desk:canned",
    "desk:canned-edit", "desk:settings", "desk:new", "governance:page", "reports:index", "reports:account",
    "reports:ledger", "billing:index", "billing:invoice", "outreach:campaigns", "outreach:campaign",
    "outreach:segments", "outreach:segment-new", "outreach:segment-edit", "outreach:campaign-new",
    "outreach:campaign-edit", "privacy:contact", "chat:console", "chat:demo",
}
PORTAL_SWEEP = "accord/portal/tests/test_portal_browser.py::test_every_portal_page_has_no_axe_violation_and_fits_a_phone"
EDIT_WALK = "accord/web/tests/test_edit_browser.py::test_a_manager_creates_an_account_and_a_contact_issues_and_revokes_a_key"
CODE_PAGES = "accord/web/tests/test_code_editor_browser.py::test_every_new_page_has_no_axe_violation"
TICKET_TOOLS = "accord/desk/tests/test_ticket_browser.py::test_link_a_requester_insert_a_canned_reply_and_see_a_colleague"
ELSEWHERE = {
    "api-docs": "accord/web/tests/test_accessibility.py::test_the_api_reference_is_accessible_and_nothing_is_fetched_off_the_host",
    "api-redoc": "accord/web/tests/test_accessibility.py::test_the_api_reference_is_accessible_and_nothing_is_fetched_off_the_host",
    **dict.fromkeys(["portal:home", "portal:login", "portal:tickets", "portal:new-ticket", "portal:ticket",
                     "portal:credits", "portal:invoices", "portal:reports", "portal:team", "portal:keys"], PORTAL_SWEEP),
    **dict.fromkeys(["web:commitment-create", "web:commitment-delete", "web:override-set", "web:key-issued",
                     "web:key-revoke"], EDIT_WALK),
    **dict.fromkeys(["web:calendar", "web:policy", "web:code-new", "web:code-edit", "desk:settings-new",
                     "desk:settings-edit", "desk:settings-delete"], CODE_PAGES),
    **dict.fromkeys(["desk:merge", "desk:link-requester"], TICKET_TOOLS),
    "unsubscribe": "accord/outreach/tests/test_pages_browser.py::test_unsubscribe_and_confirm_pages",
    "confirm-consent": "accord/outreach/tests/test_pages_browser.py::test_unsubscribe_and_confirm_pages",
}
NOT_PAGES = {  # URL name: what a GET gets instead of a page
    "logout": "POST only (405)", "portal:logout": "POST only", "portal:request-link": "POST only; GET goes to sign-in",
    "portal:close-ticket": "POST only", "portal:revoke-key": "POST only", "portal:set-password": "POST only",
    "portal:attachment": "the file", "portal:invoice-file": "the CSV or PDF", "portal:report-file": "the CSV or PDF",
    "reports:closed-version": "a closed report's file as frozen (CSV, HTML or PDF, as an attachment)",
    "health-details": "JSON", "schema": "the OpenAPI schema", "favicon": "the icon",
    "desk:changes": "JSON (the queue's live region asks it)", "desk:presence": "POST only (JSON)",
    "desk:bulk": "POST only", "desk:save-filter": "POST only", "desk:delete-filter": "POST only",
    "desk:reply": "POST only (a refused reply is swept as the ticket page)", "desk:update": "POST only",
    "desk:canned-delete": "POST only", "desk:outbox-retry": "POST only",
    "desk:settings-members": "POST only; GET goes back to the group", "governance:live": "JSON",
    "governance:override": "POST only", "governance:end-override": "POST only", "reports:decide": "POST only",
    "billing:step": "POST only", "privacy:export": "the ZIP", "privacy:erase": "POST only", "chat:start": "POST only (JSON)",
    "opt-out": "POST only", "outreach:campaign-schedule": "POST only", "web:portal-invite": "POST only",
    "web:override-end": "POST only", "api/v1/^(?P<unknown>.*)$": "the API's JSON 404",
}


# axe-core's rules for landmarks, headings and table headers: "moderate" or "minor" in axe, so not among the
# impacts that fail a test, but the issue asks for them on every page; the sweep fails on them at any impact.
LANDMARK_AND_HEADING_RULES = {
    "bypass", "region", "landmark-one-main", "landmark-no-duplicate-main", "landmark-no-duplicate-banner",
    "landmark-no-duplicate-contentinfo", "landmark-unique", "landmark-banner-is-top-level",
    "landmark-main-is-top-level", "landmark-contentinfo-is-top-level", "landmark-complementary-is-top-level",
    "page-has-heading-one", "heading-order", "empty-heading", "empty-table-header", "th-has-data-cells",
    "td-headers-attr", "scope-attr-valid", "skip-link",
}


def staff_pages(base: str) -> dict[str, str]:
    account = Account.objects.filter(tier__isnull=False).order_by("pk").first()
    agreement = Agreement.objects.order_by("pk").first()
    service = Service.objects.order_by("pk").first()
    ticket = Ticket.objects.filter(account__isnull=False).order_by("pk").first()
    assert account and agreement and service and ticket, "the demo company has no account, agreement, service or ticket"
    campaign = Campaign.objects.order_by("pk").first()
    segment = Segment.objects.order_by("pk").first()
    invoice = Invoice.objects.order_by("pk").first()  # the accessibility test drafts the month's invoices first
    contact = Contact.objects.filter(account=account).order_by("pk").first()
    commitment = Commitment.objects.order_by("pk").first()
    canned = CannedReply.objects.order_by("pk").first()
    return {
        "dashboard": "/",
        "accounts": "/accounts/",
        "accounts, filtered": "/accounts/?q=zzz-nothing",
        "account": f"/accounts/{account.pk}/",
        "account insight": f"/insight/accounts/{account.pk}/",
        "agreements": "/agreements/",
        "agreement": f"/agreements/{agreement.pk}/",
        "services": "/services/",
        "service": f"/services/{service.pk}/",
        "desk queue": "/desk/",
        "ticket": f"/desk/tickets/{ticket.pk}/",
        "desk outbox": "/desk/outbox/",
        "governance": "/governance/",
        "insight": "/insight/",
        "reports": "/reports/",
        "account report": f"/reports/accounts/{account.external_id}/",
        "credit ledger": "/reports/credits/",
        "invoices": "/billing/",
        "invoice": f"/billing/{invoice.pk}/" if invoice else "/billing/0/",
        "not found": "/accounts/0/",
        # The editing pages (issue 16; their refused states are in test_edit_browser.py).
        "new account": "/accounts/new/",
        "edit account": f"/accounts/{account.pk}/edit/",
        "new contact": f"/accounts/{account.pk}/contacts/new/",
        "issue a key": f"/accounts/{account.pk}/keys/new/",
        "audit trail": "/audit/",
        # Outreach (issue 20): campaigns, one campaign's progress, segments with live counts.
        "campaigns": "/outreach/campaigns/",
        "campaign": f"/outreach/campaigns/{campaign.pk}/" if campaign else "/outreach/campaigns/0/",
        "segments": "/outreach/segments/",
        # Editing them (issue 20): the forms, an existing segment with its count, a campaign with its preview.
        "new segment": "/outreach/segments/new/",
        "edit segment": f"/outreach/segments/{segment.pk}/edit/" if segment else "/outreach/segments/0/edit/",
        "new campaign": "/outreach/campaigns/new/",
        "edit campaign": f"/outreach/campaigns/{campaign.pk}/edit/" if campaign else "/outreach/campaigns/0/edit/",
        "a contact's personal data": f"/privacy/contacts/{contact.pk}/" if contact else "/privacy/contacts/0/",
        # The edit forms with a record in them (their blank and refused states are in test_edit_browser.py).
        "edit contact": f"/accounts/{account.pk}/contacts/{contact.pk}/edit/" if contact else "/accounts/0/",
        "edit commitment": f"/accounts/{commitment.account_id}/commitments/{commitment.pk}/edit/"
        if commitment else "/accounts/0/",
        "canned replies": "/desk/canned/",
        "edit canned reply": f"/desk/canned/{canned.pk}/" if canned else "/desk/canned/0/",
        "desk settings": "/desk/settings/",
        "new ticket": "/desk/new/",
        "calendars": "/calendars/",
        "policies": "/policies/",
        # The chat: the agents' console (its WebSocket is served by the ASGI server, absent here: the page as it
        # waits for it; the live console is checked in accord/chat/tests/test_chat_browser.py) and the demo page
        # that carries the visitors' widget.
        "chat console": "/chat/console/",
        "chat demo page": "/chat/demo/",
    }


@pytest.mark.django_db(transaction=True)
def test_the_spam_trap_is_out_of_the_keyboards_reach(live_server: Any, page: Any) -> None:
    """Tab from the top of the public form to its Send button: every field is reached in order, the honeypot never
    (a keyboard user who landed there would be taken for a robot), and the screen reader is told nothing of it."""
    page.goto(f"{live_server.url}/support/")
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("[document.activeElement.id, document.activeElement.tagName.toLowerCase(), "
                                "document.activeElement.textContent.trim()]")
        reached.append(focused[0] or f"{focused[1]}:{focused[2]}")
        if focused[1] == "button" and focused[2] == "Send":
            break
    assert reached[-1] == "button:Send", reached
    fields = [r for r in reached if r.startswith("id_")]
    assert "id_website" not in reached and fields[:3] == ["id_name", "id_email", "id_subject"], reached
    trap = page.locator("#id_website")
    assert trap.count() == 1 and trap.evaluate("e => e.closest('[aria-hidden=true]') !== null && e.tabIndex === -1"
                                               " && e.autocomplete === 'off'")


@pytest.mark.django_db(transaction=True)
def test_every_page_has_no_critical_or_serious_violation(live_server: Any, page: Any, axe: Any) -> None:
    call_command("seed-demo", "--accounts", "40", stdout=StringIO())
    do_run(timezone.localtime().strftime("%Y-%m"))  # the demo's invoices of this month, drafted
    assert Invoice.objects.exists(), "the demo company's month drafted no invoice"
    save_policy("to-standby", {"condition": "pool(booking, primary).utilisation[10s] > 0.8", "action": "route",
                               "params": {"pool": "standby"}, "tiers": ["platinum"]})
    # One refused mail, so the outbox page shows its table with a row (the demo's mail has all gone out).
    assert OutgoingMail.objects.filter(pk=OutgoingMail.objects.order_by("pk").values("pk")[:1]).update(
        status="failed", last_error="SMTP 550 5.1.1 No such user (refused for good; not retried)") == 1
    # A campaign prepared for every demo contact (none has consent: all skipped), so its page has a chart.
    purpose, _ = Purpose.objects.get_or_create(name="newsletter", defaults={"title": "the monthly newsletter"})
    segment = Segment.objects.create(name="everyone", spec={})
    campaigns.prepare(Campaign.objects.create(name="December news", purpose=purpose, segment=segment,
                                              subject="News", html="<p>Hello {{ contact.name }}</p>", text="Hello"))
    CannedReply.objects.create(title="Outage acknowledged", body="Dear {customer_name}, we are on it ({ticket_ref}).")
    # A stored volume forecast for the account the sweep opens, so its page draws the forecast chart (the demo company
    # makes none: `accord forecast` runs daily in production).
    shown = Account.objects.filter(tier__isnull=False).order_by("pk").first()
    assert shown is not None
    days = [timezone.localdate() - dt.timedelta(days=84 - i) for i in range(84)]
    calls = [1000.0 + 40 * (i % 7) + 3 * i for i in range(84)]
    store([Outlook(f"account {account_key(shown.external_id, shown.pk)}", "api-calls", "calls", days, calls,
                   forecast(calls, 56), sudden_change(calls), [Level("plan included", 2500.0)])])
    base = live_server.url
    reports: list[str] = []
    checked = 0
    seen: set[str] = set()  # the URL names of the pages checked, against SWEPT

    def check(name: str) -> None:
        nonlocal checked
        if name == "account":
            assert page.locator("#forecasts svg.forecast-chart").count() == 1, "the account page drew no forecast"
        page.wait_for_load_state("load")
        found = axe.violations(page, also=LANDMARK_AND_HEADING_RULES)
        checked += 1
        seen.add(resolve(urlsplit(page.url).path).view_name)
        if found:
            reports.append(axe.describe(f"{name} ({page.url.removeprefix(base)})", found))
        if problems := axe.structure(page):
            reports.append(f"{name} ({page.url.removeprefix(base)}): " + "; ".join(problems))
        if hidden := axe.focus_hidden(page):
            reports.append(f"{name} ({page.url.removeprefix(base)}): focus does not show on {hidden[:6]}"
                           + (f" and {len(hidden) - 6} more" if len(hidden) > 6 else ""))
        # axe 4.10 no longer reports duplicate ids under WCAG 2.2 (4.1.1 is obsolete), but a label's `for` or an
        # aria-describedby pointing at the wrong one of two elements still misleads: none at all.
        if twice := axe.duplicate_ids(page):
            reports.append(f"{name} ({page.url.removeprefix(base)}): duplicate ids {twice}")

    # Logged out: the login page, the public form, and the form refused (every field's error shown).
    page.goto(f"{base}/login/")
    check("login")
    page.goto(f"{base}/support/")
    check("support form")
    page.click("#support-form button[type=submit]", no_wait_after=True)  # the browser's own checks stop it
    page.evaluate("document.getElementById('support-form').noValidate = true")
    page.click("#support-form button[type=submit]")
    page.wait_for_selector("#support-form .errors")
    check("support form, refused")
    # A portal sign-in link as a customer opens it from a mail: the page with its button, and the answer to a link
    # already used (410).
    page.goto(f"{base}/portal/login/link/{'x' * 43}/")
    check("portal sign-in link")
    page.click("#link-confirm button[type=submit]")
    page.wait_for_load_state("load")
    check("portal sign-in link, used")
    # The error pages the middleware draws when a view fails or the database is away (no URL of their own): as
    # served, at an address of this server so their stylesheet loads.
    for name, html in (("server error (500)", loader.get_template("500.html").render({})),
                       ("database away (503)", loader.get_template("503.html").render({"retry_after": 5, "full": True}))):
        page.goto(f"{base}/login/")
        page.set_content(html)
        assert page.evaluate("getComputedStyle(document.querySelector('.panel')).backgroundColor") == "rgb(255, 255, 255)", \
            f"{name}: accord.css did not load"
        check(name)

    page.goto(f"{base}/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    for name, path in staff_pages(base).items():
        page.goto(f"{base}{path}")
        check(name)

    # The ticket page with a refused reply (an empty one, the browser's checks off).
    page.goto(f"{base}{staff_pages(base)['ticket']}")
    page.evaluate("document.getElementById('reply-form').noValidate = true")
    page.click("#reply-form button[type=submit]")
    page.wait_for_selector("#reply-errors")
    check("ticket, refused reply")

    # A campaign's preview, and a segment's filter refused (the forms' other states).
    page.goto(f"{base}{staff_pages(base)['edit campaign']}")
    page.click("#preview-button")
    page.wait_for_selector("#preview")
    check("edit campaign, preview")
    page.goto(f"{base}/outreach/segments/new/")
    page.fill("#id_spec", '{"country": ["XX"]}')
    page.click("#count-button")
    page.wait_for_selector("#id_spec_errors")
    check("new segment, refused")

    assert checked == 7 + 43 + 1 + 2
    assert seen >= SWEPT, f"pages of SWEPT this sweep did not reach: {sorted(SWEPT - seen)}"
    assert not reports, "axe-core found critical or serious WCAG violations:\n" + "\n".join(reports)


@pytest.mark.single_pass
@pytest.mark.django_db(transaction=True)
def test_the_api_reference_is_accessible_and_nothing_is_fetched_off_the_host(
    live_server: Any, page: Any, axe: Any, admin_user: Any
) -> None:
    """Redoc, on our own page (drf-spectacular's has no lang and takes its fonts from Google), passes axe at
    /api/v1/redoc/ and /api/v1/docs/, and loads every asset from this host (drf-spectacular-sidecar)."""
    base = live_server.url
    asked: list[str] = []
    blocked: set[str] = set()  # refused by the page's own Content-Security-Policy: never left the browser
    page.on("request", lambda request: asked.append(request.url))
    page.on("requestfailed", lambda request: request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP")
            and blocked.add(request.url))
    page.goto(f"{base}/admin/login/?next=/api/v1/redoc/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/api/v1/redoc/")
    page.wait_for_selector("#redoc-container h1", timeout=90_000)  # Redoc renders ~130 operations
    assert page.evaluate("document.documentElement.lang") == "en"
    found = axe.violations(page)
    assert not found, axe.describe("API reference (Redoc)", found)
    # /api/v1/docs/, the address the README gives, serves the very same page (Swagger UI failed axe): the same
    # bytes, so axe's verdict on one is the verdict on both (a second render and scan of ~130 operations took a
    # minute of CI).
    redoc, docs = page.request.get(f"{base}/api/v1/redoc/"), page.request.get(f"{base}/api/v1/docs/")
    assert docs.status == 200 and docs.text() == redoc.text()
    assert len(asked) > 4
    elsewhere = [url for url in asked if not url.startswith((base, "data:", f"blob:{base}")) and url not in blocked]
    assert not elsewhere, f"fetched off the host: {elsewhere}"


ADMIN_NOT_PAGES = {  # admin URL names that answer no page: what a GET gets instead
    "admin:logout": "POST only", "admin:autocomplete": "JSON", "admin:jsi18n": "JavaScript",
    "admin:view_on_site": "a redirect to the object's own page",
}


def any_object(model: type[models.Model], given: dict[str, Any] | None = None) -> models.Model:
    """The first row of `model`, or a new one with a plain value in each field that needs one (parents made the
    same way): the admin's change, history and delete pages are checked for every model, also those the demo
    company leaves empty. `given`: values for fields whose plain value a constraint refuses."""
    first = model._default_manager.order_by("pk").first()
    if first is not None:
        return first
    values: dict[str, Any] = dict(given or {})
    now = timezone.now()
    for f in model._meta.concrete_fields:
        if f.name in values or f.has_default() or f.null or getattr(f, "auto_now", False) or getattr(
                f, "auto_now_add", False) or isinstance(f, models.AutoField):
            continue
        name = f"{model._meta.model_name}-1"
        plain: Any
        if isinstance(f, models.ForeignKey):
            plain = any_object(f.related_model)  # type: ignore[arg-type]
        elif f.choices:
            plain = f.choices[0][0]  # type: ignore[index]
        elif isinstance(f, models.EmailField):
            plain = f"{name}@example.com"
        elif isinstance(f, models.GenericIPAddressField):
            plain = "192.0.2.1"
        elif isinstance(f, (models.CharField, models.TextField)):
            plain = name[: f.max_length or None]
        elif isinstance(f, models.BooleanField):
            plain = False
        elif isinstance(f, (models.IntegerField, models.FloatField, models.DecimalField)):
            plain = 1
        elif isinstance(f, models.DateTimeField):
            plain = now
        elif isinstance(f, models.DateField):
            plain = now.date()
        elif isinstance(f, models.DurationField):
            plain = dt.timedelta(hours=1)
        elif isinstance(f, models.JSONField):
            plain = {}
        elif isinstance(f, models.BinaryField):
            plain = b"1"
        elif isinstance(f, models.UUIDField):
            plain = uuid.uuid4()
        else:
            raise TypeError(f"{model._meta.label}.{f.name}: no plain value for a {type(f).__name__}")
        values[f.name] = plain
    return model._default_manager.create(**values)


def admin_paths(refused: list[str] | None = None) -> list[str]:
    """Every page of the admin (its login page aside): the index, each app's index, the password change and its
    done page, and for every registered model its list, its add form, and one object's change form, history and
    delete confirmation (the delete page only asks), and a user's password form. Makes the objects it needs.
    `refused` gets the paths the admin refuses even a superuser (adding or deleting log rows: 403, no page)."""
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User(username="root", is_superuser=True, is_staff=True, is_active=True)

    now = timezone.now()
    given: dict[str, dict[str, Any]] = {  # the values a model's constraints ask for
        "desk.escalationrule": {"trigger": "breach", "action": "notify", "notify_email": "leads@example.com"},
        "agreements.maintenancewindow": {"declared_at": now, "start": now + dt.timedelta(days=1),
                                         "end": now + dt.timedelta(days=1, hours=1)},
    }
    paths = ["/admin/", "/admin/password_change/", "/admin/password_change/done/"]
    paths += [f"/admin/{label}/" for label in sorted({m._meta.app_label for m in admin.site._registry})]
    for model in admin.site._registry:
        meta = model._meta
        with transaction.atomic():
            obj = any_object(model, given.get(meta.label_lower))
        at = f"/admin/{meta.app_label}/{meta.model_name}/"
        model_admin = admin.site._registry[model]
        pages = {at: True, f"{at}add/": model_admin.has_add_permission(request), f"{at}{obj.pk}/change/": True,
                 f"{at}{obj.pk}/history/": True, f"{at}{obj.pk}/delete/": model_admin.has_delete_permission(request)}
        paths += [path for path, allowed in pages.items() if allowed]
        if refused is not None:
            refused += [path for path, allowed in pages.items() if not allowed]
    user = User.objects.order_by("pk").first()
    assert user is not None
    paths.append(f"/admin/auth/user/{user.pk}/password/")
    return paths


@pytest.mark.django_db(transaction=True)
def test_the_admin_has_no_critical_or_serious_violation(live_server: Any, page: Any, axe: Any) -> None:
    """Django's admin, for superusers: every page of it (admin_paths; the tabular inlines, date-time pairs and
    select2 boxes named by web/admin-a11y.js), and its login page; test_page_coverage.py checks that
    admin_paths reaches every admin URL pattern."""
    call_command("seed-demo", "--accounts", "10", stdout=StringIO())
    paths = admin_paths()
    base = live_server.url
    reports = []
    page.goto(f"{base}/admin/login/")
    if found := axe.violations(page):
        reports.append(axe.describe("/admin/login/", found))
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    assert page.title() == "Superusers' tools (staff work happens in the staff UI) | Accord administration"
    assert len(paths) > 300
    for path in share(paths):  # ~330 pages at ~1 s of axe each: the passes of a CI run split them
        answer = page.goto(f"{base}{path}")
        page.wait_for_load_state("load")
        if answer is None or answer.status != 200:
            reports.append(f"{path}: HTTP {answer.status if answer else '?'}")
        if found := axe.violations(page):
            reports.append(axe.describe(path, found))
    assert not reports, "axe-core found critical or serious WCAG violations in the admin:\n" + "\n".join(reports)


@pytest.mark.single_pass
@pytest.mark.django_db(transaction=True)
def test_the_browsable_api_has_no_critical_or_serious_violation(
    live_server: Any, page: Any, axe: Any, admin_user: Any
) -> None:
    """DRF's browsable API, on our own page (accord/api/templates/rest_framework/api.html): the root, a list with
    its POST form, a refused filter (400), one object with its PUT/PATCH form and DELETE button, and a 404."""
    account = Account.objects.create(name="Acme Travel", external_id="ACME")
    base = live_server.url
    page.goto(f"{base}/admin/login/?next=/api/v1/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/api/v1/")
    reports = []
    paths = ["/api/v1/", "/api/v1/accounts/", "/api/v1/accounts/?kind=robot", f"/api/v1/accounts/{account.pk}/",
             "/api/v1/calendars/", "/api/v1/tickets/", "/api/v1/accounts/0/"]
    for path in paths:
        page.goto(f"{base}{path}")
        assert page.evaluate("document.documentElement.lang") == "en", path
        if found := axe.violations(page):
            reports.append(axe.describe(path, found))
        if twice := axe.duplicate_ids(page):
            reports.append(f"{path}: duplicate ids {twice}")
    assert not reports, "axe-core found critical or serious WCAG violations in the browsable API:\n" + "\n".join(reports)
    # The page still works: the detail page's PATCH form changes the account (DRF's ajax-form.js sends it).
    page.goto(f"{base}/api/v1/accounts/{account.pk}/")
    assert page.locator("label[for=put-_content]").count() == 1
    page.fill("#put-_content", '{"name": "Acme Voyages"}')
    page.click("button[data-method=PATCH]")
    page.wait_for_selector("text=Acme Voyages")
    account.refresh_from_db()
    assert account.name == "Acme Voyages"
