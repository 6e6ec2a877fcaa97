"""The API's permission class (kept apart from accord.lib.api: DRF's views import this at class definition)."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions


class RolePermissions(permissions.BasePermission):
    """Active staff holding the model permission the request needs: `view` to read, `add` to create, `change`
    to update or to run an action on one object, `delete` to delete (Django's permissions, granted by roles:
    accord/access/roles.py). A staff user without a role reads nothing.

    A view may name its own in `required_perms`: {action or method: [perm, ...]}; a view without a queryset
    must.
    """

    message = "Your role does not allow this."
    _methods = {
        "GET": "view",
        "HEAD": "view",
        "OPTIONS": "view",
        "POST": "add",
        "PUT": "change",
        "PATCH": "change",
        "DELETE": "delete",
    }

    def required(self, request: Any, view: Any) -> list[str]:
        explicit = getattr(view, "required_perms", None) or {}
        action = getattr(view, "action", None)
        if action in explicit:
            return list(explicit[action])
        if request.method in explicit:
            return list(explicit[request.method])
        queryset = getattr(view, "queryset", None)
        if queryset is None and hasattr(view, "get_queryset"):
            try:
                queryset = view.get_queryset()
            except Exception:  # a view whose queryset needs more than the request: it must say its perms
                queryset = None
        if queryset is None:
            return ["auth.no_such_permission"]  # refuse: a view without a model names its permissions
        model = queryset.model
        verb = self._methods.get(request.method or "", "change")
        extra = getattr(getattr(view, action or "", None), "detail", None)
        if request.method == "POST" and extra:  # an action on one object (revoke, approve): a change
            verb = "change"
        return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}"]

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        return bool(user.has_perms(self.required(request, view)))
