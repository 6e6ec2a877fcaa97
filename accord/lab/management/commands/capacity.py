"""`accord capacity simulate TRACE.csv`: dedicated premium capacity against a shared pool with standby (docs/capacity.md)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accord.lab import capacity


def _read_text(path: Path) -> str:
    """The file (or standard input for -) as text; a byte that is not UTF-8 is reported with its line."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CommandError(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8; save the file as UTF-8") from None


def _config(path: Path) -> list[tuple[str, object, str]]:
    """(key, value, origin) entries from a YAML file of parameter: value."""
    try:
        loaded = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise CommandError(f"{path}: {where}not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if loaded is None:
        return []
    if not isinstance(loaded, dict):
        raise CommandError(f"{path}: expected a mapping of parameter: value, e.g. `capacity: 100`")
    return [(str(key), value, f"{path}: {key}") for key, value in loaded.items()]


def _lines(text: str, bar: Any) -> Iterator[str]:
    for line in io.StringIO(text, newline=""):
        bar.update(len(line))
        yield line


class Command(BaseCommand):
    help = (
        "Capacity what-if. `simulate TRACE.csv` replays a load trace (columns time,tier,requests) on two designs: "
        "A, a dedicated pool for premium tiers plus a shared pool, both sized for their peaks; B, one shared pool "
        "sized for normal load plus a standby pool that premium traffic uses only while the shared pool is busy. "
        "It prints each design's instance-hours, cost and per-tier SLO outcome, and the saving of B over A "
        "(see docs/capacity.md)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        simulate = sub.add_parser(
            "simulate",
            help="compare the two designs on a trace",
            description="Parameters come from the defaults, then --config, then the options given here.",
        )
        simulate.add_argument("trace", type=Path, help="CSV with the header time,tier,requests (- for stdin)")
        simulate.add_argument("--config", type=Path, help="YAML file with any of the options below as keys")
        defaults = capacity.Params()
        for option in capacity.OPTIONS:
            shown = getattr(defaults, option.attr)
            simulate.add_argument(
                f"--{option.name}",
                dest=option.attr,
                metavar=option.metavar,
                action="append" if option.name == "slo" else "store",
                help=option.help if shown is None else f"{option.help} (default: {_default_text(option.name, shown)})",
            )
        simulate.add_argument("--json", action="store_true", help="print the result as JSON")
        simulate.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")

    def handle(self, *args: Any, **options: Any) -> None:
        entries = _config(options["config"]) if options["config"] else []
        for option in capacity.OPTIONS:
            value = options.get(option.attr)
            if value is not None:
                entries.append((option.name, value, f"--{option.name}"))
        try:
            params = capacity.params_from(entries)
        except capacity.CapacityError as e:
            raise CommandError(str(e)) from None

        path: Path = options["trace"]
        text = _read_text(path)
        show = options["progress"] or sys.stderr.isatty()
        try:
            with tqdm(total=len(text), desc="reading", unit="B", unit_scale=True, file=sys.stderr,
                      disable=not show, leave=False) as bar:
                trace = capacity.parse_trace(_lines(text, bar), tiers=params.tiers, step_seconds=params.step_seconds)
            with tqdm(total=len(trace.requests), desc="simulating", unit="step", file=sys.stderr,
                      disable=not show, leave=False) as bar:
                result = capacity.simulate(trace, params, progress=bar.update)
        except capacity.CapacityError as e:
            raise CommandError(f"{path}: {e}") from None

        if options["json"]:
            self.stdout.write(json.dumps(capacity.to_dict(result, str(path)), indent=2))
        else:
            self.stdout.write(capacity.render_table(result, str(path)))


def _default_text(name: str, value: object) -> str:
    if name == "slo" and isinstance(value, Mapping):
        return ", ".join(f"{tier}={ms:g}" for tier, ms in value.items()) + "; others --default-slo"
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
