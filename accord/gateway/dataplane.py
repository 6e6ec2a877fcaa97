"""Which build of the data plane a gateway runs: proxy.py compiled by mypyc, or proxy.py as it is.

proxy.py is ordinary typed Python; `accord gateway-compile` turns a copy of it into the C extension
`accord.gateway._proxy_compiled` with mypyc (the compiler mypy ships), which runs the same code with about
30 % less of the gateway's own work per request (docs/benchmarks.md, Gateway). The copy records the SHA-256 of the source
it was made from, and a build whose source is not the proxy.py beside it is never used, so an edit to proxy.py
can never run as stale machine code: until the next compile the gateway runs the Python.

ACCORD_DATAPLANE picks: `auto` (the default: compiled when a current build is there, else Python),
`python`, or `compiled` (fail rather than run the Python).

mypy (which ships mypyc) and setuptools are ordinary dependencies, so a default install can build it: `accord
gateway` compiles at start when the build is missing or stale and a C compiler is there (`ensure_compiled`),
and runs the Python when it cannot.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import proxy

PACKAGE = Path(__file__).resolve().parent
SOURCE = PACKAGE / "proxy.py"
COMPILED = "accord.gateway._proxy_compiled"
STAMP = PACKAGE / "_proxy_compiled.sha256"  # the SHA-256 of the proxy.py the build in place was made from
MODES = ("auto", "python", "compiled")
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)  # what an extension module's file name ends with
# mypy's configuration for the build: the copy is checked on its own; what it imports from the rest of Accord
# (snapshot, measure, limits) stays ordinary Python and is typed Any in the build.
MYPY_INI = """[mypy]
ignore_missing_imports = True
follow_imports = skip
"""
SETUP_PY = """from setuptools import setup
from mypyc.build import mypycify

