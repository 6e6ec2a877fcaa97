"""Reading CSV files for imports: decoding, the header check, rows with their line numbers, formula cells.

Shared by every importer (accounts and contacts in customers, orders in insight, ...). An app registers its
importers in `settings.ACCORD_CSV_IMPORTERS` (subject -> dotted path), so `accord import SUBJECT FILE.csv`
knows them all without this module, or the command, importing any app.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string


class CsvFileError(Exception):
    """The file as a whole cannot be imported (nothing was written)."""


class RecordError(ValueError):
    """A record that is not valid CSV (an unclosed quote ...), with the line it starts on."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem


class RowError(ValueError):
    """One row cannot be imported; the message says why."""


@dataclass
class ImportReport:
    """What an import did, with every rejected row."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    written: bool = True

    def summary(self) -> str:
        return (
            f"imported {self.created}, updated {self.updated}, rejected {len(self.rejected)}"
            f" (unchanged {self.unchanged})"
        )

    def refused(self, strict: bool, *, roll_back: bool = True) -> bool:
        """Rejections in line order; under --strict, any of them stops the import: True, and nothing is written
        (with `roll_back`, the import's own transaction, open around this call, is rolled back)."""
        self.rejected.sort()
        if not (strict and self.rejected):
            return False
        self.written = False
        if roll_back:
            transaction.set_rollback(True)
        return True


def decode(data: bytes, encoding: str = "utf-8") -> str:
    """Bytes to text; a byte that is not valid in the encoding is reported with its line.

    Decoded first, checked after: UTF-16 text is full of NUL bytes that are not NUL characters. A file that
    starts with a UTF-16 byte order mark is read as UTF-16 even without --encoding.
    """
    if not data.strip():
        raise CsvFileError("the file is empty: it needs at least a header row")
    name = encoding.lower().replace("_", "-")
    if name in ("utf-8", "utf8"):
        name = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        text = data.decode(name)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CsvFileError(
            f"line {line}: byte 0x{data[e.start]:02x} is not valid {encoding}; "
            "save the file as UTF-8, or name its encoding with --encoding (e.g. --encoding cp1252)"
        ) from None
    except LookupError:
        raise CsvFileError(f"unknown encoding '{encoding}'") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CsvFileError(f"line {line}: the file contains NUL characters; it is not a CSV text file "
                           "(if it is UTF-16 without a byte order mark, give --encoding utf-16-le or utf-16-be)")
    if not text.strip():
        raise CsvFileError("the file is empty: it needs at least a header row")
    return text


# A cell that starts with one of these is run as a formula by spreadsheets (OWASP "CSV injection"): on export it
# gets a leading apostrophe, which spreadsheets show as text; on import that apostrophe is taken off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def escape_cell(value: str) -> str:
    """A cell as exported: text that a spreadsheet would run as a formula is prefixed with an apostrophe."""
    if value.startswith(FORMULA_STARTS) and not _NUMBER.match(value):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """A cell as imported: the apostrophe `escape_cell` put before a formula character is taken off."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def records(lines: Iterable[str], *, strict: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields) of CSV text, the first record on line 1, blank lines skipped;
    a record that is not valid CSV raises RecordError with its line (a quoted field may span lines)."""
    reader = csv.reader(lines, strict=strict)
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise RecordError(start, str(e)) from None
        line, start = start, reader.line_num + 1
        if record and not (len(record) == 1 and not record[0].strip()):
            yield line, record


def rows(text: str, columns: list[str], required: set[str],
         prefixes: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number where the record starts, row as a dict), after checking the header. A column starting with one
    of `prefixes` (e.g. `custom.`) is known too; the importer checks what follows the prefix."""
    found = records(io.StringIO(text, newline=""))
    try:
        first_line, header = next(found)
    except StopIteration:
        raise CsvFileError("the file is empty: it needs at least a header row") from None
    except RecordError as e:
        raise CsvFileError(str(e)) from None
    if first_line != 1:
        raise CsvFileError("line 1: the header row is missing (the file starts with a blank line)")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c in required and c not in header]
    if missing:
        raise CsvFileError(f"line 1: missing required column(s): {', '.join(missing)} (expected: {', '.join(columns)})")
    unknown = [h for h in header if h not in columns and not any(h.startswith(p) and h != p for p in prefixes)]
    if unknown:
        also = "".join(f", {p}<key>" for p in prefixes)
        raise CsvFileError(
            f"line 1: unknown column(s): {', '.join(repr(u) for u in unknown)}; known columns are {', '.join(columns)}"
            f"{also}"
        )
    seen = set()
    for h in header:
        if h in seen:
            raise CsvFileError(f"line 1: column '{h}' appears twice")
        seen.add(h)
    while True:
        try:
            line, record = next(found)
        except StopIteration:
            return
        except RecordError as e:
            raise CsvFileError(str(e)) from None
        if len(record) != len(header):
            yield line, {"__error__": f"expected {len(header)} fields, found {len(record)}"}
            continue
        yield line, dict(zip(header, (unescape_cell(v.strip()) for v in record), strict=True))


def progress_bar(total: int, enabled: bool) -> Any:
    """A progress bar over `total` rows on standard error (tqdm), or a silent one."""
    from tqdm import tqdm  # only the commands that import need it

    return tqdm(total=total, unit="row", disable=not enabled, file=sys.stderr)



def importers() -> dict[str, Callable[..., ImportReport]]:
    """The registered importers by subject (settings.ACCORD_CSV_IMPORTERS), each `f(data, *, strict, encoding,
    progress) -> ImportReport`."""
    return {subject: import_string(dotted) for subject, dotted in settings.ACCORD_CSV_IMPORTERS.items()}
