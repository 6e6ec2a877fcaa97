"""The OpenAPI schema says what the API does: nullable where values are null, every error answer in the error
shape, unknown request fields refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def spec(api: APIClient) -> dict[str, Any]:
    r = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    return json.loads(r.content)  # type: ignore[no-any-return]


def test_fields_that_are_null_are_documented_nullable(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["Account"]["properties"]["tier"].get("nullable") is True
    assert schemas["Ticket"]["properties"]["assignee"].get("nullable") is True
    assert schemas["Ticket"]["properties"]["account"].get("nullable") is True
    assert schemas["TierChange"]["properties"]["from_tier"].get("nullable") is True
    assert not schemas["Account"]["properties"]["name"].get("nullable")  # only what can be null


def test_every_operation_documents_its_errors_in_the_error_shape(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorDetail")
    assert set(spec["components"]["schemas"]["ErrorDetail"]["required"]) == {"code", "message", "fields"}
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) > 60
    for path, method, op in operations:
        for code in ("400", "401", "403", "404", "409"):
            answer = op["responses"].get(code)
            assert answer, (method, path, code)
            if path.startswith("/api/v1/schema/"):
                continue
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error", (method, path, code, ref)


def test_request_bodies_refuse_unknown_fields(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    requests = {name: s for name, s in schemas.items() if name.endswith("Request") and "properties" in s}
    assert {"AccountRequest", "PatchedAgreementRequest", "ApiCredentialRequest"} <= set(requests)
    open_ended = [name for name, s in requests.items() if s.get("additionalProperties") is not False]
    assert open_ended == []


def test_every_create_operation_refuses_an_unknown_field(api: APIClient, spec: dict[str, Any]) -> None:
    posts = [
        path
        for path, item in spec["paths"].items()
        if "post" in item
        and "{" not in path
        and "requestBody" in item["post"]
        and not path.startswith("/api/v1/webhooks/")
    ]
    assert len(posts) > 10
    accepted = []
    for path in posts:
        r = api.post(path, {"zz_unknown": 1}, format="json")
        if r.status_code != 400 or "zz_unknown" not in r.json()["error"]["fields"]:
            accepted.append((path, r.status_code, r.content[:200]))
    assert accepted == []


def test_every_operation_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    operations = [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) > 60
    missing = [f"{method} {path}: {'summary' if not (op.get('summary') or '').strip() else 'description'}"
               for method, path, op in operations
               if not (op.get("summary") or "").strip() or not (op.get("description") or "").strip()]
    assert missing == [], "operations without a summary or a description:\n" + "\n".join(missing)
    # one summary per operation of a path: two operations that read the same say nothing about their difference
    for path, item in spec["paths"].items():
        summaries = [op["summary"] for op in item.values()]
        assert len(set(summaries)) == len(summaries), (path, summaries)
    accounts = spec["paths"]["/api/v1/accounts/"]
    assert accounts["get"]["summary"] == "List accounts" and accounts["post"]["summary"] == "Create an account"
    assert "unknown fields are refused" in accounts["post"]["description"]
