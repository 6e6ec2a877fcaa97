"""The choice between proxy.py compiled by mypyc and proxy.py as Python, and the build itself."""

from __future__ import annotations

import importlib.machinery
import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accord.gateway import dataplane, proxy

WANT_COMPILED = os.environ.get("ACCORD_REQUIRE_COMPILED") == "1" and os.environ.get("ACCORD_DATAPLANE") != "python"


def needs_build() -> None:
    if dataplane.current():
        return
    if WANT_COMPILED:
        pytest.fail("ACCORD_REQUIRE_COMPILED=1 but no current build of the data plane (accord gateway-compile)")
    pytest.skip("no compiled build of the data plane here (accord gateway-compile)")


def needs_mypyc() -> None:
    """The build tests need mypyc, Python's headers and a C compiler: required in CI, skipped where missing."""
    missing = dataplane.missing_tools()
    if missing and os.environ.get("ACCORD_REQUIRE_COMPILED") == "1":
        pytest.fail(f"ACCORD_REQUIRE_COMPILED=1 but {missing}")
    if missing:
        pytest.skip(missing)


def test_python_is_always_there_and_a_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    choice = dataplane.choose("python")
    assert choice.module is proxy and not choice.compiled and choice.name == "python"
    monkeypatch.setenv("ACCORD_DATAPLANE", "fast")
    with pytest.raises(dataplane.DataPlaneError, match="one of auto, python, compiled, not 'fast'"):
        dataplane.choose()
    out = io.StringIO()
    with pytest.raises(CommandError, match="not 'fast'"):
        call_command("gateway-compile", "--check", stdout=out)


def test_a_build_that_does_not_load_falls_back_with_the_reason(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "_proxy_compiled.so").write_bytes(b"not an ELF file")
    monkeypatch.setattr(dataplane, "compiled_files", lambda directory=None: [tmp_path / "_proxy_compiled.so"])
    monkeypatch.setattr(dataplane, "COMPILED", "accord.gateway._proxy_not_built_here")
    choice = dataplane.choose("auto")
    assert choice.module is proxy and not choice.compiled
    assert choice.reason.startswith("the compiled build does not load: ModuleNotFoundError"), choice.reason
    with pytest.raises(dataplane.DataPlaneError, match="ACCORD_DATAPLANE=compiled, but the compiled build does not"):
        dataplane.choose("compiled")


