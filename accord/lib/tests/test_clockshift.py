"""The moved-clock pass (ACCORD_TEST_CLOCK_SHIFT): the test process and every child process move together."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import time_machine

from accord.lib.tests.clockshift import shift

CLOCKSHIFT = Path(shift.__file__).resolve().parent


def real_now() -> float:
    """The host's clock, also while this process travels."""
    hatch = time_machine.escape_hatch
    return hatch.time.time() if hatch.is_travelling() else time.time()


def test_a_child_process_runs_on_the_moved_clock() -> None:
    env = {**os.environ, "ACCORD_TEST_CLOCK_SHIFT": "30d", "PYTHONPATH": str(CLOCKSHIFT)}
    before = real_now()
    out = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env, check=True,
                         capture_output=True, text=True).stdout
    after = real_now()
    moved = float(out) - 30 * 86400
    assert before - 1 <= moved <= after + 1


def test_a_child_without_the_variable_keeps_the_real_clock() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACCORD_TEST_CLOCK_SHIFT"}
    env["PYTHONPATH"] = str(CLOCKSHIFT)
    out = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert abs(float(out) - real_now()) < 5


def test_this_process_is_moved_when_the_pass_asks_for_it() -> None:
    wanted = os.environ.get("ACCORD_TEST_CLOCK_SHIFT")
    expected = shift.parse(wanted).total_seconds() if wanted else 0.0
    assert abs(dt.datetime.now(dt.UTC).timestamp() - real_now() - expected) < 5


@pytest.mark.parametrize(("text", "seconds"), [("200d", 200 * 86400), ("-3h", -3 * 3600), ("90m", 5400), ("2w", 14 * 86400)])
def test_shifts_are_read_with_their_unit(text: str, seconds: int) -> None:
    assert shift.parse(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["200", "d", "1.5d", "3 days", ""])
def test_a_shift_without_a_unit_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 200d"):
        shift.parse(text)
