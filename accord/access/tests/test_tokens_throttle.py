"""Staff API tokens (hashed, expiring, revocable, shown once) and the throttle of failed sign-ins and tokens."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accord.access import roles, tokens
from accord.access.models import ApiToken, Strike

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent() -> User:
    user = User.objects.create_user("ann", password="ann-long-password-1", is_staff=True)
    roles.grant(user, "agent")
    return user


def bearer(secret: str, address: str = "192.0.2.10") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_token_is_stored_hashed_expires_and_can_be_revoked(agent: User) -> None:
    issued = tokens.create(agent, "laptop", days=3)
    secret = issued.secret
    assert secret.startswith(f"acc_{issued.token.prefix}_") and len(secret) > 40
    row = ApiToken.objects.get()
    assert (
        secret not in str(ApiTokenValues(row)) and row.digest == hashlib.sha256(secret.encode()).hexdigest()
    )
    assert bearer(secret).get("/api/v1/accounts/").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    assert (
        bearer(secret[:-1] + ("A" if secret[-1] != "A" else "B")).get("/api/v1/accounts/").status_code == 401
    )
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    expired = bearer(secret).get("/api/v1/accounts/")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "not_authenticated"
    second = tokens.create(agent)
    assert (second.token.expires_at - timezone.now()).days in (89, 90)
    tokens.revoke(second.token.prefix)
    assert bearer(second.secret).get("/api/v1/accounts/").status_code == 401
    with pytest.raises(ValueError, match="1 to 366"):
        tokens.create(agent, days=0)


def ApiTokenValues(row: ApiToken) -> list[object]:
    return [getattr(row, f.attname) for f in row._meta.fields]


def test_my_tokens_api_lists_creates_once_and_revokes(agent: User) -> None:
    api = bearer(tokens.create(agent, "first").secret)
    created = api.post("/api/v1/me/tokens/", {"name": "ci", "days": 7}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token"].startswith("acc_") and body["name"] == "ci" and body["live"] is True
    listed = api.get("/api/v1/me/tokens/").json()
    assert {t["name"] for t in listed["results"]} == {"first", "ci"}
    assert all("token" not in t and "digest" not in t for t in listed["results"])
    other = User.objects.create_user("olga", is_staff=True)
    roles.grant(other, "agent")
    theirs = tokens.create(other, "theirs")
    assert api.get(f"/api/v1/me/tokens/{theirs.token.prefix}/").status_code == 404
    assert api.delete(f"/api/v1/me/tokens/{theirs.token.prefix}/").status_code == 404
    unknown = api.post("/api/v1/me/tokens/", {"name": "x", "scope": "all"}, format="json")
    assert unknown.status_code == 400 and "scope" in unknown.json()["error"]["fields"]
    assert api.post("/api/v1/me/tokens/", {"days": 1000}, format="json").status_code == 400
    new = body["token"]
    assert bearer(new).delete(f"/api/v1/me/tokens/{body['prefix']}/").status_code == 204
    assert bearer(new).get("/api/v1/me/tokens/").status_code == 401
    assert ApiToken.objects.get(prefix=body["prefix"]).revoked_at is not None


def test_token_commands_create_list_revoke(agent: User, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("token", "create", "ann", "--days", "5", "--name", "deploy")
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("acc_") and bearer(secret).get("/api/v1/accounts/").status_code == 200
    prefix = tokens.split(secret)
    call_command("token", "list")
    out = capsys.readouterr().out
    assert prefix in out and "live" in out and "deploy" in out and secret not in out
    call_command("token", "revoke", prefix)
    assert bearer(secret).get("/api/v1/accounts/").status_code == 401
    call_command("token", "list", "ann")
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no token"):
        call_command("token", "revoke", "deadbeef")
    User.objects.create_user("pat")
    with pytest.raises(CommandError, match="not staff"):
        call_command("token", "create", "pat")
    with pytest.raises(CommandError, match="1 to 366"):
        call_command("token", "create", "ann", "--days", "400")


@override_settings(
    ACCORD_SIGNIN_ACCOUNT_FAILURES=3, ACCORD_SIGNIN_ADDRESS_FAILURES=6, ACCORD_SIGNIN_WINDOW=600
)
def test_failed_tokens_are_throttled_per_account_and_per_address(agent: User) -> None:
    good = tokens.create(agent)
    prefix = good.token.prefix
    for i in range(3):  # wrong secrets for ann's token, from three addresses
        assert (
            bearer(f"acc_{prefix}_wrong{i}", f"192.0.2.{20 + i}").get("/api/v1/accounts/").status_code == 401
        )
    blocked = bearer(good.secret, "192.0.2.99").get("/api/v1/accounts/")
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "throttled"
    assert 500 <= int(blocked["Retry-After"]) <= 600
    # another user's token from a clean address still works; then one address guessing at random is stopped
    other = User.objects.create_user("otto", is_staff=True)
    roles.grant(other, "agent")
    theirs = tokens.create(other).secret
    for i in range(6):
        assert bearer(f"acc_{i:08x}_guess", "198.51.100.7").get("/api/v1/accounts/").status_code == 401
    assert bearer(theirs, "198.51.100.7").get("/api/v1/accounts/").status_code == 429
    assert bearer(theirs, "198.51.100.8").get("/api/v1/accounts/").status_code == 200
    # the window passes: the strikes age out and ann's right token works again
    Strike.objects.update(at=timezone.now() - dt.timedelta(seconds=601))
    assert bearer(good.secret, "192.0.2.99").get("/api/v1/accounts/").status_code == 200


@override_settings(ACCORD_SIGNIN_ACCOUNT_FAILURES=3, ACCORD_SIGNIN_ADDRESS_FAILURES=50)
def test_the_login_form_is_throttled_per_account_with_a_clear_message(agent: User) -> None:
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(3):
        r = client.post("/login/", {"username": "ann", "password": "wrong"})
        assert r.status_code == 200 and "did not match" in r.content.decode()
    r = client.post("/login/", {"username": "ann", "password": "ann-long-password-1"})
    assert r.status_code == 429 and "Too many failed sign-ins" in r.content.decode() and r["Retry-After"]
    assert "_auth_user_id" not in client.session
    # another account from the same address is not blocked by ann's failures
    User.objects.create_user("bea", password="bea-long-password-1", is_staff=True)
    assert client.post("/login/", {"username": "bea", "password": "bea-long-password-1"}).status_code == 302
    Strike.objects.update(at=timezone.now() - dt.timedelta(hours=1))
    fresh = Client(REMOTE_ADDR="203.0.113.5")
    assert fresh.post("/login/", {"username": "ann", "password": "ann-long-password-1"}).status_code == 302


@override_settings(
    ACCORD_SIGNIN_ACCOUNT_FAILURES=100,
    ACCORD_SIGNIN_ADDRESS_FAILURES=2,
    ACCORD_TRUSTED_PROXIES=["10.0.0.0/8"],
)
def test_the_throttle_counts_the_real_client_behind_a_trusted_proxy(agent: User) -> None:
    def attempt(forwarded: str) -> int:
        c = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
        return c.post("/login/", {"username": "nobody", "password": "x"}).status_code

    assert attempt("198.51.100.1") == 200 and attempt("198.51.100.1") == 200
    assert attempt("198.51.100.1") == 429
    assert attempt("198.51.100.2, 10.0.0.9") == 200  # another client, behind two proxies: its own count
    assert attempt("198.51.100.1, 198.51.100.2") == 200  # spoofed first hop: the proxy saw 198.51.100.2
