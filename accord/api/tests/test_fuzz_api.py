"""Property-based fuzzing of the whole API (issue 14): Schemathesis draws requests for every operation of
/api/v1/schema/ from the schema itself and sends them to the application, in process (WSGI) on the test database.

Checks on every answer: no 5xx; the status code, content type, headers and body conform to the schema; every error
answer is in the one error shape; credentials are not ignored; and a request the schema calls valid is not refused,
except for the 400s the schema cannot promise away (see `UNSTATED`), each named here with its reason.

Derandomized (the same requests every run) and bounded: `EXAMPLES` requests per operation, well under a minute on
SQLite. Run more with ACCORD_FUZZ_EXAMPLES=50 (the figures are printed with -s).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accord.access.tokens import create

# Committed as in production (autocommit), not in one test transaction: on PostgreSQL a refused statement (a number
# out of range, answered 400) would otherwise abort the transaction that every later request shares.
pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("ACCORD_FUZZ_EXAMPLES", 3))

# Field errors that a schema-valid request may still get (400), because OpenAPI cannot state the rule:
REFERENCE = re.compile(  # a name, id or external id that refers to a row which does not exist in this database
    r"does not exist\.$|^No [\w ]+ with |^no \w+ named |^Select a valid choice\. That choice is not one of the available choices\.$"
)
UNSTATED_MESSAGES = re.compile(
    r"already exists\.$"  # a unique value taken by a stored row (the database's content, not the request's)
    r"|^Unknown placeholder\(s\)|^Template tags|^A placeholder is not closed"  # a campaign's template language
    r"|matches nobody: there is no one to send|^The segment's filter no longer holds"  # the database's contacts
    r"|^Ensure this value is (?:less|greater) than or equal to"  # a decimal's range: decimals are strings in the
)  # schema (exact), and a string's pattern cannot hold a numeric bound
UNSTATED = {  # rules stated in the field's description, whose valid values no pattern or list in the schema holds
    "timezone": "an IANA time zone: the valid names are the tz database's, not a pattern",
    "caller": "a phone number that parses (E.164 after normalisation)",
    "phones": "phone numbers that parse (E.164 after normalisation)",
    "emails": "e-mail addresses Django's EmailValidator accepts",
    "url": "an http(s) URL Django's URLValidator accepts (the schema's `uri` format allows any scheme)",
    "path_pattern": "a path pattern like /bookings/{id}",
    "condition": "a policy condition in the indicator language (parsed, not a pattern)",
    "credit_schedule": "percentages as decimal strings in (0, 100], bands in order: ranges a string cannot state",
    "params": "an action's parameters, whose names and ranges depend on its `kind` (a rule across fields)",
    "expires_at": "a time in the future: the schema cannot say when now is",
    "period": "days that exist, the first not after the last (the month or range shape is the schema's pattern)",
    "_": "a rule across fields (start before end, exactly one of two fields): `_` in the error's fields",
    "country": "an ISO 3166-1 alpha-2 code that is assigned: a list the schema does not carry, not a pattern",
    "custom_fields": "keys that are a letter then letters, digits or _: OpenAPI 3.0 has no propertyNames",
    "spec": "a segment filter: names of tiers and purposes that exist, country codes, conditions across keys",
}


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx answer is {"error": {"code", "message", "fields"}}."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, body
    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str), body
    assert isinstance(error["fields"], dict), body
    return True


def unstated(name: str, messages: list[str]) -> bool:
    """Whether a field's errors come from a rule that the schema cannot state (a missing row, `UNSTATED`)."""
    base = re.split(r"[.\[]", name, maxsplit=1)[0]
    named = base in UNSTATED or any(base.endswith("_" + key) for key in UNSTATED)  # clear_condition, notify_emails
    return named or all(REFERENCE.search(m) or UNSTATED_MESSAGES.search(m) for m in messages)


def positive_data_acceptance_but_unstated(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's positive_data_acceptance, letting through a 400 whose every field error is `unstated`."""
    if response.status_code == 400:
        fields = json.loads(response.content)["error"]["fields"]
        if fields and all(unstated(name, messages) for name, messages in fields.items()):
            return None
    return positive_data_acceptance(ctx, response, case)


@contextmanager
def wsgi_in_test_transaction() -> Iterator[None]:
    """Requests go through the WSGI handler in this thread and this test's transaction: keep the connection open
    between them, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_every_operation_holds_under_schema_generated_requests(alice: Any, settings: Any) -> None:
    from accord.wsgi import application

    # The ignored_auth check sends bad tokens on purpose; the sign-in throttle (tested in accord/access) would then
    # answer 429 to everything that follows.
    settings.ACCORD_SIGNIN_ACCOUNT_FAILURES = settings.ACCORD_SIGNIN_ADDRESS_FAILURES = 10**6
    auth = {"Authorization": f"Bearer {create(alice, 'fuzz').secret}"}
    client = Client()
    answer = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json",
                        HTTP_AUTHORIZATION=auth["Authorization"])
    assert answer.status_code == 200
    spec = json.loads(answer.content)
    # Bodies as JSON, the API's format: the schema also lists the form encodings DRF parses, which cannot carry a
    # null or a nested object, so a schema-valid body would be refused for its encoding, not its content.
    for item in spec["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]
                operation["requestBody"]["content"] = {"application/json": content["application/json"]}
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = application  # requests go to the WSGI application in process
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 100
    failures: list[str] = []
    started = time.monotonic()
    with wsgi_in_test_transaction():
        sent = fuzz_all(operations, auth, failures)
    elapsed = time.monotonic() - started
    print(f"\nfuzzed {len(operations)} operations with {sent} requests in {elapsed:.1f} s; "
          f"{sum(1 for f in failures if f.startswith('=='))} operation(s) failed")
    assert sent >= len(operations)
    assert failures == [], "\n".join(failures)


def fuzz_all(operations: list[Any], auth: dict[str, str], failures: list[str]) -> int:
    """Send EXAMPLES drawn requests to each operation and check each answer, a line in `failures` for each failure;
    answers the number of requests sent."""
    sent: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            sent.append(1)
            response = case.call(headers=auth)
            try:
                case.validate_response(response, headers=auth, excluded_checks=[positive_data_acceptance],
                                       additional_checks=[error_shape, positive_data_acceptance_but_unstated])
            except BaseException:
                failures.append(f"{case.method} {case.formatted_path} query={case.query} body={case.body!r:.300}"
                                f" -> {response.status_code} {response.text[:400]}")
                raise

        try:
            fuzz()
        except BaseException as e:  # one report for every operation, not the first only
            found = getattr(e, "exceptions", [e])
            failures.append(f"== {operation.label}: " + "; ".join(
                f"{getattr(f, 'title', type(f).__name__)}: {getattr(f, 'message', f)}" for f in found))
    return len(sent)
