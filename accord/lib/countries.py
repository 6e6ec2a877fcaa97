"""ISO 3166-1 alpha-2 country codes (pycountry's copy of the standard), for validating a country field."""

from __future__ import annotations

import pycountry

CODES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)


def name(code: str) -> str:
    """The country's common name ('GB' -> 'United Kingdom'), or the code when it is none."""
    found = pycountry.countries.get(alpha_2=code) if code in CODES else None
    return str(getattr(found, "common_name", None) or getattr(found, "name", code)) if found else code


def problem(code: str) -> str | None:
    """Why `code` is not a country code (None when it is one). Upper case only: 'de' is refused, 'DE' is not."""
    if code in CODES:
        return None
    if code.upper() in CODES:
        return f"'{code}' must be written in upper case: '{code.upper()}'"
    if code.upper() == "UK":
        return "'UK' is not an ISO 3166-1 code: the United Kingdom is 'GB'"
    return f"'{code}' is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR, GB, US)"
