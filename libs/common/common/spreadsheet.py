"""Spreadsheets the platform writes never execute: cells a spreadsheet would read as a formula are neutralised.

Following OWASP's CSV-injection guidance, a CSV cell starting with `=`, `+`, `-`, `@`, TAB or CR (or their full-width
forms, which Chinese input methods produce and spreadsheet software accepts) gets a leading single quote; a leading
quote that could otherwise be mistaken for one added here is doubled, so `restore` gives back exactly what was stored
and an export re-imports unchanged. XLSX cells are written as strings (never formulas), marked quote-prefixed so a
spreadsheet keeps them text when edited; their text is the value itself (less what XML cannot hold: control
characters become U+FFFD and a bare carriage return reads back as a line feed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

FORMULA_STARTS = frozenset("=+-@\t\r＝＋－＠")
QUOTE = "'"


def _quoted(text: str) -> bool:
    """Whether `text` starts with a quote `neutralise` added (a quote before a formula start or before a quote)."""
    return len(text) >= 2 and text[0] == QUOTE and (text[1] in FORMULA_STARTS or text[1] == QUOTE)


def neutralise(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: strings that would start a formula get a leading quote (others and
    non-strings, such as numbers, are returned as they are)."""
    if isinstance(value, str) and value and (value[0] in FORMULA_STARTS or _quoted(value)):
        return QUOTE + value
    return value


def restore(text: str) -> str:
    """The stored value of a CSV cell `neutralise` wrote (the inverse: exact for every string)."""
    return text[1:] if _quoted(text) else text


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]], *, bom: bool = True,
             lineterminator: str = "\r\n") -> str:
    """A CSV document (UTF-8 BOM first, so spreadsheet software reads Chinese) with every cell neutralised."""
    buf = io.StringIO()
    if bom:
        buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator=lineterminator)
    writer.writerow([neutralise(h) for h in header])
    writer.writerows([neutralise(v) for v in row] for row in rows)
    return buf.getvalue()


def csv_from_dicts(fields: list[str], rows: Iterable[Mapping[str, Any]], **kw: Any) -> str:
    """`csv_text` of dicts, one column per field (missing keys empty, extra keys ignored)."""
    return csv_text(fields, ([r.get(f, "") if r.get(f) is not None else "" for f in fields] for r in rows), **kw)


def xlsx_cells(ws: Any, values: Iterable[Any]) -> list[Any]:
    """One row for a write-only openpyxl sheet: strings as text cells (never formulas; control characters, which
    XLSX cannot hold, as U+FFFD), quote-prefixed when they would start a formula; other values as they are."""
    cells = []
    for value in values:
        if not isinstance(value, str):
            cells.append(value)
            continue
        cell = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
        cell.data_type = "s"
        if value[:1] in FORMULA_STARTS:
            cell.quotePrefix = True
        cells.append(cell)
    return cells
