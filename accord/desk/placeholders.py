"""The placeholders of canned replies (`{customer_name}` ...) and the check that refuses a broken body.

Apart from the views in `canned.py` because the model validates its body with it: `models.py` imports this
module and this module imports no model.
"""

from __future__ import annotations

import string

from django.core.exceptions import ValidationError

PLACEHOLDERS = {
    "customer_name": "the requester's name (the contact's, else the address they wrote from)",
    "ticket_ref": "the ticket's reference, e.g. ACC-000042",
    "promised_time": "when the next running SLA clock is due, in the customer's time zone",
    "agent_name": "your name",
}


def check_placeholders(body: str) -> None:
    """Refuse a body with unknown placeholders or unbalanced braces, saying which and what is known."""
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(body) if name is not None]
    except ValueError as e:
        raise ValidationError({"body": f"The braces do not match ({e}); write a literal brace twice: {{{{ or }}}}."}) from e
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{" + k + "}" for k in PLACEHOLDERS)
        raise ValidationError({"body": f"Unknown placeholder(s): {', '.join('{' + n + '}' for n in unknown)}. "
                                       f"Known: {known}."})
    if any(name == "" for name in names):
        raise ValidationError({"body": "An empty placeholder {} is not allowed; write a literal brace twice."})
