"""Move this process's clock by ACCORD_TEST_CLOCK_SHIFT (test runs only).

The root conftest.py puts this directory on PYTHONPATH when the variable is set, so every `accord` process a
test starts (gateway, simulators, workers) lives on the same moved clock as the test process itself: a date
bomb (a test that mixes a fixed instant with the real clock) then fails in CI's moved-clock pass, not weeks
later on `main`.
"""

from __future__ import annotations

import os

if os.environ.get("ACCORD_TEST_CLOCK_SHIFT"):
    from accord.lib.tests.clockshift.shift import start

    start(os.environ["ACCORD_TEST_CLOCK_SHIFT"])
