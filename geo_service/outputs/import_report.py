"""The import's row-by-row report: a table on screen, a CSV or XLSX file on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geo_service.errors import InvalidParameter
from geo_service.outputs.cells import save_workbook, write_csv, xlsx_row
from geo_service.sources.importing import ImportPlan, RowStatus

__all__ = ["print_report", "write_report"]

COLUMNS = ["行号 line", "状态 status", "编号 id", "名称 name", "操作 action", "原因 reasons"]
#: Past this many rows the screen shows only rows with something to say.
SCREEN_ROWS = 200
_STYLE = {RowStatus.ok: "green", RowStatus.warning: "yellow", RowStatus.error: "bold red"}


def _cells(row) -> list[str]:
    return [
        str(row.line) if row.line else "-",
        row.status.value,
        row.id or "",
        row.name or "",
        row.action,
        "; ".join(row.reasons),
    ]


def print_report(plan: ImportPlan, console: Console) -> None:
    for note in plan.notes:
        console.print(f"· {escape(note)}")
    rows = plan.rows
    if len(rows) > SCREEN_ROWS:
        rows = [r for r in rows if r.status != RowStatus.ok]
        console.print(f"· {len(plan.rows)} rows: showing the {len(rows)} with warnings or errors")
    table = Table(title=f"import {escape(plan.source)} → {plan.layer_id}")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [escape(cell) for cell in _cells(row)]  # file text is not markup
        cells[1] = f"[{_STYLE[row.status]}]{cells[1]}[/]"
        table.add_row(*cells)
    console.print(table)
    counts = plan.counts()
    console.print(
        f"{counts['OK']} OK, {counts['warning']} with warnings, {counts['error']} with errors"
    )
    for line in plan.summary():
        console.print(f"· {escape(line)}")


def _file_cells(row) -> list[Any]:
    """A row of the file: the line a number (blank for rows of no line), the
    rest as on screen; ``outputs.cells`` keeps the text from running as formulas."""
    return [row.line or None, *_cells(row)[1:]]


def write_report(plan: ImportPlan, path: Path) -> None:
    """CSV (UTF-8 with BOM, so Excel shows the Chinese) or XLSX, by extension."""
    suffix = path.suffix.lower()
    rows = [_file_cells(row) for row in plan.rows]
    if suffix == ".csv":
        write_csv(path, COLUMNS, rows)
    elif suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "import report"
        sheet.append(COLUMNS)
        for row in rows:
            sheet.append(xlsx_row(row))
        for column, width in zip("ABCDEF", (8, 10, 22, 30, 10, 80), strict=True):
            sheet.column_dimensions[column].width = width
        save_workbook(book, path)
    else:
        raise InvalidParameter("report", f"write the report as .csv or .xlsx, not {suffix!r}")
