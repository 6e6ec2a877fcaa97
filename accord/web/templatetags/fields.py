"""`{% field form.x %}`: one form field with its label, hint and errors, tied together for assistive technology.

Every page renders its form fields through this tag (or the `web/_field.html` include it fills), so no field
ships without a label: the label's `for` names the field, the hint and the error are its `aria-describedby`,
and a field with an error says `aria-invalid="true"`. Ids follow the form's `auto_id`, so two forms on one
page with their own `auto_id` (the ticket page's reply and update forms) never share one.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.forms import BoundField

register = template.Library()


@register.inclusion_tag("web/_field.html")
def field(bound: BoundField, css_class: str = "", hidden_label: bool = False, errors_id: str = "",
          key: str = "") -> dict[str, Any]:
    """The context of web/_field.html for one bound field; `hidden_label` keeps the label for screen readers only,
    `errors_id` names the field's error message when a page's tests or links know it by another id, `key` is the
    page's single-key shortcut to the field (data-key for the page's script, aria-keyshortcuts for AT)."""
    base = bound.auto_id or bound.html_name
    hint_id = f"{base}_hint" if bound.help_text else ""
    errors_id = (errors_id or f"{base}_errors") if bound.errors else ""
    attrs: dict[str, Any] = {}
    described = " ".join(filter(None, [hint_id, errors_id]))
    if described:
        attrs["aria-describedby"] = described
    if bound.errors:
        attrs["aria-invalid"] = "true"
    if key:
        attrs["aria-keyshortcuts"] = key
    return {
        "field": bound, "widget": bound.as_widget(attrs=attrs), "hint_id": hint_id, "errors_id": errors_id,
        "css_class": css_class, "hidden_label": hidden_label, "key": key,
        "checkbox": bound.widget_type == "checkbox",
    }
