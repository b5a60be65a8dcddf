"""The import template: an XLSX a town office fills in and imports as it is.

The first sheet holds the headers the importer understands and drop-downs
for the columns with fixed values; the "说明" sheet explains each column,
the ways to write opening hours, and shows an example row (only there, so
an example is never imported); a hidden "选项" sheet holds the drop-down
lists, so they are not bounded by Excel's 255 characters of an inline list.
Town and layer names come from the store and the catalog: every cell goes
through ``outputs.cells`` (``xlsx_row``, ``save_workbook``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from geo_service.outputs.cells import save_workbook, xlsx_row

__all__ = [
    "CHOICES_SHEET",
    "GUIDE_SHEET",
    "TEMPLATE_ROWS",
    "TemplateColumn",
    "TemplateSpec",
    "render_import_template",
]

GUIDE_SHEET = "说明"
CHOICES_SHEET = "选项"
#: Rows of the first sheet that get the drop-downs (an office file has tens to hundreds).
TEMPLATE_ROWS = 1000

_REQUIRED_FILL = PatternFill("solid", fgColor="FCE4D6")
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")


@dataclass(frozen=True)
class TemplateColumn:
    """One column of the template: its header and what to write in it."""

    header: str
    meaning: str
    required: bool = False
    #: The values of its drop-down (none: free text).
    choices: tuple[str, ...] = ()
    example: Any = None


@dataclass(frozen=True)
class TemplateSpec:
    """Everything the workbook shows; assembled by ``services.import_template``."""

    layer_title: str
    columns: Sequence[TemplateColumn]
    hour_forms: Sequence[tuple[str, str]]  # (as written, as stored)
    notes: Sequence[str] = field(default_factory=tuple)
    #: Lists shown in 说明 without a drop-down (several values per cell).
    value_lists: Sequence[tuple[str, Sequence[str]]] = field(default_factory=tuple)
    #: (name, 9-digit code) of the stored towns: either may be written.
    towns: Sequence[tuple[str, str]] = field(default_factory=tuple)


def render_import_template(spec: TemplateSpec) -> bytes:
    """The template as XLSX bytes: the data sheet, 说明, and the hidden 选项.

    >>> name = TemplateColumn("名称", "站点的正式名称", required=True)
    >>> render_import_template(TemplateSpec("服务站点", [name], hour_forms=[]))[:2]
    b'PK'
    """
    book = Workbook()
    data = book.active
    data.title = spec.layer_title[:31]
    _guide_sheet(book.create_sheet(GUIDE_SHEET), spec)
    choices = book.create_sheet(CHOICES_SHEET)
    choices.sheet_state = "hidden"  # the lists behind the drop-downs, not for editing
    _data_sheet(data, choices, spec.columns)
    buffer = io.BytesIO()
    save_workbook(book, buffer)
    return buffer.getvalue()


def _data_sheet(sheet, choices, columns: Sequence[TemplateColumn]) -> None:
    sheet.append(xlsx_row(column.header for column in columns))
    sheet.freeze_panes = "A2"
    lists = [column for column in columns if column.choices]
    for list_number, column in enumerate(lists, start=1):
        choices.cell(row=1, column=list_number, value=xlsx_row([column.header])[0])
        for row, value in enumerate(column.choices, start=2):
            choices.cell(row=row, column=list_number, value=xlsx_row([value])[0])
    for number, column in enumerate(columns, start=1):
        letter = get_column_letter(number)
        cell = sheet.cell(row=1, column=number)
        cell.font = Font(bold=True)
        cell.fill = _REQUIRED_FILL if column.required else _HEADER_FILL
        sheet.column_dimensions[letter].width = max(10, min(2 * len(column.header) + 6, 30))
        if column.choices:
            list_letter = get_column_letter(lists.index(column) + 1)
            last = len(column.choices) + 1
            source = f"{quote_sheetname(CHOICES_SHEET)}!${list_letter}$2:${list_letter}${last}"
            validation = DataValidation(
                type="list",
                formula1=source,
                allow_blank=True,
                showErrorMessage=True,
                errorTitle=f"{column.header}填写有误",
                error=f"请从下拉列表中选择{column.header}",
                promptTitle=column.header,
                prompt=column.meaning[:255],
                showInputMessage=True,
            )
            validation.add(f"{letter}2:{letter}{TEMPLATE_ROWS + 1}")
            sheet.add_data_validation(validation)


def _guide_sheet(sheet, spec: TemplateSpec) -> None:
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")

    def heading(text: str) -> None:
        if sheet.max_row > 1:
            sheet.append([])
        sheet.append(xlsx_row([text]))
        sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True, size=12)

    def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        sheet.append(xlsx_row(header))
        for cell in sheet[sheet.max_row]:
            cell.font = bold
            cell.fill = _HEADER_FILL
        for row in rows:
            sheet.append(xlsx_row(row))
            for cell in sheet[sheet.max_row]:
                cell.alignment = wrap

    sheet.append(xlsx_row([f"{spec.layer_title}导入模板：填写说明"]))
    sheet.cell(row=1, column=1).font = Font(bold=True, size=14)
    for note in spec.notes:
        sheet.append(xlsx_row([note]))
    heading("各列说明")
    table(
        ["列名", "是否必填", "填写说明", "可选值"],
        [
            [c.header, "必填" if c.required else "选填", c.meaning, "、".join(c.choices)]
            for c in spec.columns
        ],
    )
    heading("开放时间的写法（导入后存为 OpenStreetMap 格式，可计算“是否正在开放”）")
    table(["可以这样写", "存为"], [list(form) for form in spec.hour_forms])
    for title, values in spec.value_lists:
        heading(title)
        sheet.append(xlsx_row(["、".join(values)]))
    if spec.towns:
        heading("镇街名称与代码（所属镇街填名称或代码都可以）")
        table(["镇街名称", "镇街代码"], [list(town) for town in spec.towns])
    heading("示例（只在这张说明表里，导入时不读；请在第一张表从第2行起填写）")
    table(
        [c.header for c in spec.columns],
        [[c.example for c in spec.columns]],
    )
    for letter, width in zip("ABCD", (16, 10, 60, 40), strict=True):
        sheet.column_dimensions[letter].width = width
