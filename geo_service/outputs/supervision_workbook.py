"""The supervision (督办) workbook: a sheet per view, Chinese headers.

镇街达标 (each town, each item of the 2022 opinion: count and met or not,
with the sample sites counted), 责任单位进度 (each unit's sites by status)
and 变化 (what changed since the earlier date). Town and unit names come
from the store: every row goes through ``outputs.cells`` (``xlsx_row``, and
``save_workbook``'s sweep), so none of them runs as a formula. A pure
renderer: the report in, the file's bytes out.
"""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook

from geo_service.outputs.cells import save_workbook, table_sheet, xlsx_row

__all__ = ["SHEETS", "supervision_workbook"]

#: The sheets, in order.
SHEETS = ("镇街达标", "责任单位进度", "变化")
_STATUS_ZH = {"open": "正常开放", "planned": "筹建中", "suspended": "暂停服务"}
_YES_NO = {True: "是", False: "否"}


def _notes(sheet, report: dict[str, Any], samples: dict[str, Any]) -> None:
    sheet.append([])
    sheet.append(xlsx_row(["截至", f"{report['as_of']}（{report['time_zone']}）"]))
    sheet.append(xlsx_row(["示例站点", samples["note"]]))


def supervision_workbook(report: dict[str, Any]) -> bytes:
    """The workbook of ``services.supervision.supervision_report``, as bytes."""
    book = Workbook()
    items = report["items"]
    header = ["镇街代码", "镇街"]
    for item in items:
        header += [f"{item['name']}（个）", f"{item['name']}达标"]
    header += ["达标项数", "全部达标", "计入的示例站点（个）"]
    rows = []
    for town in report["towns"]:
        row = [town["town_code"], town["town_name"]]
        for item in items:
            row += [town["counts"][item["item"]], _YES_NO[town["meets"][item["item"]]]]
        row += [
            f"{town['items_met']}/{len(items)}",
            _YES_NO[town["all_met"]],
            town["sample_sites_counted"],
        ]
        rows.append(row)
    _notes(table_sheet(book, SHEETS[0], header, rows, first=True), report, report["samples"])

    units = [
        [
            unit["responsible_unit"],
            unit["open"],
            unit["planned"],
            unit["suspended"],
            unit["total"],
            unit["sample_sites"],
        ]
        for unit in report["units"]
    ]
    header = ["责任单位", "正常开放", "筹建中", "暂停服务", "合计", "其中示例站点"]
    _notes(table_sheet(book, SHEETS[1], header, units), report, report["samples"])

    header = [
        "类别",
        "镇街代码",
        "镇街或责任单位",
        "项目或状态",
        "比较日数量",
        "截至日数量",
        "达标变化",
    ]
    rows = []
    changes = report["changes"]
    if changes is not None:
        for change in changes["towns"]:
            met = (
                f"{_YES_NO[change['met_before']]} → {_YES_NO[change['met_after']]}"
                if change["met_before"] != change["met_after"]
                else "不变"
            )
            rows.append(
                [
                    "镇街达标",
                    change["town_code"],
                    change["town_name"],
                    change["item_name"],
                    change["count_before"],
                    change["count_after"],
                    met,
                ]
            )
        for change in changes["units"]:
            rows.append(
                [
                    "责任单位进度",
                    "",
                    change["responsible_unit"],
                    _STATUS_ZH.get(change["status"], change["status"]),
                    change["before"],
                    change["after"],
                    "",
                ]
            )
    sheet = table_sheet(book, SHEETS[2], header, rows)
    sheet.append([])
    if report["since"] is None:
        sheet.append(xlsx_row(["比较日", "未指定（since / --since）：没有比较"]))
    else:
        sheet.append(xlsx_row(["比较日", f"{report['since']['date']}（{report['time_zone']}）"]))
        sheet.append(xlsx_row(["截至日", report["as_of"]]))
        if not rows:
            sheet.append(xlsx_row(["结果", "两个日期之间没有变化"]))
        sheet.append(xlsx_row(["比较日示例站点", report["since"]["samples"]["note"]]))
    buffer = io.BytesIO()
    save_workbook(book, buffer)
    return buffer.getvalue()
