"""Shared pieces of the REST API: the error shape, strict serializers, pagination."""

from __future__ import annotations

import copy
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .db import in_use

log = logging.getLogger(__name__)

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    503: "unavailable",
}


class Conflict(exceptions.APIException):
    """409: the request is well-formed but conflicts with stored data (in use, taken)."""

    status_code = 409
    default_code = "conflict"


class Unavailable(exceptions.APIException):
    """503: the database cannot be reached or written now (a restart, a failover, a full disk); retry later."""

    status_code = 503
    default_code = "unavailable"
    default_detail = "The database cannot be reached right now; nothing was changed. Try again in a few seconds."


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"a.b[0].c": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors" and not prefix:
                name = "_"
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "_"] = [str(item) for item in detail]
        else:
            for i, item in enumerate(detail):
                if item:
                    for k, v in _flatten(item, f"{prefix}[{i}]").items():
                        out.setdefault(k, []).extend(v)
    else:
        out[prefix or "_"] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as {"error": {"code", "message", "fields"}}."""
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException("Request body is too large.")
        exc.status_code = 413
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"_": exc.messages}
        )
    elif isinstance(exc, DataError):  # a value the database cannot hold: the client's input, not our fault
        exc = exceptions.ValidationError({"_": ["A value is out of range or cannot be stored."]})
    elif isinstance(exc, ProtectedError | RestrictedError):  # before IntegrityError, their base class
        exc = Conflict(f"This object cannot be deleted: it is {in_use(exc)}.")
    elif isinstance(exc, IntegrityError):
        exc = Conflict("This change conflicts with existing data (a unique value is taken, or a row it refers to "
                       "is gone).")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, OperationalError | InterfaceError):  # down, restarting, locked, full: not a bug
        log.warning("database unavailable: %s", exc)
        exc = Unavailable()
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug, not the client's fault: logged with its traceback, answered in the API's shape (never HTML).
        view = context.get("view")
        log.error("unhandled error in %s", type(view).__name__ if view else "the API", exc_info=exc)
        return Response({"error": {"code": "server_error", "message": "The server failed to handle this request; "
                                   "it has been logged.", "fields": {}}}, status=500)
    status = response.status_code
    code = _CODES.get(status, "error")
    fields: dict[str, list[str]] = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "The request has invalid fields." if fields.keys() - {"_"} else "; ".join(fields.get("_", []))
        message = message or "The request is invalid."
    elif isinstance(exc, exceptions.ParseError):
        code = "malformed"
        message = str(exc.detail)
    else:
        detail = getattr(exc, "detail", None)
        message = str(detail) if detail is not None else str(exc)
        if isinstance(exc, exceptions.APIException) and getattr(exc, "default_code", None) and status not in _CODES:
            code = str(exc.default_code)
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    if status == 503:
        response["Retry-After"] = "10"
    return response


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def refuse_unknown(serializer: serializers.Serializer[Any], data: Any) -> None:
    """Refuse what StrictSerializer refuses (non-objects, unknown fields, NUL characters), for a plain
    Serializer of a request body."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"_": [f"Expected a JSON object, got {type(data).__name__}."]})
    writable = {name for name, f in serializer.fields.items() if not f.read_only}
    unknown = sorted(set(data) - writable)
    if unknown:
        raise serializers.ValidationError(
            {name: ["Unknown field." if name not in serializer.fields else "This field is read-only."]
             for name in unknown}
        )
    nul = sorted(name for name, value in data.items() if _has_nul(value))
    if nul:  # PostgreSQL cannot store them, even in a lookup
        raise serializers.ValidationError({name: ["NUL characters are not allowed."] for name in nul})


def field_errors(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(field, message) pairs as the API's `fields` ({"field": [messages]}; "_" for the whole object)."""
    out: dict[str, list[str]] = {}
    for field, message in pairs:
        out.setdefault(field or "_", []).append(message)
    return out


def name_list(**kwargs: Any) -> serializers.ListField:
    """A list of names (tiers, accounts, services, operations) as scope fields take them."""
    return serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=200,
                                 **kwargs)


class StrictSerializer(serializers.ModelSerializer):
    """A ModelSerializer that rejects unknown fields and runs the model's own clean() rules."""

    #: many-to-many and reverse fields that cannot be set on an unsaved instance for clean()
    clean_exclude: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model: Any = self.Meta.model
        m2m = {f.name for f in model._meta.many_to_many} | set(self.clean_exclude)
        values = {k: v for k, v in attrs.items() if k not in m2m}
        if self.instance is not None:
            instance = copy.copy(self.instance)
            for key, value in values.items():
                setattr(instance, key, value)
        else:
            instance = model(**values)
        try:
            instance.clean()
        except DjangoValidationError as e:
            detail = e.message_dict if hasattr(e, "error_dict") else {"_": e.messages}
            raise serializers.ValidationError({("_" if k == "__all__" else k): v for k, v in detail.items()}) from e
        # clean() may normalise values (e.g. calendar hours); carry them over.
        for key in values:
            attrs[key] = getattr(instance, key)
        return attrs


class Pagination(PageNumberPagination):
    """Page-number pagination; clients may ask for up to 500 rows a page."""

    page_size_query_param = "page_size"
    max_page_size = 500

