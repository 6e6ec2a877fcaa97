"""WeasyPrint set up once per process for printing many reports (`render.pdf`).

WeasyPrint's time for a two-page report goes to parsing, the cascade, line layout (one Pango layout per text run)
and drawing. What does not depend on the report is done once per thread and kept:

- the print stylesheet, parsed once (`weasyprint.CSS`), instead of a `<style>` parsed in every document;
- one `FontConfiguration`, so fonts are looked up and loaded once, not for every document;
- a user-agent stylesheet of the few rules the report's elements need, instead of WeasyPrint's whole HTML one
  (every element is matched against every user-agent rule that could apply to it).

Kept per thread: WeasyPrint's font configuration is not meant to be shared across threads (the API may print a
PDF in a threaded server). Importing this module needs WeasyPrint (and Pango): `render.pdf` imports it lazily.
"""

from __future__ import annotations

import threading
from typing import Any

import weasyprint
from weasyprint.text.fonts import FontConfiguration

# The report's print stylesheet: one font, fixed table layout, few rules (each costs in the cascade).
PRINT_CSS = """
@page { size: A4; margin: 15mm 14mm; @bottom-right { content: "page " counter(page) " of " counter(pages);
  font-size: 8pt; } }
body { font-family: "DejaVu Sans"; color: #1f2933; font-size: 9.5pt; line-height: 1.3; }
h1 { font-size: 15pt; margin: 0 0 4pt; } h2 { font-size: 12.5pt; margin: 12pt 0 4pt; }
h3 { font-size: 10.5pt; margin: 8pt 0 3pt; }
p { margin: 3pt 0; }
table { table-layout: fixed; width: 100%; border-collapse: collapse; margin: 3pt 0 6pt; }
th, td { border-bottom: 0.6pt solid #9aa5b1; padding: 2pt 3pt; text-align: left; vertical-align: top; }
.num { text-align: right; }
.provisional { border: 1.5pt solid #b0413e; padding: 3pt 5pt; font-weight: bold; }
.missed { color: #8a1c1c; font-weight: bold; } .met { color: #1e6b48; } .muted { color: #3e4c59; }
figure { margin: 3pt 0; page-break-inside: avoid; } figcaption { font-size: 8.5pt; }
.chart { position: relative; width: 520px; height: 170px; }
.chart svg { position: absolute; left: 0; top: 0; }
.chart span { position: absolute; font-size: 10px; line-height: 12px; width: 64px; }
.chart .y { text-align: right; } .chart .x { text-align: center; }
"""

# What WeasyPrint's HTML user-agent stylesheet gives the elements a report uses, and nothing else.
USER_AGENT_CSS = r"""
head, style, title, script, meta { display: none }
html, body, div, h1, h2, h3, p, figure, figcaption { display: block }
body { margin: 8px }
table { display: table; box-sizing: border-box; border-spacing: 2px; border-collapse: separate;
  text-indent: initial }
caption { display: table-caption }
thead { display: table-header-group; vertical-align: middle }
tbody { display: table-row-group; vertical-align: middle }
tr { display: table-row; vertical-align: inherit }
td, th { display: table-cell; padding: 1px; vertical-align: inherit }
th, h1, h2, h3, strong, b { font-weight: bold }
br::before { content: "\A"; white-space: pre-line }
svg { overflow: hidden }
h1, h2, h3 { break-after: avoid; break-inside: avoid }
h1 { bookmark-level: 1 } h2 { bookmark-level: 2 } h3 { bookmark-level: 3 }
h1, h2, h3 { bookmark-label: content(text) }
@page { margin: 75px; @bottom-right { text-align: right; vertical-align: middle } }
"""


class _Setup(threading.local):
    fonts: FontConfiguration | None = None
    stylesheets: list[weasyprint.CSS] = []
    user_agent: list[weasyprint.CSS] = []


_setup = _Setup()


def _ready() -> _Setup:
    if _setup.fonts is None:
        fonts = FontConfiguration()
        _setup.stylesheets = [weasyprint.CSS(string=PRINT_CSS, font_config=fonts)]
        _setup.user_agent = [weasyprint.CSS(string=USER_AGENT_CSS, font_config=fonts)]
        _setup.fonts = fonts
    return _setup


class _Page(weasyprint.HTML):
    """An HTML document under the lean user-agent stylesheet."""

    def _ua_stylesheets(self, forms: bool = False) -> list[weasyprint.CSS]:
        return _setup.user_agent


def render(source: str) -> Any:
    """Lay out an HTML document (no `<style>` of its own needed) under the print stylesheet: a WeasyPrint
    Document to set metadata on and `write` with."""
    setup = _ready()
    return _Page(string=source, base_url=None).render(stylesheets=setup.stylesheets, font_config=setup.fonts)