def test_auto_runs_the_current_build_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_build()
    monkeypatch.setenv("ACCORD_DATAPLANE", "auto")
    choice = dataplane.choose("auto")
    assert choice.compiled and choice.name == "compiled"
    assert str(choice.module.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert dataplane.source_digest() == choice.module.SOURCE_SHA256
    assert choice.module.Gateway is not proxy.Gateway  # machine code, not the Python class
    out = io.StringIO()
    call_command("gateway-compile", "--check", stdout=out)
    assert out.getvalue().startswith("data plane: compiled")


def test_an_edited_proxy_py_runs_as_python_until_compiled_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    needs_build()
    edited = tmp_path / "proxy.py"
    edited.write_text(dataplane.SOURCE.read_text() + "\n# an edit after the build\n")
    monkeypatch.setattr(dataplane, "SOURCE", edited)
    choice = dataplane.choose("auto")
    assert choice.module is proxy and not choice.compiled
    assert "older proxy.py" in choice.reason
    assert not dataplane.current()
    with pytest.raises(dataplane.DataPlaneError, match=r"ACCORD_DATAPLANE=compiled, but the compiled build is of an "
                                                       r"older proxy\.py"):
        dataplane.choose("compiled")
    monkeypatch.setenv("ACCORD_DATAPLANE", "auto")
    with pytest.raises(CommandError, match="would run the Python data plane"):
        call_command("gateway-compile", "--check", stdout=io.StringIO())


def test_a_source_that_does_not_compile_is_reported_and_leaves_the_build_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_mypyc()
    broken = tmp_path / "proxy.py"
    broken.write_text(dataplane.SOURCE.read_text() + "\n\ndef broken() -> int:\n    return 'not an int'\n")
    monkeypatch.setattr(dataplane, "SOURCE", broken)
    target = tmp_path / "out"
    target.mkdir()
    earlier = target / f"_proxy_compiled{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    earlier.write_bytes(b"an earlier build")
    lines: list[str] = []
    with pytest.raises(dataplane.DataPlaneError, match=r"mypyc failed \(exit \d+\):[\s\S]*Incompatible return value"):
        dataplane.build(progress=lines.append, target=target)
    assert lines and lines[0].startswith("compiling proxy.py with mypyc")
    assert earlier.read_bytes() == b"an earlier build"  # nothing replaced, nothing lost


def test_a_build_without_mypyc_or_a_compiler_says_what_is_missing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import sys

    monkeypatch.setitem(sys.modules, "mypyc.build", None)  # as if mypy were not installed
    with pytest.raises(dataplane.DataPlaneError, match=r"mypyc is not installed: it comes with mypy, a dependency"):
        dataplane.build(progress=lambda _line: None, target=tmp_path)
    monkeypatch.delitem(sys.modules, "mypyc.build")
    monkeypatch.setenv("CC", "no-such-cc")
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in ("no-such-cc", "gcc")
                        else real_which(name, *a, **k))
    with pytest.raises(dataplane.DataPlaneError, match="no C compiler found"):
        dataplane.build(progress=lambda _line: None, target=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_current_build_on_disk_is_not_compiled_again() -> None:
    needs_build()
    assert dataplane.built_on_disk()  # the stamp beside the build names the proxy.py beside it
    lines: list[str] = []
    assert dataplane.ensure_compiled(lines.append) and lines == []


def test_a_stale_build_is_compiled_at_start_and_a_failure_falls_back_to_python(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `accord gateway` does before it starts workers: compile when the build on disk is stale, and run the
    Python, saying why, when compiling fails."""
    needs_mypyc()
    monkeypatch.setattr(dataplane, "STAMP", tmp_path / "_proxy_compiled.sha256")
    (tmp_path / "_proxy_compiled.sha256").write_text("0" * 64 + "\n")  # a build of another proxy.py
    assert not dataplane.built_on_disk()
    broken = tmp_path / "proxy.py"
    broken.write_text(dataplane.SOURCE.read_text() + "\n\ndef broken() -> int:\n    return 'not an int'\n")
    monkeypatch.setattr(dataplane, "SOURCE", broken)
    before = {p: p.stat().st_mtime_ns for p in dataplane.compiled_files()}
    lines: list[str] = []
    assert dataplane.ensure_compiled(lines.append) is False
    assert lines[0] == "data plane: no current compiled build; compiling it once (--no-compile skips this)"
    assert lines[-1].startswith("data plane: compiling failed, the gateway runs the Python build: mypyc failed")
    assert {p: p.stat().st_mtime_ns for p in dataplane.compiled_files()} == before  # the build in place stays


@pytest.mark.slow
@pytest.mark.single_pass  # mypyc over the source: the engine and the clock change nothing
def test_a_target_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    needs_mypyc()
    blocker = tmp_path / "target"
    blocker.write_text("a file where the build should go")
    with pytest.raises(dataplane.DataPlaneError, match=f"cannot write the build into {blocker}"):
        dataplane.build(progress=lambda _line: None, target=blocker)
    assert blocker.read_text() == "a file where the build should go"


@pytest.mark.slow
@pytest.mark.single_pass  # mypyc over the source: the engine and the clock change nothing
def test_a_build_writes_the_module_and_its_runtime_library(tmp_path: Path) -> None:
    needs_mypyc()
    lines: list[str] = []
    written = dataplane.build(progress=lines.append, target=tmp_path)
    names = sorted(p.name for p in written)
    assert [n.split(".")[0] for n in names] == ["_proxy_compiled", "_proxy_compiled__mypyc"], names
    assert max(p.stat().st_size for p in written) > 100_000  # the compiled code; the other is a small shim
    assert lines[-1].startswith("built 2 file(s) in ")
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no staging file left behind
    # a second build replaces the files in place
    again = dataplane.build(progress=lines.append, target=tmp_path)
    assert sorted(p.name for p in again) == names and sorted(p.name for p in tmp_path.iterdir()) == names
