"""The coverage workbook for the office (Chinese headers): per-town coverage
and compliance, progress by responsible unit, and recommended sites. Town
names, notes and unit names come from the store and from office files: they
go through ``outputs.cells`` (``xlsx_row``, and ``save_workbook``'s sweep of
every cell), so none of them runs as a formula."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from geo_service.analysis.coverage import COMPLIANCE_COLUMNS, TOWN_COLUMNS
from geo_service.outputs.cells import save_workbook, table_sheet, xlsx_row

__all__ = ["write_workbook"]


def write_workbook(
    path: Path | IO[bytes], report: dict[str, Any], recommendation: dict[str, Any] | None
):
    book = Workbook()
    header = [zh for _key, zh in TOWN_COLUMNS] + [zh for _item, zh in COMPLIANCE_COLUMNS]
    header += ["全部达标", "人口说明", "其中示例站点"]
    rows = []
    for town in report["towns"]:
        row = [town[key] for key, _zh in TOWN_COLUMNS]
        row += ["是" if town[f"has_{item}"] else "否" for item, _zh in COMPLIANCE_COLUMNS]
        row += ["是" if town["all_met"] else "否", town["population_note"] or ""]
        row += [town["sample_sites"]]
        rows.append(row)
    sheet = table_sheet(book, "镇街覆盖与达标", header, rows, first=True)
    sheet.append([])
    sheet.append([f"覆盖半径 {report['radius_m']:.0f} 米；{report['distance']}"])
    if report.get("sample_note"):
        # Under the table, in the yellow of the map's sample notice: the numbers
        # above include sample sites.
        sheet.append([report["sample_note"]])
        note = sheet.cell(row=sheet.max_row, column=1)
        note.font = Font(bold=True)
        note.fill = PatternFill("solid", fgColor="FFF3CD")
    units = [
        [unit, c["open"], c["planned"], c["suspended"]]
        for unit, c in report["progress_by_unit"].items()
    ]
    table_sheet(book, "责任单位进度", ["责任单位", "正常开放", "筹建中", "暂停服务"], units)
    if recommendation:
        rows = [
            [n, "MCLP", s["lon"], s["lat"], s["town_name"], s["gain"]]
            for n, s in enumerate(recommendation["sites"], start=1)
        ] + [
            [n, "贪心 greedy", s["lon"], s["lat"], s["town_name"], s["gain"]]
            for n, s in enumerate(recommendation["greedy"]["sites"], start=1)
        ]
        sheet = table_sheet(
            book, "选址建议", ["序号", "方法", "经度", "纬度", "所在镇街", "新增覆盖人口"], rows
        )
        sheet.append([])
        sheet.append(
            [
                "覆盖人口",
                f"{recommendation['covered_before']:,} → {recommendation['covered_after']:,}"
                f"（MCLP）；贪心 {recommendation['greedy']['covered_after']:,}",
            ]
        )
        sheet.append(["求解时间（秒）", recommendation["solve_seconds"]])
        for note in recommendation["notes"]:
            sheet.append(xlsx_row(["说明", note]))
    save_workbook(book, path)
