"""Helpers shared by the server-rendered pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import PermissionDenied

# Staff only; everyone else is sent to the login page (customers will get the portal).
staff_required = user_passes_test(lambda u: u.is_active and u.is_staff, login_url="login")


def needs(*perms: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Under @staff_required: the page needs these permissions (a role's, accord/access/roles.py), else 403."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not request.user.has_perms(perms):
                raise PermissionDenied(f"Your role does not allow this page (it needs {', '.join(perms)}).")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def form_errors(form: forms.Form) -> str:
    """A form's errors as one line for a flash message."""
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())
