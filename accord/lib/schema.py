"""The OpenAPI schema as the API behaves: every operation's error answers in the one error shape, request
bodies that refuse unknown fields (`additionalProperties: false`), and read-only relations that may be null
marked nullable."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="invalid, malformed, not_authenticated, permission_denied, not_found, "
        "conflict, throttled, …"
    )
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # schema only: the error's "fields" member
        child=serializers.ListField(child=serializers.CharField()),
        help_text='{"field.path": ["message"]}; "_" for the whole object',
    )


class ErrorSerializer(serializers.Serializer):
    """Every API error: {"error": {"code", "message", "fields"}} (accord.lib.api.exception_handler)."""

    error = ErrorDetailSerializer()


ERRORS = {
    "400": "Invalid input: a field, an unknown field, a filter or a malformed body (`fields` says which)",
    "401": "No credentials, or an invalid, expired or revoked token",
    "403": "Authenticated, but the role does not allow this",
    "404": "No such object (or URL)",
    "409": "Conflicts with stored data: in use, or a unique value taken",
    "429": "Too many failed sign-ins or tokens; see Retry-After",
}
WRITE_ERRORS = {
    "413": "The request body is too large",
    "415": "The request body's media type is not JSON (or a form)",
}


class AutoSchema(BaseAutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        errors = dict(ERRORS)
        if self.method in ("POST", "PUT", "PATCH"):
            errors.update(WRITE_ERRORS)
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction
                )
        return responses

    def _map_serializer(
        self, serializer: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = (
                False  # unknown fields are refused (StrictSerializer, refuse_unknown)
            )
        return schema

    def _get_serializer_field_meta(self, field: Any, direction: Any) -> dict[str, Any]:
        meta: dict[str, Any] = super()._get_serializer_field_meta(field, direction)
        if direction == "response" and field.read_only and not meta.get("nullable") and _nullable(field):
            meta["nullable"] = True
        return meta


def _nullable(field: Any) -> bool:
    """A read-only field whose source is a nullable model field (or a relation across one)."""
    parent = getattr(field, "parent", None)
    model = getattr(getattr(parent, "Meta", None), "model", None)
    source = getattr(field, "source", None)
    if model is None or not source or source == "*":
        return False
    for part in source.split("."):
        try:
            model_field = model._meta.get_field(part)
        except Exception:
            return False
        if getattr(model_field, "null", False):
            return True
        model = getattr(model_field, "related_model", None)
        if model is None:
            return False
    return False
