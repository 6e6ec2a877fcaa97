"""Shared test fixtures: a few named personas instead of factories."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accord.lib.testing import shard

CLOCK_KEY = pytest.StashKey[object]()
CLOCKSHIFT = Path(__file__).resolve().parent / "accord" / "lib" / "tests" / "clockshift"


def pytest_configure(config: pytest.Config) -> None:
    """ACCORD_TEST_CLOCK_SHIFT=200d runs the suite, and every process it starts, on a clock moved that far.

    CI runs the suite once so: a test that mixes a fixed instant with the real clock fails there the day it
    is written, instead of on `main` weeks later.
    """
    shift = os.environ.get("ACCORD_TEST_CLOCK_SHIFT")
    if not shift:
        return
    from accord.lib.tests.clockshift.shift import start

    moved = start(shift)
    paths = [str(CLOCKSHIFT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    config.stash[CLOCK_KEY] = moved


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `single_pass` checks what neither the engine nor the clock can change: of the passes that
    run at once, the first alone runs it, and the others save their CPU for what can differ."""
    if shard()[0] == 1:
        return
    skip = pytest.mark.skip(reason="single_pass: pass 1 of this run checks it (engine and clock change nothing)")
    for item in items:
        if item.get_closest_marker("single_pass"):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    moved = config.stash.get(CLOCK_KEY, None)
    return f"clock moved by ACCORD_TEST_CLOCK_SHIFT={os.environ['ACCORD_TEST_CLOCK_SHIFT']}: now is {moved}" if moved else None


@pytest.fixture
def alice(db: None) -> User:
    """Alice is a staff account manager with full rights."""
    return User.objects.create_user("alice", "alice@example.com", "alice-password", is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db: None) -> User:
    """Bob has a login but no staff rights."""
    return User.objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def api(alice: User) -> APIClient:
    """An API client authenticated with Alice's token (a hashed, expiring staff token: accord/access)."""
    from accord.access.tokens import create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create(alice, 'tests').secret}")
    return client


