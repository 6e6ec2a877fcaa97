"""The live chat's widget inside the portal, for the signed-in contact."""

from __future__ import annotations

import time
from typing import Any

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accord.chat.service import sign

register = template.Library()


@register.simple_tag(takes_context=True)
def chat_widget(context: dict[str, Any]) -> SafeString:
    """The widget's script tag. The portal is the host site of its own chat: a contact with an external id is
    vouched for with a signed identity (ACCORD_CHAT_SECRET), so their chat opens under their account's agreement;
    without a secret or an external id the widget asks for a name and an address, as on any site."""
    request = context.get("request")
    portal = getattr(request, "portal", None)
    src = static("chat/widget.js")
    contact = getattr(portal, "contact", None)
    if contact is None or not contact.external_id or not settings.ACCORD_CHAT_SECRET:
        return format_html('<script src="{}" async></script>', src)
    now = int(time.time())
    return format_html('<script src="{}" async data-visitor-id="{}" data-visitor-ts="{}" data-visitor-sig="{}">'
                       "</script>", src, contact.external_id, now, sign(contact.external_id, now))
