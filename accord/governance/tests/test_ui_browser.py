"""The governance page in a real headless Chromium (the `browser` and `page` fixtures are in the top-level
conftest.py): a staff member overrides a policy with a reason and sees it active and audited, and the live
charts redraw from live.json as new live rows arrive."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accord.gateway.measure import Sketch
from accord.gateway.models import GatewayAction, LiveTraffic
from accord.governance.models import AuditEvent, Override
from accord.governance.policies import save_policy

# Playwright's sync API runs an event loop in the test thread; the ORM calls here are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Any, url: str) -> None:
    page.goto(url)
    assert "/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#policies")


def test_a_staff_member_overrides_a_policy_and_sees_it_active_and_audited(live_server: Any, page: Any,
                                                                          alice: User) -> None:
    save_policy("to-standby", {"condition": "pool(booking, primary).utilisation[10s] > 0.8", "action": "route",
                               "params": {"pool": "standby"}, "tiers": ["platinum"]})
    log_in(page, f"{live_server.url}/governance/")
    assert page.url == f"{live_server.url}/governance/"
    card = page.locator("#policy-to-standby")
    assert card.get_attribute("data-status") == "idle"
    assert page.evaluate("getComputedStyle(document.querySelector('article.policy')).display") == "grid", (
        "the page's stylesheet did not load"
    )

    # The browser refuses an empty reason itself; with its checks removed, the server refuses it and keeps
    # what was typed.
    card.locator("button:has-text('Apply override')").click()
    assert card.locator("input[name=reason]").evaluate("e => e.validity.valueMissing")
    page.evaluate("document.querySelectorAll('#policy-to-standby input').forEach("
                  "i => { i.removeAttribute('required'); i.removeAttribute('max'); })")
    card.locator("input[name=reason]").fill("primary degraded")
    card.locator("input[name=minutes]").fill("99999")
    card.locator("button:has-text('Apply override')").click()
    page.wait_for_selector("#override-error")
    card = page.locator("#policy-to-standby")
    assert card.locator(".field-error").inner_text() == "Minutes: Ensure this value is less than or equal to 10080."
    assert card.locator("input[name=reason]").input_value() == "primary degraded"
    assert not Override.objects.exists() and not GatewayAction.objects.exists()

    card.locator("select[name=on]").select_option("on")
    card.locator("input[name=minutes]").fill("30")
    card.locator("input[name=reason]").fill("incident 42: primary degraded")
    card.locator("button:has-text('Apply override')").click()
    page.wait_for_selector("#messages")
    assert "to-standby forced on until" in page.locator("#messages").inner_text()
    card = page.locator("#policy-to-standby")
    assert card.get_attribute("data-status") == "active"
    assert card.locator("[data-role=status]").inner_text() == "active"
    assert "incident 42: primary degraded" in card.locator("[data-role=override]").inner_text()
    assert GatewayAction.live().filter(name="policy-to-standby").exists()

    override = page.locator("#events tr[data-kind=override]")
    assert override.count() == 1
    assert "alice" in override.inner_text() and "incident 42: primary degraded" in override.inner_text()
    assert page.locator("#events tr[data-kind=activated]").count() == 1
    lane = page.locator('#timeline g.lane[data-policy="to-standby"]')
    assert lane.locator("rect.active").count() == 1 and lane.locator("path.mark-override").count() == 1
    assert "incident 42" in lane.locator("path.mark-override title").text_content()
    assert page.locator('#action-table tr[data-action="policy-to-standby"]').count() == 1
    assert AuditEvent.objects.filter(kind="override", actor="alice").count() == 1


def test_the_live_charts_redraw_from_live_json_as_rows_arrive(live_server: Any, page: Any, alice: User) -> None:
    log_in(page, f"{live_server.url}/governance/")
    assert "No traffic" in page.locator("#latency-live").inner_text()

    def next_live() -> dict[str, Any]:
        with page.expect_response(lambda r: "/governance/live.json" in r.url, timeout=10_000) as info:
            pass
        assert info.value.status == 200
        return info.value.json()  # type: ignore[no-any-return]

    before = next_live()
    assert before["latency_p95_ms"] == {}
    sketch = Sketch()
    for _ in range(100):
        sketch.add(40.0)
    LiveTraffic.objects.create(at=timezone.now() - dt.timedelta(seconds=1), worker="w1", service="booking",
                               pool="primary", tier="gold", count=100, latency_sum_ms=4000,
                               latency_sketch=sketch.encode())
    for _ in range(3):  # a fetch may have been under way while the row went in
        after = next_live()
        if after["latency_p95_ms"]:
            break
    assert after != before and set(after["latency_p95_ms"]) == {"gold"}
    last = next(v for _t, v in reversed(after["latency_p95_ms"]["gold"]) if v is not None)
    assert last == pytest.approx(40, rel=0.01)
    page.wait_for_selector('#latency-chart g.series[data-series="gold"]')
    assert "40 ms" in page.locator('#latency-chart g.legend-item[data-series="gold"]').text_content()
    assert page.locator("#live-updated").inner_text().startswith("live · ")


def test_the_live_region_announces_a_policy_switching_not_the_clock_and_the_charts_pause(
        live_server: Any, page: Any, alice: User) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from accord.governance import engine

    policy, _ = save_policy("to-standby", {"condition": "pool(booking, primary).utilisation[10s] > 0.8",
                                           "action": "route", "params": {"pool": "standby"}, "tiers": ["platinum"]})
    log_in(page, f"{live_server.url}/governance/")
    stamp = page.locator("#live-updated")
    assert stamp.get_attribute("aria-live") is None and stamp.get_attribute("role") is None
    with page.expect_response(lambda r: "/governance/live.json" in r.url, timeout=10_000):
        pass
    assert page.locator("#live-announce").text_content() == ""  # a refresh with nothing new says nothing

    engine.set_override(policy, True, "primary degraded", timezone.now() + dt.timedelta(minutes=10), "alice")
    page.wait_for_function("document.getElementById('live-announce').textContent.includes('to-standby')",
                           timeout=10_000)
    assert page.locator("#live-announce").text_content() == "Policy to-standby is now active."
    assert page.locator("#policy-to-standby").get_attribute("data-status") == "active"

    pause = page.locator("#live-pause")
    pause.focus()
    page.keyboard.press("Enter")
    assert pause.get_attribute("aria-pressed") == "true" and pause.inner_text() == "Resume live charts"
    with pytest.raises(PlaywrightTimeout), page.expect_response(lambda r: "/governance/live.json" in r.url,
                                                               timeout=5_000):
        pass
    with page.expect_response(lambda r: "/governance/live.json" in r.url, timeout=10_000):
        page.keyboard.press("Enter")
    assert pause.get_attribute("aria-pressed") == "false"
