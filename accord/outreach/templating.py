"""The placeholders of campaign templates: checked when a campaign is saved, rendered once per message.

Apart from `campaigns.py` because the model validates its templates with it: `models.py` imports this module and
this module imports no model.
"""

from __future__ import annotations

import html
import re

PLACEHOLDERS = {
    "contact.name": "the contact's full name",
    "contact.first_name": "the first word of the contact's name",
    "contact.title": "the contact's job title",
    "account.name": "the contact's account",
    "campaign.name": "the campaign's name",
    "purpose.title": "what the contact agreed to receive",
    "unsubscribe_url": "the one-click unsubscribe page for this contact and purpose",
}
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


class TemplateError(ValueError):
    """A template that cannot be rendered; the message names the placeholder."""


def check_template(text: str) -> list[str]:
    """The placeholders a template uses, or TemplateError naming an unknown one."""
    if "{%" in text:
        raise TemplateError("Template tags ({% ... %}) are not supported; use placeholders like {{ contact.name }}.")
    names = _PLACEHOLDER.findall(text)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise TemplateError(f"Unknown placeholder(s): {', '.join('{{ ' + n + ' }}' for n in unknown)}. "
                            f"Known: {', '.join('{{ ' + k + ' }}' for k in PLACEHOLDERS)}.")
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("A placeholder is not closed: write {{ name }}.")
    return names


class Template:
    """A checked template split once into text and placeholders, so each message is one join."""

    def __init__(self, text: str, *, escape: bool) -> None:
        check_template(text)
        self.parts = _PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
        self.escape = escape

    def render(self, values: dict[str, str]) -> str:
        out = []
        for i, part in enumerate(self.parts):
            if i % 2:
                value = values.get(part, "")
                out.append(html.escape(value) if self.escape else value)
            else:
                out.append(part)
        return "".join(out)
