"""Insight's tests reuse the desk's personas: a platinum account under an agreement with support objectives."""

from __future__ import annotations

from accord.desk.tests.conftest import desk

__all__ = ["desk"]
