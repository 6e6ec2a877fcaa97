"""Segment filters over the account's country and the custom fields of accounts and contacts, on the database the
suite runs on (SQLite's JSON_EXTRACT and PostgreSQL's jsonb compare differently: both are run), and every bad
input refused with its path in the filter."""

from __future__ import annotations

import re
from typing import Any

import pytest

from accord.customers.models import Account, Contact
from accord.outreach import segments

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Contact]:
    berlin = Account.objects.create(name="Berlin Reisen", external_id="DE1", country="DE",
                                    custom_fields={"industry": "travel", "employees": 120, "key_account": True})
    vienna = Account.objects.create(name="Wien Tours", external_id="AT1", country="AT",
                                    custom_fields={"industry": "travel", "employees": 8.5, "key_account": False})
    paris = Account.objects.create(name="Paris Voyages", external_id="FR1", country="FR",
                                   custom_fields={"industry": "hotels", "employees": "many", "rank": "1"})
    nowhere = Account.objects.create(name="Nowhere Ltd", external_id="X1")
    out = {}
    for key, account, fields in [("ada", berlin, {"language": "de", "vip": True, "score": 10}),
                                 ("bob", berlin, {"language": "en"}),
                                 ("cy", vienna, {"language": "de", "vip": False, "score": 1}),
                                 ("dee", paris, {"language": "fr", "vip": "true", "score": "10"}),
                                 ("eve", nowhere, {}),
                                 ("fay", None, {"vip": 1})]:
        out[key] = Contact.objects.create(name=key.title(), external_id=key, account=account, custom_fields=fields)
    return out


def who(spec: dict[str, Any]) -> set[str]:
    return {c.external_id or "" for c in segments.contacts(spec)}


def test_country_matches_the_accounts_country(people: dict[str, Contact]) -> None:
    assert who({"country": ["DE", "AT"]}) == {"ada", "bob", "cy"}
    assert who({"country": "FR"}) == {"dee"}
    assert who({"country": ["US"]}) == set()  # valid, nobody there
    assert who({"country": ["DE"], "custom": [{"on": "contact", "key": "language", "equals": "en"}]}) == {"bob"}


def test_custom_equals_matches_value_and_type_on_accounts_and_contacts(people: dict[str, Contact]) -> None:
    assert who({"custom": [{"on": "account", "key": "industry", "equals": "travel"}]}) == {"ada", "bob", "cy"}
    assert who({"custom": [{"on": "contact", "key": "language", "equals": "de"}]}) == {"ada", "cy"}
    # true is not the text "true" nor the number 1; 10 is not the text "10"
    assert who({"custom": [{"on": "contact", "key": "vip", "equals": True}]}) == {"ada"}
    assert who({"custom": [{"on": "contact", "key": "vip", "equals": False}]}) == {"cy"}
    assert who({"custom": [{"on": "contact", "key": "vip", "equals": "true"}]}) == {"dee"}
    assert who({"custom": [{"on": "contact", "key": "vip", "equals": 1}]}) == {"fay"}
    assert who({"custom": [{"on": "contact", "key": "score", "equals": 10}]}) == {"ada"}
    assert who({"custom": [{"on": "contact", "key": "score", "equals": "10"}]}) == {"dee"}
    assert who({"custom": [{"on": "account", "key": "employees", "equals": 8.5}]}) == {"cy"}
    assert who({"custom": [{"on": "account", "key": "rank", "equals": 1}]}) == set()  # stored as text "1"


