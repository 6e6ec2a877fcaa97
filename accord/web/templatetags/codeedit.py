"""`{% code_panel obj "agreements" %}`: on the page of an object that is code, its Edit as YAML link (for roles
that may change it) and its audit trail (for roles that may read the trail)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from accord.access.audit import trail
from accord.lib.manifest import kind
from accord.web.code_editor import perm

register = template.Library()


@register.inclusion_tag("web/_code_panel.html", takes_context=True)
def code_panel(context: Any, obj: Any, section: str) -> dict[str, Any]:
    user = context["request"].user
    can_see_trail = user.has_perm("access.view_auditentry")
    return {
        "singular": kind(section).singular,
        "name": obj.name,
        "can_edit": user.has_perm(perm(section, "change")),
        "edit_url": reverse("web:code-edit", args=[section, obj.name]),
        "can_see_trail": can_see_trail,
        "trail": trail(obj) if can_see_trail else [],
    }
