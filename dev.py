#!/usr/bin/env python3
"""The two commands a newcomer needs, with their own set-up.

    python3 dev.py demo    # venv, install, migrate, seed the demo company, serve the UI
    python3 dev.py test    # venv, install, ruff, mypy, the test suite on SQLite (and PostgreSQL with --postgres)

Only the Python standard library is used here, so this runs on a machine with nothing but Python 3.11.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ACCORD_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=check).returncode


def ensure_venv(extras: str) -> None:
    """Create .venv and install the package (editable) once, again only when pyproject.toml changes."""
    if sys.version_info[:2] != (3, 11):
        print(f"warning: Accord targets Python 3.11; this is {sys.version.split()[0]}", file=sys.stderr)
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".accord-installed-{extras}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]" if extras else ".")
    stamp.write_text(digest)


AXE_SPEC = ROOT / "accord" / "web" / "tests" / "axe"  # package.json + package-lock.json: the pinned axe-core
NODE_DIR = ROOT / "var" / "node"  # where npm installs it; the accessibility test reads node_modules/axe-core here


def ensure_axe() -> bool:
    """Install the pinned axe-core (the accessibility tests' checker) with npm, once, again when the lock changes.

    Only here, at set-up: the tests themselves never download. Without npm the accessibility tests skip (CI sets
    ACCORD_REQUIRE_AXE=1, which makes a missing axe-core a failure). Returns False when npm failed.
    """
    npm = shutil.which("npm")
    if npm is None:
        print("note: npm is not installed; the accessibility (axe-core) tests will skip", flush=True)
        return True
    lock = (AXE_SPEC / "package-lock.json").read_bytes()
    stamp = NODE_DIR / ".accord-axe-installed"
    digest = hashlib.sha256(lock).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and (NODE_DIR / "node_modules" / "axe-core" / "axe.min.js").exists():
        return True
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(AXE_SPEC / name, NODE_DIR / name)
    if run(npm, "ci", "--prefix", NODE_DIR, "--no-audit", "--no-fund", "--ignore-scripts", check=False) != 0:
        return False
    stamp.write_text(digest)
    return True


def demo(args: argparse.Namespace) -> int:
    ensure_venv("")
    env = {
        **os.environ,
        "ACCORD_DEMO": "1",
        "DEBUG": os.environ.get("DEBUG", "1"),
        # Demo mail (acknowledgements, replies, alerts) goes to files under var/sent-mail, not to the world.
        "ACCORD_EMAIL_BACKEND": os.environ.get("ACCORD_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"),
    }
    accord = BIN / "accord"
    run(accord, "migrate", "--no-input", env=env)
    run(accord, "seed-demo", "--if-empty", env=env)
    run(accord, "worker", "--once", env=env)  # raise the warnings and breaches the demo's past tickets have
    # The scenario's gateway runs the data plane compiled with mypyc; build it now (once, about 30 s) rather than
    # in the scenario's background log. Without a C compiler it runs as Python.
    if run(accord, "gateway-compile", "--if-stale", env=env, check=False) != 0:
        print("note: the gateway's data plane could not be compiled; the demo's gateway runs it as Python", flush=True)
    host, _, port = args.listen.rpartition(":")
    background = []
    if not args.no_scenario:
        # The governance scenario, live: simulated services behind a real gateway, traffic of every tier with a
        # peak every minute, the governor rerouting platinum to standby; /governance/ shows it as it happens.
        # Its service, accounts, agreements and policy are flagged simulated (`accord scenario clean` removes them).
        (ROOT / "var" / "scenario").mkdir(parents=True, exist_ok=True)
        log = (ROOT / "var" / "scenario" / "live.log").open("wb")
        background.append(subprocess.Popen([str(accord), "scenario", "rta", "--live", "--duration", "60"], cwd=ROOT,
                                           env=env, stdout=log, stderr=subprocess.STDOUT))
    print(
        f"\nAccord demo: open http://{host}:{port}/ and log in as demo / demo"
        + ("" if args.no_scenario else
           f"\n  Governance, live: http://{host}:{port}/governance/  (a peak every minute; log in var/scenario/live.log)"
           "\n    its customers RTA-<TIER>-n, service rta-search and their agreements are labelled simulated;"
           "\n    `accord scenario clean` removes them (with the demo stopped)")
        + f"\n  API:  http://{host}:{port}/api/v1/  (docs at /api/v1/docs/)"
        f"\n  Desk: http://{host}:{port}/desk/   web form: http://{host}:{port}/support/"
        f"\n  Live chat: agents at http://{host}:{port}/chat/console/, a customer's page at http://{host}:{port}/chat/demo/"
        f"\n  Customer portal: http://{host}:{port}/portal/ (invite a contact from an account page)"
        f"\n  Admin: http://{host}:{port}/admin/\n  Mail the demo sends is written to var/sent-mail/."
        f"\n  Stop with Ctrl-C.\n",
        flush=True,
    )
    try:
        # uvicorn (ASGI): the pages and the live chat's WebSockets (the console at /chat/console/, the widget on
        # /chat/demo/); DEBUG serves the static files as runserver would.
        return run(accord, "serve", "--listen", args.listen, env=env, check=False)
    finally:
        for proc in background:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def judge(name: str, code: int, failures: list[str]) -> None:
    """Record a step's failure; pytest's exit 5 (no tests collected) is one too."""
    if code == 5:
        print(f"{name}: pytest collected no tests; that is a failure", flush=True)
    if code != 0:
        failures.append(f"{name} (exit {code})")


def together(passes: list[tuple[str, dict[str, str]]], pytest_args: list[str], failures: list[str]) -> None:
    """Run pytest passes at the same time, each in var/test-<n> with its output in var/test-<n>.log."""
    running = []
    for n, (name, env) in enumerate(passes, start=1):
        var = Path(env.get("ACCORD_VAR_DIR", ROOT / "var" / "test")).with_name(f"test-{n}")
        log = var.with_suffix(".log")
        var.mkdir(parents=True, exist_ok=True)
        env = {**env, "ACCORD_VAR_DIR": str(var), "ACCORD_TEST_SHARD": f"{n}/{len(passes)}"}  # conftest.shard()
        if "DATABASE_URL" in env:  # SQLite passes name their file under their var directory themselves
            env.setdefault("ACCORD_TEST_DB_NAME", f"test_accord_{n}")
        cmd = [str(PY), "-m", "pytest", *pytest_args]
        print(f"+ {name}: {' '.join(cmd)} (output in {log})", flush=True)
        out = log.open("w")
        running.append((name, log, out, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)))
    for name, log, out, proc in running:
        code = proc.wait()
        out.close()
        print(f"\n===== {name}: exit {code} =====", flush=True)
        print(log.read_text(errors="replace"), flush=True)
        judge(name, code, failures)


def test(args: argparse.Namespace) -> int:
    ensure_venv("dev")
    failures: list[str] = []

    def step(name: str, *cmd: str | Path, env: dict[str, str] | None = None) -> None:
        judge(name, run(*cmd, env=env, check=False), failures)

    if not ensure_axe():
        failures.append("npm ci (axe-core)")
    step("ruff", BIN / "ruff", "check", ".")
    step("mypy", BIN / "mypy", "accord")
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ACCORD_TEST_SHARD")}
    base_env.setdefault("ACCORD_VAR_DIR", str(ROOT / "var" / "test"))
    # The gateway's data plane compiled with mypyc (needs a C compiler). Without one the tests run it as Python;
    # ACCORD_REQUIRE_COMPILED=1 (CI) makes a failed build a failure.
    if run(BIN / "accord", "gateway-compile", "--if-stale", env=base_env, check=False) != 0:
        if os.environ.get("ACCORD_REQUIRE_COMPILED") == "1":
            failures.append("gateway-compile")
        else:
            print("warning: the data plane could not be compiled; the gateway tests run it as Python", flush=True)
    # --durations: the slowest tests at the end of each pass, to see where the CI time goes as the suite grows.
    pytest_args = ["-p", "no:cacheprovider", "--durations=25", *args.pytest_args]
    # The passes run side by side (SQLite; PostgreSQL; SQLite on a moved clock), each with its own var directory
    # (SQLite files, logs) and its output in a log printed when it ends: much of a pass is waiting on sockets,
    # browsers and child processes, so three at once take far less than three in a row. A single pass (no
    # --postgres, no --clock-shift) runs in the foreground with its output as it comes.
    passes: list[tuple[str, dict[str, str]]] = [("pytest (SQLite)", base_env)]
    if args.postgres:
        passes.append(("pytest (PostgreSQL)", {**base_env, "DATABASE_URL": args.postgres}))
    if args.clock_shift:
        # The whole suite again on a clock moved months ahead (every process it starts too): a test that mixes a
        # fixed instant with the real clock fails here on the day it is written, not on main weeks later.
        passes.append((f"pytest (SQLite, clock moved by {args.clock_shift})",
                       {**base_env, "ACCORD_TEST_CLOCK_SHIFT": args.clock_shift}))
    if len(passes) == 1:
        step("pytest (SQLite)", PY, "-m", "pytest", *pytest_args, env=base_env)
        passes = []
    together(passes, pytest_args, failures)
    if not args.pytest_args:  # the runs above used the compiled build when there is one: the Python one too
        step("pytest (SQLite, gateway tests on the Python data plane)", PY, "-m", "pytest", "-p", "no:cacheprovider",
             "accord/gateway", env={**base_env, "ACCORD_DATAPLANE": "python"})
    if failures:
        print("FAILED: " + ", ".join(failures), flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="set up and run the demo")
    p_demo.add_argument("--listen", default="127.0.0.1:8000")
    p_demo.add_argument("--no-scenario", action="store_true", help="do not run the live governance scenario")
    p_demo.set_defaults(func=demo)
    p_test = sub.add_parser("test", help="set up and run lint, types and tests")
    p_test.add_argument(
        "--postgres",
        default=os.environ.get("ACCORD_TEST_POSTGRES"),
        help="also run the suite on this PostgreSQL URL (e.g. postgres://127.0.0.1:5432/test)",
    )
    p_test.add_argument(
        "--clock-shift",
        help="also run the suite on SQLite with the clock moved by this much (e.g. 200d), as CI does",
    )
    p_test.add_argument("pytest_args", nargs="*", help="extra arguments for pytest")
    p_test.set_defaults(func=test)
    args = parser.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