# Browser fixtures: Debian's Chromium driven by Playwright; skipped without it unless CI requires it.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium; CI sets ACCORD_REQUIRE_BROWSER=1 so a missing browser fails instead of skipping.

    Per module, not per session: Playwright's sync API keeps an event loop running on the main thread while
    it is open, and later tests that run asyncio themselves must not find one there.
    """
    if not CHROMIUM.exists():
        if os.environ.get("ACCORD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and ACCORD_REQUIRE_BROWSER=1 (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    # Playwright's sync API runs an event loop in this thread; Django must still allow ORM use in tests.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


# Accessibility: axe-core (Deque's checker, pinned in accord/web/tests/axe/package-lock.json) injected into the
# page. `python3 dev.py test` installs it with npm into var/node; nothing downloads while the tests run.
AXE_JS = Path(os.environ.get("ACCORD_AXE_JS") or Path(__file__).resolve().parent / "var" / "node" / "node_modules"
              / "axe-core" / "axe.min.js")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
AXE_FAILING = tuple(os.environ.get("ACCORD_AXE_IMPACTS", "critical,serious").split(","))


STRUCTURE_JS = r"""() => {
  const problems = [], shown = e => !e.closest('[aria-hidden="true"], [hidden]');
  const where = e => e.id ? '#' + e.id : e.tagName.toLowerCase() + (e.className && typeof e.className === 'string'
    ? '.' + e.className.trim().split(/\s+/).join('.') : '');
  const named = e => (e.getAttribute('aria-label') || '').trim() || (e.getAttribute('aria-labelledby') || '')
    .split(/\s+/).filter(Boolean).map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
  const heads = [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].filter(shown);
  const ones = heads.filter(h => h.tagName === 'H1').length;
  if (ones !== 1) problems.push(`${ones} h1 headings (one wanted)`);
  let last = 0;
  for (const h of heads) {
    const level = +h.tagName[1];
    if (last && level > last + 1) problems.push(`heading h${level} "${h.textContent.trim().slice(0, 40)}" after h${last}`);
    last = level;
  }
  for (const t of document.querySelectorAll('table')) {
    if (!shown(t) || ['presentation', 'none'].includes(t.getAttribute('role'))) continue;
    const caption = t.querySelector(':scope > caption');
    if (!(caption && caption.textContent.trim()) && !named(t)) problems.push(`table ${where(t)} has no caption or name`);
    const ths = t.querySelectorAll('th');
    if (!ths.length) problems.push(`table ${where(t)} has no header cell`);
    for (const th of ths) {
      if (!th.hasAttribute('scope') && !th.closest('thead')) {
        problems.push(`table ${where(t)}: th "${th.textContent.trim().slice(0, 30)}" has no scope`);
        break;
      }
    }
  }
  for (const c of document.querySelectorAll('[role="img"]')) {
    if (!shown(c) || !(c.tagName.toLowerCase() === 'svg' || c.querySelector('svg'))) continue;
    const name = named(c) || ((c.querySelector(':scope > title') || {}).textContent || '');
    const described = (c.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean)
      .map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
    const panel = c.closest('figure, section, .panel, article');
    const beside = panel ? [...panel.querySelectorAll('table')].map(t => t.textContent).join(' ') : '';
    if (!/\d|no data/i.test(name) && !/\d/.test(described) && !/\d/.test(beside))
      problems.push(`chart ${where(c)} "${name.slice(0, 60)}" has no numbers in text (name, description or a table beside it)`);
  }
  return problems;
}"""


FOCUS_JS = r"""() => {
  // Each control that the keyboard reaches, focused in turn: the focus must show (an outline of 2 px or more, or a
  // box-shadow ring). The page had a key pressed first, so programmatic focus matches :focus-visible as Tab would.
  const wrong = [], controls = document.querySelectorAll(
    'a[href], button, input:not([type="hidden"]), select, textarea, summary, [tabindex]:not([tabindex="-1"])');
  for (const e of controls) {
    if (e.disabled || e.tabIndex < 0 || e.closest('[inert], [aria-hidden="true"]') || !e.getClientRects().length
        || getComputedStyle(e).visibility === 'hidden') continue;
    e.focus();
    if (document.activeElement !== e) continue;
    const s = getComputedStyle(e), ring = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    if (!ring && (s.boxShadow === 'none' || !s.boxShadow)) {
      wrong.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} "${(e.innerText || e.value || e.name || '')
        .trim().slice(0, 30)}"`);
    }
  }
  if (document.activeElement) document.activeElement.blur();
  return wrong;
}"""


class Axe:
    """Runs axe-core on a Playwright page; `violations` keeps the impacts that fail a test (critical, serious)."""

    def __init__(self, script: Path) -> None:
        self.script = script

    def run(self, page: Any, context: str = "document") -> list[dict[str, Any]]:
        """Every violation axe finds on the page as it is now (all impacts), in axe's own JSON shape."""
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.add_script_tag(path=str(self.script))
        result = page.evaluate(
            "([context, tags]) => axe.run(context === 'document' ? document : document.querySelector(context),"
            " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
            [context, AXE_TAGS],
        )
        return list(result["violations"])

    def violations(self, page: Any, context: str = "document", also: Collection[str] = ()) -> list[dict[str, Any]]:
        """The violations of the impacts that fail (critical, serious), and of the rules in `also` at any impact."""
        return [v for v in self.run(page, context) if v.get("impact") in AXE_FAILING or v["id"] in also]

    @staticmethod
    def duplicate_ids(page: Any) -> list[str]:
        """The ids that more than one element of the page carries (a label or a description may hit the wrong one)."""
        return list(page.evaluate(
            "() => { const seen = new Map(); document.querySelectorAll('[id]').forEach(e => seen.set(e.id,"
            " (seen.get(e.id) || 0) + 1)); return [...seen].filter(([, n]) => n > 1).map(([id]) => id).sort(); }"
        ))

    @staticmethod
    def structure(page: Any) -> list[str]:
        """What axe-core does not ask of a page but docs/accessibility.md does: one `h1` and headings that never
        skip a level; every data table named (a caption, aria-label or aria-labelledby) with header cells, each
        `th` with a `scope` (or inside `thead`); every chart (`role="img"`) with its numbers in text: a digit in
        its name (or "no data"), or a description (`aria-describedby`) or a table with digits in the same panel."""
        return list(page.evaluate(STRUCTURE_JS))

    @staticmethod
    def focus_hidden(page: Any) -> list[str]:
        """The controls whose focus does not show (each focused in turn, after a key press: :focus-visible)."""
        page.keyboard.press("Shift")
        return list(page.evaluate(FOCUS_JS))

    def page_problems(self, page: Any) -> list[str]:
        """`structure` and `focus_hidden` together, as lines of a failure message."""
        hidden = self.focus_hidden(page)
        return self.structure(page) + ([f"focus does not show on {hidden[:6]}"] if hidden else [])

    @staticmethod
    def describe(url: str, violations: list[dict[str, Any]], nodes: int = 6) -> str:
        """A readable list: rule id, impact, what is wrong, and the first few elements' selectors."""
        lines = [f"{url}: {len(violations)} violation(s)"]
        for v in violations:
            lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({len(v['nodes'])} element(s)) {v['helpUrl']}")
            for node in v["nodes"][:nodes]:
                summary = " ".join(str(node.get("failureSummary") or "").split())[:240]
                lines.append(f"      {' > '.join(str(t) for t in node['target'])}  -- {summary}")
            if len(v["nodes"]) > nodes:
                lines.append(f"      ... and {len(v['nodes']) - nodes} more")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def axe() -> Axe:
    """axe-core for a browser test; skipped when it is not installed, unless ACCORD_REQUIRE_AXE=1 (CI)."""
    if not AXE_JS.exists():
        if os.environ.get("ACCORD_REQUIRE_AXE") == "1":
            pytest.fail(f"{AXE_JS} is missing and ACCORD_REQUIRE_AXE=1 (python3 dev.py test installs it with npm)")
        pytest.skip(f"axe-core is not installed at {AXE_JS} (python3 dev.py test installs it when npm is present)")
    return Axe(AXE_JS)
