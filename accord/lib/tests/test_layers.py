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
            # `from package import name`: the name may be a module of the package (`from . import mail`)
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def code_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "tests" not in p.relative_to(PACKAGE).parts)


def violations(layers: dict[str, int], files: list[Path], root: Path = ROOT) -> list[str]:
    """Every import from a module to an app of its own layer or a higher one, as 'file:line: what'."""
    out = []
    for path in files:
        own = app_of(module_name(path, root))
        assert own is not None
        seen = set()
        for line, module in imports(path, root):
            other = app_of(module)
            if other is None or other == own or (line, other) in seen:
                continue
            seen.add((line, other))
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
    assert imports(probe, tmp_path) == [(1, "accord.desk"), (1, "accord.desk.models"), (2, "accord.customers.models"),
                                        (2, "accord.customers.models.Account")]


def cycles(files: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (any import, anywhere)."""
    names = {module_name(p, root) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        own = module_name(path, root)
        targets = set()
        for _line, module in imports(path, root):
            # `from package import module` names a module too: take the longest known prefix
            parts = module.split(".")
            for n in range(len(parts), 1, -1):
                if ".".join(parts[:n]) in names:
                    targets.add(".".join(parts[:n]))
                    break
        graph[own] = targets - {own}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_modules_import_each_other_round_a_circle() -> None:
    packages = {module_name(p) for p in code_files() if p.name == "__init__.py"}
    assert [c for c in cycles(code_files()) if not set(c) & packages] == []


def test_the_cycle_check_finds_a_circle_through_a_function_import(tmp_path: Path) -> None:
    app = tmp_path / "accord" / "desk"
    app.mkdir(parents=True)
    (app / "a.py").write_text("from . import b\n", encoding="utf-8")
    (app / "b.py").write_text("def f():\n    from .a import x\n", encoding="utf-8")
    (app / "c.py").write_text("from .a import y\n", encoding="utf-8")
    files = [app / "a.py", app / "b.py", app / "c.py"]
    assert cycles(files, tmp_path) == [["accord.desk.a", "accord.desk.b"]]
