"""The real client address behind trusted proxies."""

from __future__ import annotations

from django.test import RequestFactory, override_settings

from accord.lib.net import client_ip


def ip(remote: str, forwarded: str | None = None) -> str:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert ip("198.51.100.1", "1.2.3.4") == "198.51.100.1"


@override_settings(ACCORD_TRUSTED_PROXIES=["10.0.0.0/8", "2001:db8::/32"])
def test_the_header_is_read_right_to_left_skipping_trusted_proxies() -> None:
    assert ip("10.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert ip("10.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.1.1") == "203.0.113.9"  # spoofed left part ignored
    assert ip("10.0.0.1", "10.2.2.2, 10.1.1.1") == "10.2.2.2"  # all trusted: the leftmost
    assert ip("10.0.0.1", "") == "10.0.0.1"
    assert ip("10.0.0.1", "junk, 203.0.113.9") == "203.0.113.9"
    assert ip("10.0.0.1", "203.0.113.9, junk") == "10.0.0.1"  # a malformed hop stops the walk
    assert ip("10.0.0.1", "[2001:db9::1]:443") == "2001:db9::1"
    assert ip("2001:db8::5", "203.0.113.7:5555") == "203.0.113.7"
    assert ip("198.51.100.1", "203.0.113.9") == "198.51.100.1"  # not from a trusted proxy: socket address
