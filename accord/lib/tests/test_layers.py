"""Imports point down the loop: the layer map in docs/architecture.md, checked on every module of the code.

Every import counts, also one inside a function or under TYPE_CHECKING: an import moved into a function to
dodge a cycle is still an upward dependency. Tests are outside the map (a test may drive a higher layer to
check a lower one); migrations are inside it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "accord"
DOC = ROOT / "docs" / "architecture.md"
TOP = "accord"  # the project itself: settings, urls, cli


def layer_map(text: str) -> dict[str, int]:
    """App -> layer from the doc's table rows `| 3 | `agreements` | ... |`."""
    layers: dict[str, int] = {}
    for number, apps in re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", text, flags=re.MULTILINE):
        for app in re.findall(r"`([a-z_]+)`", apps):
            assert app not in layers, f"{app} is in two layers of {DOC.name}"
            layers[app] = int(number)
    return layers


def app_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "accord":
        return None
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").exists() or parts[1] in ("__main__", "conftest"):
        return TOP
    return parts[1]


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def code_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "tests" not in p.relative_to(PACKAGE).parts)


def violations(layers: dict[str, int], files: list[Path], root: Path = ROOT) -> list[str]:
    """Every import from a module to an app of its own layer or a higher one, as 'file:line: what'."""
    out = []
    for path in files:
        own = app_of(module_name(path, root))
        assert own is not None
        for line, module in imports(path, root):
            other = app_of(module)
            if other is None or other == own:
                continue
            where = f"{path.relative_to(root)}:{line}"
            if own == TOP:
                continue  # the project composes every app
            if other == TOP and module != "accord":
                out.append(f"{where}: {own} imports the project module {module}")
            elif other != TOP and layers[other] >= layers[own]:
                relation = "the same layer" if layers[other] == layers[own] else "a higher layer"
                out.append(f"{where}: {own} (layer {layers[own]}) imports {module}, {relation} ({other}, "
                           f"layer {layers[other]})")
    return out


def test_every_app_has_a_layer_in_the_architecture_doc() -> None:
    layers = layer_map(DOC.read_text(encoding="utf-8"))
    apps = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(apps - set(layers)) == []


def test_imports_point_down_the_layers() -> None:
    assert violations(layer_map(DOC.read_text(encoding="utf-8")), code_files()) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    from accord.governance.models import Policy\n", "imports accord.governance.models, a higher layer"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import accord.desk.models\n", "imports accord.desk.models"),
    ("from accord.catalog import models\n", "imports accord.catalog, the same layer"),
])
def test_the_check_finds_hidden_and_sideways_imports(tmp_path: Path, source: str, expected: str) -> None:
    """The checker itself: a function-level, a TYPE_CHECKING and a same-layer import are all caught."""
    probe = tmp_path / "accord" / "customers" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source, encoding="utf-8")
    found = violations({"customers": 1, "catalog": 1, "governance": 5, "desk": 5}, [probe], root=tmp_path)
    assert len(found) == 1 and expected in found[0]


def test_relative_imports_are_resolved_to_their_app(tmp_path: Path) -> None:
    probe = tmp_path / "accord" / "customers" / "sub" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ...desk import models\nfrom ..models import Account\n", encoding="utf-8")
    assert imports(probe, tmp_path) == [(1, "accord.desk"), (2, "accord.customers.models")]