def test_custom_in_exists_and_numeric_bounds(people: dict[str, Contact]) -> None:
    assert who({"custom": [{"on": "contact", "key": "language", "in": ["fr", "en"]}]}) == {"bob", "dee"}
    assert who({"custom": [{"on": "contact", "key": "score", "in": [1, "10"]}]}) == {"cy", "dee"}
    assert who({"custom": [{"on": "contact", "key": "vip", "exists": True}]}) == {"ada", "cy", "dee", "fay"}
    assert who({"custom": [{"on": "contact", "key": "vip", "exists": False}]}) == {"bob", "eve"}
    # numbers only: "many" and booleans are never above or below a number on either database
    assert who({"custom": [{"on": "account", "key": "employees", "gt": 100}]}) == {"ada", "bob"}
    assert who({"custom": [{"on": "account", "key": "employees", "lt": 100}]}) == {"cy"}
    assert who({"custom": [{"on": "account", "key": "employees", "gt": 5, "lt": 10}]}) == {"cy"}
    assert who({"custom": [{"on": "account", "key": "key_account", "gt": 0}]}) == set()
    assert who({"custom": [{"on": "contact", "key": "score", "gt": 5}]}) == {"ada"}  # not the text "10"
    # several conditions all hold, on the account and on the contact together
    assert who({"custom": [{"on": "account", "key": "industry", "equals": "travel"},
                           {"on": "account", "key": "employees", "gt": 100},
                           {"on": "contact", "key": "vip", "exists": True}]}) == {"ada"}
    # a contact without an account matches no account condition, and may match contact ones
    assert "fay" not in who({"custom": [{"on": "account", "key": "industry", "exists": False}]})
    assert who({"custom": [{"on": "account", "key": "industry", "exists": False}]}) == {"eve"}


@pytest.mark.parametrize(("bad", "says"), [
    ({"country": []}, "country must be a country code or a non-empty list"),
    ({"country": {"DE": 1}}, "country must be a country code or a non-empty list"),
    ({"country": ["DE", 49]}, "country[1] must be a country code like \"DE\", not 49"),
    ({"country": ["DE", "XX"]}, "country[1]: 'XX' is not an ISO 3166-1 alpha-2 country code"),
    ({"country": ["de"]}, "country[0]: 'de' must be written in upper case: 'DE'"),
    ({"country": ["UK"]}, "country[0]: 'UK' is not an ISO 3166-1 code: the United Kingdom is 'GB'"),
    ({"custom": {"on": "account"}}, "custom must be a non-empty list of conditions"),
    ({"custom": []}, "custom must be a non-empty list of conditions"),
    ({"custom": ["industry"]}, "custom[0] must be an object"),
    ({"custom": [{"on": "account", "key": "a", "equals": 1, "like": "x"}]}, "custom[0]: unknown key(s) like"),
    ({"custom": [{"key": "a", "equals": 1}]}, "custom[0].on must be \"account\" or \"contact\""),
    ({"custom": [{"on": "ticket", "key": "a", "equals": 1}]}, "custom[0].on must be \"account\" or \"contact\""),
    ({"custom": [{"on": "account", "equals": 1}]}, "custom[0].key must be a custom field key"),
    ({"custom": [{"on": "account", "key": "a.b", "equals": 1}]}, "custom[0].key must be a custom field key"),
    ({"custom": [{"on": "account", "key": "a"}]}, "custom[0]: give one of equals, in, exists, gt, lt"),
    ({"custom": [{"on": "account", "key": "a", "equals": 1, "in": [1]}]}, "custom[0]: equals and in cannot go"),
    ({"custom": [{"on": "account", "key": "a", "equals": {"x": 1}}]}, "custom[0].equals must be text, a number"),
    ({"custom": [{"on": "account", "key": "a", "equals": None}]}, "custom[0].equals must be text, a number"),
    ({"custom": [{"on": "account", "key": "a", "in": []}]}, "custom[0].in must be a non-empty list"),
    ({"custom": [{"on": "account", "key": "a", "in": [1, [2]]}]}, "custom[0].in[1] must be text, a number"),
    ({"custom": [{"on": "account", "key": "a", "exists": "yes"}]}, "custom[0].exists must be true or false"),
    ({"custom": [{"on": "account", "key": "a", "gt": "lots"}]}, "custom[0].gt must be a number"),
    ({"custom": [{"on": "account", "key": "a", "lt": True}]}, "custom[0].lt must be a number"),
    ({"custom": [{"on": "account", "key": "a", "gt": 10, "lt": 5}]}, "custom[0]: gt 10 and lt 5 leave no number"),
    ({"custom": [{"on": "account", "key": "a", "exists": True},
                 {"on": "contact", "key": "b", "gt": 1, "exists": True}]}, "custom[1]: exists and gt cannot go"),
    ({"fields": {"a": 1}}, "the filter: unknown key(s) fields; known: tier, clv, health"),
])
def test_bad_country_and_custom_filters_are_refused_with_their_path(bad: dict[str, Any], says: str) -> None:
    with pytest.raises(segments.SpecError, match=re.escape(says)):
        segments.check(bad)
