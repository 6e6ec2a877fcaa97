"""The OpenAPI schema as the API behaves: every operation's error answers in the one error shape, request
bodies that refuse unknown fields (`additionalProperties: false`), and read-only relations that may be null
marked nullable."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.plumbing import get_doc
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

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and isinstance(field, serializers.RelatedField) and not field.allow_null:
            # drf-spectacular copies the model column's null=True, but this field refuses null, and "" (read as null)
            schema.pop("nullable", None)
            if schema.get("type") == "string":
                schema.setdefault("minLength", 1)
        for validator in getattr(field, "validators", []):
            if pattern := getattr(validator, "openapi_pattern", None):  # a function validator's rule as a pattern
                schema["pattern"] = pattern
        if isinstance(field, serializers.DecimalField) and schema.get("pattern") and field.max_whole_digits:
            # drf-spectacular's pattern also matches "" and "-", which DRF refuses: at least one digit, and no sign
            # where the field has a minimum of zero or more.
            minimum = field.min_value
            sign = "" if minimum is not None and minimum >= 0 else "-?"
            whole, places = field.max_whole_digits, field.decimal_places
            schema["pattern"] = (rf"^{sign}(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"
                                 if places else rf"^{sign}\d{{1,{whole}}}$")
        if direction == "request" and not any(isinstance(v, RegexValidator) for v in getattr(field, "validators", [])):
            _no_nul(schema)  # (a RegexValidator's pattern, added by drf-spectacular after this, says more)
        return schema

    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super()._get_parameters()
        for parameter in parameters:
            if parameter.get("in") == "query":
                _no_nul(parameter.get("schema", {}))
        return parameters

    def get_summary(self) -> str | None:
        """Every operation has a summary: the one given with extend_schema, or one made from the action and the
        model ("List accounts", "Create an account"), or the handler's docstring's first line."""
        summary = super().get_summary()
        if summary:
            return summary
        action = getattr(self.view, "action", None)
        one, many = self._noun()
        if action in _ACTIONS:
            return _ACTIONS[action].format(one=_article(one), many=many)
        own = super().get_description()  # the handler's docstring, else the view's
        if own and own != get_doc(self.view.__class__):
            return _first_line(own)
        if action:
            return f"{action.replace('_', ' ').capitalize()} {_article(one)}"
        return _first_line(self.view.__class__.__doc__) or f"{self.method.capitalize()} {many}"

    def _noun(self) -> tuple[str, str]:
        """The resource's name, singular and plural: the model's, else the path's last word."""
        model = _model(self.view)
        if model is not None:
            return str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
        words = [w for w in self.path.split("{")[0].strip("/").split("/") if w]
        many = words[-1].replace("-", " ") if words else "resources"
        one = many[:-3] + "y" if many.endswith("ies") else many[:-1] if many.endswith("s") else many
        return one, many

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's signature, not DRF's
        """Every operation has a description: the action's own docstring, else the resource's (its viewset's),
        followed by what the operation does with it."""
        description = super().get_description() or ""
        action = getattr(self.view, "action", None)
        if action in _DOES:
            sentence = _DOES[action].format(one=self._noun()[0])
            description = f"{description}\n\n{sentence}" if description else sentence
        return description.strip()

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


_ACTIONS = {
    "list": "List {many}",
    "retrieve": "Get {one}",
    "create": "Create {one}",
    "update": "Replace {one}",
    "partial_update": "Update {one}",
    "destroy": "Delete {one}",
}
_DOES = {
    "list": "Answers one page of them (`page`, `page_size` up to 500), filtered by the query parameters and sorted "
            "by `ordering`.",
    "retrieve": "Answers one {one} by its id; 404 if there is none.",
    "create": "Validates the body (unknown fields are refused) and stores a new {one}; answers it with 201.",
    "update": "Replaces every writable field of the {one}; fields left out take their defaults or are refused when "
              "required.",
    "partial_update": "Changes only the fields given; the others keep their values.",
    "destroy": "Deletes the {one}; 409 if other records still use it.",
}


NO_NUL = "^[^\\u0000]*$"


def _no_nul(schema: dict[str, Any]) -> None:
    """A free string refuses NUL characters (PostgreSQL cannot store them: refuse_unknown, Django's forms); a
    string with a pattern, a format or a list of values says more already."""
    if schema.get("type") == "string" and not ({"pattern", "format", "enum"} & set(schema)):
        schema["pattern"] = NO_NUL
    elif schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _no_nul(schema["items"])


def _model(view: Any) -> Any:
    queryset = getattr(view, "queryset", None)
    return getattr(queryset, "model", None)


def _article(name: str) -> str:
    return f"{'an' if re.match(r'[aeiou]', name, re.I) else 'a'} {name}"


def _first_line(doc: str | None) -> str:
    """A docstring's first sentence, as a summary."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    first = re.split(r"(?<=[.:;])\s", text, maxsplit=1)[0]
    return first.rstrip(".:;")
