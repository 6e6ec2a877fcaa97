"""Colour contrast of the stylesheets, computed (WCAG 2.2 AA: 4.5:1 for text, 3:1 for focus rings and controls).

The colour tokens live in accord/web/static/web/accord.css's :root. Every text token must read on every background
token, and every rule of every app's stylesheet that sets both a text colour and a background must meet 4.5:1 once
its var() are resolved: a new token or badge that does not is a failing test, not a finding of the next audit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ACCORD = Path(__file__).resolve().parents[2]
TOKENS_CSS = ACCORD / "web" / "static" / "web" / "accord.css"
TEXT_TOKENS = ["ink", "muted", "accent", "ok", "warn", "bad"]
BACKGROUND_TOKENS = ["surface", "bg", "code-bg", "ok-bg", "warn-bg", "bad-bg", "neutral-bg"]
TEXT = 4.5
NON_TEXT = 3.0


def luminance(colour: str) -> float:
    """The relative luminance of a #rgb or #rrggbb colour (WCAG 2.x definition)."""
    hex_digits = colour.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", hex_digits):
        raise ValueError(f"not a #rgb or #rrggbb colour: {colour!r}")

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(hex_digits[i:i + 2], 16) / 255) for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def tokens() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", TOKENS_CSS.read_text())
    assert root, f"no :root block of colour tokens in {TOKENS_CSS}"
    return dict(re.findall(r"--([\w-]+)\s*:\s*(#[0-9a-fA-F]{3,6})\b", root.group(1)))


def resolve(value: str, known: dict[str, str]) -> str | None:
    """A declaration's colour as #hex, through var(--token); None for what is not one colour (none, inherit, ...)."""
    value = value.replace("!important", "").strip()
    if m := re.fullmatch(r"var\(--([\w-]+)\)", value):
        return known.get(m.group(1))
    if m := re.fullmatch(r"(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6})", value):
        return m.group(1)
    return None


def rules(css: str) -> list[tuple[str, dict[str, str]]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@media[^{]*\{((?:[^{}]*\{[^}]*\})*)\s*\}", r"\1", css)  # the rules inside media queries too
    found = []
    for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        decls = {k.strip(): v.strip() for k, _, v in (d.partition(":") for d in body.split(";")) if v}
        found.append((" ".join(selector.split()), decls))
    return found


def test_the_ratio_is_the_wcag_one() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#2f855a", "#e4f3ec") == pytest.approx(3.96, abs=0.01)  # the old green badge of issue 23
    with pytest.raises(ValueError):
        luminance("green")


def test_every_text_token_reads_on_every_background_token() -> None:
    known = tokens()
    assert set(TEXT_TOKENS + BACKGROUND_TOKENS + ["focus"]) <= set(known), "a colour token is missing from :root"
    low = [f"--{fg} on --{bg}: {contrast(known[fg], known[bg]):.2f}:1"
           for fg in TEXT_TOKENS for bg in BACKGROUND_TOKENS if contrast(known[fg], known[bg]) < TEXT]
    assert not low, f"text tokens under {TEXT}:1: {low}"


def test_the_focus_ring_stands_out_from_the_page_and_the_buttons() -> None:
    """The ring is drawn 2 px off the control, over a gap of page colour: it must stand out from the page (a
    coloured button's own colour never touches it)."""
    known = tokens()
    for bg in ("surface", "bg", "code-bg", "neutral-bg"):
        assert contrast(known["focus"], known[bg]) >= NON_TEXT, f"--focus on --{bg}"
    focus = dict(rules(TOKENS_CSS.read_text())).get(":focus-visible", {})
    assert focus.get("outline") == "3px solid var(--focus)" and focus.get("outline-offset") == "2px"


def test_every_rule_that_sets_text_and_background_meets_4_5() -> None:
    known = tokens()
    checked, low = 0, []
    for css in sorted(ACCORD.glob("*/static/**/*.css")):
        for selector, decls in rules(css.read_text()):
            fg = resolve(decls.get("color", ""), known)
            bg = resolve(decls.get("background", decls.get("background-color", "")), known)
            if fg and bg:
                checked += 1
                if (ratio := contrast(fg, bg)) < TEXT:
                    low.append(f"{css.relative_to(ACCORD)}: {selector} {fg} on {bg} is {ratio:.2f}:1")
            elif fg:  # text on the page: it must read on a panel and on the page's grey
                for page in ("surface", "bg"):
                    checked += 1
                    if (ratio := contrast(fg, known[page])) < TEXT:
                        low.append(f"{css.relative_to(ACCORD)}: {selector} {fg} on --{page} is {ratio:.2f}:1")
    assert checked > 30, "the stylesheets' rules were not found"
    assert not low, "rules under 4.5:1:\n" + "\n".join(low)


def test_a_rule_under_the_ratio_is_caught() -> None:
    known = tokens()
    (_selector, decls), = rules(".badge.bad-old { background: #e4f3ec; color: #2f855a; }")
    assert contrast(resolve(decls["color"], known) or "", resolve(decls["background"], known) or "") < TEXT
    assert resolve("var(--nothing)", known) is None and resolve("none", known) is None
