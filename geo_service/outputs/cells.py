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
import math
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

if TYPE_CHECKING:
    import pandas as pd
    from openpyxl import Workbook

__all__ = [
    "FORMULA_STARTS",
    "append_notes",
    "csv_bytes",
    "display_width",
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


def display_width(value: Any) -> int:
    """How many character widths ``value`` takes in a spreadsheet column: a
    CJK (wide) character counts two, as Excel and WPS draw it.

    >>> display_width("镇街代码"), display_width("P90"), display_width(None)
    (8, 3, 0)
    """
    text = "" if value is None else str(value)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _shown(value: Any, number_format: str) -> str:
    """The text a spreadsheet shows for ``value`` in ``number_format`` (the
    formats this service uses), to size the column by."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if number_format.endswith("%"):
        return f"{value:.1%}"
    if number_format.startswith("#,##0"):
        return f"{value:,.0f}"
    return str(value)


def table_sheet(
    book: Workbook,
    title: str,
    header: list[str],
    rows: list[list[Any]],
    *,
    first: bool = False,
    formats: dict[str, str] | None = None,
):
    """A sheet of ``rows`` under a bold, frozen ``header``, every value made
    safe, numbers shown in ``formats`` (header -> number format, e.g.
    ``"0.0%"``), columns as wide as their widest shown text (CJK counting
    double, 8 to 40 widths). ``first``: the workbook's own first sheet rather
    than a new one."""
    from openpyxl.styles import Alignment, Font

    sheet = book.active if first else book.create_sheet()
    sheet.title = title
    sheet.append(xlsx_row(header))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(vertical="center")
    for row in rows:
        sheet.append(xlsx_row(row))
    formats = formats or {}
    for column, name in zip(
        sheet.iter_cols(min_row=1, max_row=sheet.max_row), header, strict=False
    ):
        number_format = formats.get(name)
        if number_format:
            for cell in column[1:]:
                cell.number_format = number_format
        width = max(display_width(_shown(c.value, number_format or "")) for c in column) + 2
        sheet.column_dimensions[column[0].column_letter].width = min(max(width, 8), 40)
    sheet.freeze_panes = "A2"
    return sheet


def append_notes(sheet, notes: Iterable[str], *, fill: str | None = None) -> None:
    """Notes under a table, each in column A merged across the table's width
    and wrapped, so a long note stays on the page instead of running off to
    the right (``fill``: a background colour such as ``"FFF3CD"``)."""
    from openpyxl.styles import Alignment, PatternFill

    last = max(sheet.max_column, 1)
    span = sum(
        sheet.column_dimensions[sheet.cell(row=1, column=c).column_letter].width or 8
        for c in range(1, last + 1)
    )
    for note in notes:
        sheet.append(xlsx_row([note]))
        row = sheet.max_row
        cell = sheet.cell(row=row, column=1)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        if fill:
            cell.fill = PatternFill("solid", fgColor=fill)
        if last > 1:
            sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=last)
        lines = math.ceil(display_width(note) / max(span - 2, 10))
        sheet.row_dimensions[row].height = 16 * max(lines, 1)


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
