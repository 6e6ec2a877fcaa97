"""Helpers shared by the server-rendered pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import user_passes_test

# Staff only; everyone else is sent to the login page (customers will get the portal).
staff_required = user_passes_test(lambda u: u.is_active and u.is_staff, login_url="login")


def form_errors(form: forms.Form) -> str:
    """A form's errors as one line for a flash message."""
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())
