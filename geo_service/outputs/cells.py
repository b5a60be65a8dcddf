"""Spreadsheet cells that stay what they are: text from a user or the store is
never run as a formula, in any CSV or XLSX this service writes.

The rule (OWASP, CSV injection): a text cell that starts with ``=``, ``+``,
``-``, ``@``, a TAB or a CR gets a leading ``'``, so Excel, LibreOffice and
WPS show it as text. Numbers stay numbers: a real negative number is written
as a number, not as text. Every CSV and XLSX writer goes through this module
(``csv_bytes``/``write_csv``/``write_frame_csv`` and ``save_workbook``), and
``tests/test_hostile_outputs.py`` fails if a writer elsewhere appears.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

if TYPE_CHECKING:
    import pandas as pd
    from openpyxl import Workbook

__all__ = [
    "FORMULA_STARTS",
    "csv_bytes",
    "safe_cell",
    "save_workbook",
    "table_sheet",
    "write_csv",
    "write_frame_csv",
    "xlsx_row",
]

#: What makes a spreadsheet read a text cell as a formula (or split it into one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet cell should hold it.

    Text starting like a formula gets a leading ``'``; anything else, and
    every non-text value (numbers, booleans, dates, ``None``), is unchanged.
    Idempotent: a neutralised cell starts with ``'`` and is left alone.

    >>> [safe_cell(v) for v in ("=1+1", "-2+3", "公园街道", -2.5, None)]
    ["'=1+1", "'-2+3", '公园街道', -2.5, None]
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(value) for value in header])
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def csv_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """A CSV file's bytes: UTF-8 with a byte-order mark, so Excel shows the Chinese."""
    return _csv_text(header, rows).encode("utf-8-sig")


def write_csv(path: Path, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """``csv_bytes`` written to ``path``."""
    Path(path).write_bytes(csv_bytes(header, rows))


def write_frame_csv(frame: pd.DataFrame, path: Path) -> None:
    """A pandas table as CSV (UTF-8 with BOM, no index): every text cell made
    safe, numeric and boolean columns written by pandas as numbers."""
    import pandas as pd

    safe = frame.copy()
    for name in safe.columns:
        column = safe[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            safe[name] = column.astype(object).map(safe_cell)
    safe.columns = [safe_cell(name) for name in safe.columns]
    safe.to_csv(path, index=False, encoding="utf-8-sig")


def xlsx_row(values: Iterable[Any]) -> list[Any]:
    """A row for ``sheet.append``: text with the control characters XLSX cannot
    hold shown as U+FFFD (openpyxl refuses them), then made safe."""
    return [
        safe_cell(ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value)
        for value in values
    ]


def table_sheet(
    book: Workbook, title: str, header: list[str], rows: list[list[Any]], *, first: bool = False
):
    """A sheet of ``rows`` under a bold ``header``, every value made safe,
    columns as wide as their text (8 to 40 characters). ``first``: the
    workbook's own first sheet rather than a new one."""
    from openpyxl.styles import Font

    sheet = book.active if first else book.create_sheet()
    sheet.title = title
    sheet.append(xlsx_row(header))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(xlsx_row(row))
    for column in sheet.columns:
        width = max(len(str(c.value or "")) for c in column) + 2
        sheet.column_dimensions[column[0].column_letter].width = min(max(width, 8), 40)
    return sheet


def save_workbook(book: Workbook, path: Path | IO[bytes]) -> None:
    """Save ``book`` (to a file or a binary stream) after making every cell of every sheet safe.

    The sweep is the guard that a new ``sheet.append`` cannot forget: no text
    cell starts like a formula, and no cell is stored as one (openpyxl turns
    any text starting with ``=`` into a formula cell, data type ``f``).
    """
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "f" or isinstance(cell.value, str):
                    cell.value = safe_cell(str(cell.value))
                    cell.data_type = "s"
    book.save(path)
