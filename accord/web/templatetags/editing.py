"""`{% account_history account as entries %}`: the audit entries about an account and the records it holds."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag
def account_history(account: Any, limit: int = 50) -> Any:
    from accord.web.edit_views import account_trail

    return account_trail(account, limit)
