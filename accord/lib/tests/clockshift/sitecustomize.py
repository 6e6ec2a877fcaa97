"""Move this process's clock by ACCORD_TEST_CLOCK_SHIFT (test runs only).

The root conftest.py puts this directory on PYTHONPATH when the variable is set, so every `accord` process a
test starts (gateway, simulators, workers) lives on the same moved clock as the test process itself: a date
bomb (a test that mixes a fixed instant with the real clock) then fails in CI's moved-clock pass, not weeks
later on `main`. With ACCORD_TEST_CLOCK_FILE the process's clock also jumps, while it runs, to the shift the test
writes in that file (shift.watch).
"""

from __future__ import annotations

import os

if os.environ.get("ACCORD_TEST_CLOCK_SHIFT") or os.environ.get("ACCORD_TEST_CLOCK_FILE"):
    from accord.lib.tests.clockshift.shift import start, watch

    start(os.environ.get("ACCORD_TEST_CLOCK_SHIFT") or "0s")
    if os.environ.get("ACCORD_TEST_CLOCK_FILE"):  # a fault test moves the clock of a running process
        watch(os.environ["ACCORD_TEST_CLOCK_FILE"])
