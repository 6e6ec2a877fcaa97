"""Real HAProxy (Debian's /usr/sbin/haproxy) against the gateway tests' real upstreams, on loopback.

The tests skip when HAProxy is not installed, unless ACCORD_REQUIRE_HAPROXY=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accord.gateway.tests.conftest import EchoServer, upstreams, wait_until

__all__ = ["EchoServer", "haproxy_bin", "upstreams", "wait_until"]

HAPROXY = Path(os.environ.get("ACCORD_HAPROXY", "/usr/sbin/haproxy"))


@pytest.fixture
def haproxy_bin() -> str:
    if not HAPROXY.exists():
        if os.environ.get("ACCORD_REQUIRE_HAPROXY") == "1":
            pytest.fail(f"{HAPROXY} is missing and ACCORD_REQUIRE_HAPROXY=1 (apt-get install haproxy)")
        pytest.skip(f"{HAPROXY} is not installed")
    return str(HAPROXY)
