"""What every manifest kind is built from: the strict base spec, shared field types, the canonical-form helpers,
and pydantic's errors said the way a person editing YAML needs to read them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

SHOWN = 60  # characters of a value quoted in an error; a huge value must not make a huge message


def show(value: object) -> str:
    """A value as an error message quotes it: text in quotes, anything long cut short."""
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= SHOWN - 2 else f"'{value[:SHOWN - 5]}...'"
    text = str(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


_NAME = r"^[A-Za-z0-9_-]+$"
Name = Annotated[str, StringConstraints(pattern=_NAME, max_length=80)]
TierName = Annotated[str, StringConstraints(pattern=_NAME, max_length=40)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(max_length=200)]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def _iso_date(value: object) -> object:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    if value is None:
        raise ValueError("must be a date like 2026-12-24")
    raise ValueError(f"{show(value)} is not a date like 2026-12-24")


def _seconds(value: object) -> object:
    """30, '30s', '5m', '1h' or '2d' as whole seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{show(value)} is not a duration like 30s, 5m or 1h")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _DURATION.match(value.strip())):
        return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    raise ValueError(f"{show(value)} is not a duration like 30s, 5m or 1h")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
Seconds = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=7 * 86400)]


class Spec(BaseModel):
    """Base of the manifest's parts: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# -- canonical form: what apply compares and export writes ------------------------------------------------


def num(value: Decimal | int | float | None) -> Decimal | None:
    """Decimals without trailing zeros, so 99.9500 stored equals 99.95 written."""
    if value is None:
        return None
    d = (value if isinstance(value, Decimal) else Decimal(value)).normalize()
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


def drop_empty(d: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """The keys worth writing: empty and false values go, except those in `keep`."""
    kept = set(keep)
    return {k: v for k, v in d.items() if k in kept or v not in (None, "", [], {}, False)}


def dates(values: Iterable[dt.date | str]) -> list[Any]:
    """Distinct dates in order; a stored value that is not a date stays visible rather than dropped."""
    out: set[Any] = set()
    for v in values:
        try:
            out.add(v if isinstance(v, dt.date) else dt.date.fromisoformat(v))
        except ValueError:
            out.add(v)
    return sorted(out, key=str)


# -- pydantic's errors in the words of a person editing YAML --------------------------------------------------


def path(loc: Iterable[Any]) -> str:
    """pydantic's location as the file reads it: agreements[0].objectives[2].target."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or (isinstance(part, str) and part.startswith("function-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def message(error: Any) -> str:
    """The message for one pydantic error (kinds may say more first: `Kind.message`)."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind == "string_pattern_mismatch":
        return f"{show(value)} is not a name (letters, digits, '-' and '_', no spaces)"
    if kind == "string_type":
        if isinstance(value, bool):
            return "YAML read this as true/false (yes, no, on, off are booleans): put the text in quotes, e.g. 'NO'"
        if value is None:
            return "must not be empty"
        if isinstance(value, int | float | Decimal | dt.date):
            return f"must be text: put {show(value)} in quotes"
        return "must be text"
    messages = {
        "string_too_long": f"is longer than {ctx.get('max_length')} characters",
        "string_too_short": "must not be empty",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "decimal_type": "must be a number",
        "decimal_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "decimal_max_places": f"has more than {ctx.get('decimal_places')} decimal places",
        "decimal_max_digits": f"has more than {ctx.get('max_digits')} digits",
        "decimal_whole_digits": f"is too large (at most {ctx.get('whole_digits')} digits before the decimal point)",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be more than {ctx.get('gt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "list_type": "must be a list (write [] for none)" if value is None else "must be a list",
        "model_type": "must not be empty" if value is None else "must be a mapping of keys to values",
        "dict_type": "must not be empty" if value is None else "must be a mapping of keys to values",
    }
    if kind in messages:
        return messages[kind]
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    msg = str(error.get("msg") or kind).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]