setup(name="accord-dataplane", ext_modules=mypycify({args!r}, opt_level="3", debug_level="0"))
"""


class DataPlaneError(Exception):
    """The compiled data plane was asked for and cannot be had, or cannot be built."""


@dataclass(frozen=True)
class Choice:
    """The module a gateway runs, and why."""

    module: ModuleType
    compiled: bool
    reason: str

    @property
    def name(self) -> str:
        return "compiled" if self.compiled else "python"


def source_digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def compiled_files(directory: Path = PACKAGE) -> list[Path]:
    """The extension files of a build (the module and mypyc's runtime library beside it)."""
    return sorted(p for p in directory.glob("_proxy_compiled*") if p.name.endswith(SUFFIXES))


def runs_compiled(gateway: object) -> bool:
    """Whether a gateway object comes from the compiled build."""
    return type(gateway).__module__ == COMPILED


def _compiled_module() -> tuple[ModuleType | None, str]:
    """The current compiled build, or None and why not."""
    if not compiled_files():
        return None, "no compiled build (run `accord gateway-compile`)"
    try:
        module = importlib.import_module(COMPILED)
    except Exception as e:  # whatever a build fails with (another ABI, its module code): run the Python
        return None, f"the compiled build does not load: {type(e).__name__}: {e}"
    if not str(module.__file__ or "").endswith(SUFFIXES):
        return None, f"{module.__file__} is not a compiled extension"
    built_from = getattr(module, "SOURCE_SHA256", "")
    if built_from != source_digest():
        return None, "the compiled build is of an older proxy.py (run `accord gateway-compile`)"
    return module, "compiled with mypyc from the current proxy.py"


def choose(mode: str | None = None) -> Choice:
    """The data plane to run: `mode` (else ACCORD_DATAPLANE, else auto)."""
    mode = (mode if mode is not None else os.environ.get("ACCORD_DATAPLANE", "auto")).strip().lower() or "auto"
    if mode not in MODES:
        raise DataPlaneError(f"ACCORD_DATAPLANE must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "python":
        return Choice(proxy, False, "ACCORD_DATAPLANE=python")
    module, reason = _compiled_module()
    if module is not None:
        return Choice(module, True, reason)
    if mode == "compiled":
        raise DataPlaneError(f"ACCORD_DATAPLANE=compiled, but {reason}")
    return Choice(proxy, False, reason)


def current() -> bool:
    """Whether a compiled build of the current proxy.py is in place (as this process first loaded it)."""
    return _compiled_module()[0] is not None


def loads_in_a_new_process() -> tuple[bool, str]:
    """Whether a fresh process would run the compiled build, and why (an extension module loads once per
    process, so a build made after this process loaded the previous one can only be checked in another)."""
    code = ("import django; django.setup(); from accord.gateway import dataplane; c = dataplane.choose('auto'); "
            "print(c.reason); raise SystemExit(0 if c.compiled else 1)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "accord.settings")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return result.returncode == 0, (result.stdout.strip() or result.stderr.strip()[-500:])


def missing_tools() -> str:
    """What a build needs and this machine lacks, in words ('' when nothing is missing)."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed: it comes with mypy, a dependency of accord (pip install -e .)"
    include = sysconfig.get_paths().get("include", "")
    if not Path(include, "Python.h").exists():
        return f"Python's C headers are missing ({include}/Python.h): install python3-dev"
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None and shutil.which("gcc") is None:
        return "no C compiler found (cc or gcc; or set CC)"
    return ""


def built_on_disk() -> bool:
    """Whether the build on disk is of the current proxy.py, read from its stamp without importing it (a process
    that imported a stale build could not load a new one: an extension module loads once per process)."""
    try:
        return bool(compiled_files()) and STAMP.read_text().strip() == source_digest()
    except OSError:
        return False


def ensure_compiled(progress: Callable[[str], None] = print) -> bool:
    """Compile the data plane when the build is missing or stale and this machine can build it; True when a
    current build is in place afterwards. Never raises: without a build the gateway runs the Python, and says why.
    Call it before anything imports the compiled module (see `built_on_disk`)."""
    if built_on_disk():
        return True
    missing = missing_tools()
    if missing:
        progress(f"data plane: not compiling ({missing}); the gateway runs the slower Python build")
        return False
    progress("data plane: no current compiled build; compiling it once (--no-compile skips this)")
    try:
        build(progress)
    except DataPlaneError as e:
        progress(f"data plane: compiling failed, the gateway runs the Python build: {e}")
        return False
    return True


def build(progress: Callable[[str], None] = print, target: Path = PACKAGE) -> list[Path]:
    """Compile proxy.py with mypyc into `target`; returns the files written. Raises DataPlaneError with the
    compiler's own words when something needed is missing (mypy, a C compiler, Python's headers)."""
    missing = missing_tools()
    if missing:
        raise DataPlaneError(missing)
    digest = source_digest()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="accord-dataplane-") as tmp:
        tree = Path(tmp)
        package = tree / "accord" / "gateway"
        package.mkdir(parents=True)
        (tree / "accord" / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        copy = package / "_proxy_compiled.py"
        copy.write_text(SOURCE.read_text() + f'\n\nSOURCE_SHA256 = "{digest}"  # what this build was made from\n')
        (tree / "mypy.ini").write_text(MYPY_INI)
        (tree / "setup.py").write_text(SETUP_PY.format(
            args=["accord/gateway/_proxy_compiled.py", "--config-file", "mypy.ini"]))
        progress(f"compiling {SOURCE.name} with mypyc (type check, C generation, C compiler; about 10-60 s)")
        result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree,
                                capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise DataPlaneError(f"mypyc failed (exit {result.returncode}):\n{tail}")
        built = compiled_files(package)
        if not built:
            raise DataPlaneError("mypyc reported success but wrote no extension module")
        try:
            written = _install(built, target)
            if target == PACKAGE:
                _write_stamp(digest)
        except OSError as e:
            raise DataPlaneError(f"cannot write the build into {target}: {e.strerror or e}") from e
    progress(f"built {len(written)} file(s) in {time.monotonic() - started:.1f} s: "
             + ", ".join(p.name for p in written))
    return written


def _write_stamp(digest: str) -> None:
    fd, staging = tempfile.mkstemp(prefix=f".{STAMP.name}.", dir=STAMP.parent)
    with os.fdopen(fd, "w") as f:
        f.write(digest + "\n")
    os.replace(staging, STAMP)


def _install(built: list[Path], target: Path) -> list[Path]:
    """Move a build into place: each file renamed over its predecessor (a process starting meanwhile loads the old
    file or the new one, never half of one), the runtime library before the module that loads it; files of an
    earlier build that this one does not replace (another Python's) go."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(built, key=lambda p: "__mypyc" not in p.name):
        fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=target)
        os.close(fd)
        try:
            shutil.copyfile(path, staging)
            os.chmod(staging, 0o755)
            os.replace(staging, target / path.name)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
        written.append(target / path.name)
    for stale in compiled_files(target):
        if stale not in written:
            stale.unlink()
    return written
