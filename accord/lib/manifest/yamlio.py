"""Reading and writing manifest YAML: safe, exact decimals, every duplicate key reported, and bounded.

Bounded because a manifest is input from people and from pipelines: a 724-byte file of nested anchors
("billion laughs") expands to gigabytes once something walks it. The text is capped in size, and the
document's expanded size (aliases counted every time they are used) is capped in nodes before anything
validates or prints it; anchors and merge keys (`<<: *defaults`) within those bounds keep working.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000


class ManifestError(Exception):
    """The manifest cannot be applied; `errors` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ManifestSyntaxError(ManifestError):
    """The file is not valid YAML (a syntax error or a duplicate key); lines read 'file:line:column: problem'."""


class _Loader(yaml.SafeLoader):
    """Safe YAML with exact decimals, dates checked by the schema, and every duplicate key reported."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.duplicates: list[tuple[int, int, str]] = []


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)  # 99.95 stays 99.95, not 99.9500000000000028...
    except InvalidOperation:
        return float(loader.construct_yaml_float(node))  # .inf, .nan: refused later as not finite


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """A plain date stays a date; anything else (2026-13-01, a date with a time) stays the text the user wrote."""
    text = str(loader.construct_scalar(node))
    try:
        value = loader.construct_yaml_timestamp(node)
    except ValueError:
        return text
    return text if isinstance(value, dt.datetime) else value


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` may be overridden by the keys written next to it
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        try:
            seen = key in first_line
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", mark
            ) from None
        if seen:
            loader.duplicates.append((
                mark.line, mark.column,
                f"{loader.source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} (first on line {first_line[key]})",
            ))
        else:
            first_line[key] = mark.line + 1
    loader.flatten_mapping(node)
    try:
        return dict(loader.construct_pairs(node, deep=True))
    except TypeError:
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", node.start_mark, "found an unhashable key", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def expanded_nodes(node: yaml.Node, limit: int) -> int:
    """How many nodes the document has once every alias is expanded, counting shared nodes once per use
    but visiting each only once (so a bomb is measured in microseconds); stops counting past `limit`."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        known = sizes.get(id(n))
        if known is not None:
            return known
        sizes[id(n)] = 1  # a recursive alias counts once instead of looping
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += size(child)
                if total > limit:
                    break
        sizes[id(n)] = total
        return total

    return size(node)


def read_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; raises ManifestSyntaxError with 'source:line:column: problem' lines."""
    return _read(text, source, several=False)


def read_yaml_documents(text: str, source: str = "<string>") -> list[Any]:
    """Parse a stream of `---`-separated YAML documents (OpenSLO files, Kubernetes style) within the same bounds:
    the text's size, and the expanded size of all documents together; empty documents are left out."""
    return list(_read(text, source, several=True))


def _read(text: str, source: str, *, several: bool) -> Any:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ManifestSyntaxError([f"{source}: {size:,} bytes; a manifest may have at most {MAX_BYTES:,} "
                                   "(split it into several files and give -f for each)"])
    loader: _Loader | None = None
    try:
        loader = _Loader(text, source)  # checks for unprintable characters already
        if several:
            documents, total = [], 0
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                total += expanded_nodes(node, MAX_NODES)
                if total > MAX_NODES:
                    raise ManifestSyntaxError([f"{source}: the documents expand to more than {MAX_NODES:,} values "
                                               "(anchors and aliases count each time they are used); nothing was read"])
                document = loader.construct_document(node)
                if document is not None:
                    documents.append(document)
            data: Any = documents
        else:
            node = loader.get_single_node()
            if node is None:
                return None
            nodes = expanded_nodes(node, MAX_NODES)
            if nodes > MAX_NODES:
                raise ManifestSyntaxError([f"{source}: the document expands to more than {MAX_NODES:,} values "
                                           "(anchors and aliases count each time they are used); nothing was read"])
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = e.problem or "not valid YAML"
        if e.context and problem.startswith("but "):  # "expected a single document ..., but found another"
            problem = f"{e.context}, {problem}"
        raise ManifestSyntaxError([f"{where}: {problem}"]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise ManifestSyntaxError(
            [f"{source}:{line}:{column}: character #x{e.character:04x} is not allowed in YAML"]
        ) from None
    except yaml.YAMLError as e:
        raise ManifestSyntaxError([f"{source}: {' '.join(str(e).split())}"]) from None
    except RecursionError:
        raise ManifestSyntaxError([f"{source}: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ManifestSyntaxError([line for _row, _col, line in sorted(loader.duplicates)])
    return data


class _Dumper(yaml.SafeDumper):
    """Block style, decimals as plain numbers, short lists of scalars inline."""


def _represent_decimal(dumper: _Dumper, value: Decimal) -> yaml.ScalarNode:
    text = format(value, "f")
    tag = "tag:yaml.org,2002:int" if "." not in text else "tag:yaml.org,2002:float"
    return dumper.represent_scalar(tag, text)


def _represent_list(dumper: _Dumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(not isinstance(v, dict | list) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_representer(list, _represent_list)


def dump(data: Any, *, inline: bool = False) -> str:
    """YAML as the export writes it (block style), or one flow-style line (`inline`) for change summaries."""
    if inline:
        return yaml.dump(data, Dumper=_Dumper, default_flow_style=True, width=1_000_000, allow_unicode=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
