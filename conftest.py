"""Shared test fixtures: a few named personas instead of factories."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture
def alice(db: None) -> User:
    """Alice is a staff account manager with full rights."""
    return User.objects.create_user("alice", "alice@example.com", "alice-password", is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db: None) -> User:
    """Bob has a login but no staff rights."""
    return User.objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def api(alice: User) -> APIClient:
    """An API client authenticated with Alice's token."""
    client = APIClient()
    token = Token.objects.create(user=alice)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
