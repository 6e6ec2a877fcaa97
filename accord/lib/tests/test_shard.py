import os
import subprocess
import sys
from pathlib import Path

import pytest

from accord.lib.testing import shard, share

ROOT = Path(__file__).resolve().parents[3]


def test_the_passes_of_a_run_share_a_list_so_each_item_is_checked_by_exactly_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    items = [f"/admin/{i}/" for i in range(194)]
    seen = []
    for i in (1, 2, 3):
        monkeypatch.setenv("ACCORD_TEST_SHARD", f"{i}/3")
        assert shard() == (i, 3)
        seen.append(share(items))
    assert sorted(p for s in seen for p in s) == sorted(items)  # every page once, none twice
    assert sorted(len(s) for s in seen) == [64, 65, 65]
    monkeypatch.delenv("ACCORD_TEST_SHARD")
    assert shard() == (1, 1) and share(items) == items  # alone, the suite checks them all


def test_a_single_pass_test_runs_in_pass_1_only() -> None:
    said = {}
    for pass_ in ("1/3", "2/3"):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
             f"{Path(__file__)}::test_marked_single_pass"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "ACCORD_TEST_SHARD": pass_, "ACCORD_SINGLE_PASS_PROBE": "1"})
        said[pass_] = done.stdout
    assert "1 passed" in said["1/3"], said["1/3"]
    assert "1 skipped" in said["2/3"] and "pass 1 of this run checks it" in said["2/3"], said["2/3"]


@pytest.mark.single_pass
@pytest.mark.skipif(os.environ.get("ACCORD_SINGLE_PASS_PROBE") != "1", reason="run by the test above only")
def test_marked_single_pass() -> None:
    assert shard()[0] == 1
