"""The coverage workbook for the office, to forward as it is: per-town
coverage and compliance, progress by responsible unit, and recommended
sites, in Chinese. Shares are numbers shown as percentages, yes/no is 是/否,
columns fit their text, and the notes under each table say what a reader
would otherwise ask: the reach and walking assumption, where the people come
from (and so why people and area shares agree or not), which sites are not
counted, the sample sites counted, the coordinate system of suggested sites.

Town names, notes and unit names come from the store and from office files:
they go through ``outputs.cells`` (``xlsx_row``, and ``save_workbook``'s
sweep of every cell), so none of them runs as a formula."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook

from geo_service.analysis.coverage import COMPLIANCE_COLUMNS, TOWN_COLUMNS
from geo_service.outputs.cells import append_notes, save_workbook, table_sheet

__all__ = ["SHEETS", "write_workbook"]

#: The sheets, in order (the third only with recommended sites).
SHEETS = ("镇街覆盖与达标", "责任单位进度", "选址建议")
_YES_NO = {True: "是", False: "否"}
_PERCENT, _WHOLE = "0.0%", "#,##0"
#: Number formats by header: shares as percentages, people and metres as whole numbers.
_TOWN_FORMATS = {
    "人口": _WHOLE,
    "覆盖人口比例": _PERCENT,
    "覆盖面积比例": _PERCENT,
    "步行距离中位数(米)": _WHOLE,
    "步行距离90分位(米)": _WHOLE,
    "最远步行距离(米)": _WHOLE,
    "未覆盖网格数": _WHOLE,
}
_STATUS_ZH = {"planned": "筹建中", "suspended": "暂停服务"}
#: The sample notice's yellow, as on the map.
_SAMPLE_FILL = "FFF3CD"
#: The site header's coordinate columns name their system.
SITE_HEADER = ["序号", "方法", "经度（WGS-84）", "纬度（WGS-84）", "所在镇街", "新增覆盖人口"]
CRS_NOTE = (
    "坐标系：WGS-84（EPSG:4326，即 GPS 坐标），经度、纬度以度为单位。"
    "在高德、腾讯地图上标注前需转换为 GCJ-02，在百度地图上需转换为 BD-09。"
)


def _cell(value: Any) -> Any:
    return _YES_NO[value] if isinstance(value, bool) else value


def _population_note(report: dict[str, Any]) -> str:
    """Where the people come from, and so whether people and area shares agree."""
    cell = f"{report['cell_m']:.0f} 米"
    source = report.get("population_source")
    if not source:
        return (
            f"人口：每个镇街的人口总数平均分布到该镇街的 {cell}网格上（未提供人口分布文件），"
            "所以每个镇街的“覆盖人口比例”等于“覆盖面积比例”。"
            "提供社区或网格的人口分布文件（经度、纬度、人口，命令行 --population）后，"
            "人口按实际分布计算，两者会不同。"
        )
    note = (
        f"人口：来自人口分布文件 {source}，每个点或网格的人口计入其所在的 {cell}网格，"
        "所以“覆盖人口比例”按人口实际分布计算，可能与“覆盖面积比例”不同。"
    )
    if report.get("population_outside"):
        note += f"文件中有 {report['population_outside']} 个点在区界外，未计入。"
    return note


def _facilities_note(report: dict[str, Any]) -> str:
    note = f"设施数：只计所选图层中正常开放的站点，共 {report['facilities']} 个。"
    not_open = {k: v for k, v in report.get("not_open", {}).items() if v}
    if not_open:
        parts = "、".join(f"{_STATUS_ZH.get(s, s)} {n} 个" for s, n in not_open.items())
        total = report["facilities"] + sum(not_open.values())
        note += (
            f"另有{parts}未计入，所以合计与图层中的站点总数（{total} 个）不同。"
            "筹建中的站点开放后才计入覆盖和达标。"
        )
    return note


def _town_sheet(book: Workbook, report: dict[str, Any]) -> None:
    header = [zh for _key, zh in TOWN_COLUMNS] + [zh for _item, zh in COMPLIANCE_COLUMNS]
    header += ["全部达标", "人口说明", "其中示例站点"]
    rows = []
    for town in report["towns"]:
        row = [_cell(town[key]) for key, _zh in TOWN_COLUMNS]
        row += [_YES_NO[town[f"has_{item}"]] for item, _zh in COMPLIANCE_COLUMNS]
        row += [_YES_NO[town["all_met"]], town["population_note"] or "", town["sample_sites"]]
        rows.append(row)
    sheet = table_sheet(book, SHEETS[0], header, rows, first=True, formats=_TOWN_FORMATS)
    sheet.append([])
    append_notes(
        sheet,
        [
            f"覆盖范围：步行 {report['radius_m']:.0f} 米以内。{report['distance_zh']}。",
            _population_note(report),
            _facilities_note(report),
            "达标各项只计正常开放的站点，并计入所有图层（不受所选图层限制）。",
        ],
    )
    if report.get("sample_notes"):
        # In the yellow of the map's sample notice: the numbers above include sample sites.
        append_notes(sheet, [report["sample_notes"]["zh"]], fill=_SAMPLE_FILL)


def _site_sheet(book: Workbook, recommendation: dict[str, Any]) -> None:
    def rows(method: str, sites: list[dict[str, Any]]) -> list[list[Any]]:
        return [
            [n, method, s["lon"], s["lat"], s["town_name"], s["gain"]]
            for n, s in enumerate(sites, start=1)
        ]

    greedy = recommendation["greedy"]
    sheet = table_sheet(
        book,
        SHEETS[2],
        SITE_HEADER,
        rows("最大覆盖（MCLP）", recommendation["sites"])
        + rows("贪心算法（对比）", greedy["sites"]),
        formats={
            "经度（WGS-84）": "0.000000",
            "纬度（WGS-84）": "0.000000",
            "新增覆盖人口": _WHOLE,
        },
    )
    sheet.append([])
    append_notes(
        sheet,
        [
            CRS_NOTE,
            f"覆盖人口：{recommendation['covered_before']:,}"
            f"（{recommendation['covered_share_before']:.1%}）→ "
            f"{recommendation['covered_after']:,}（{recommendation['covered_share_after']:.1%}），"
            f"最大覆盖模型（MCLP）；贪心算法 {greedy['covered_after']:,}"
            f"（{greedy['covered_share_after']:.1%}）。",
            f"求解时间：{recommendation['solve_seconds']} 秒。",
            *recommendation["notes_zh"],
        ],
    )


def write_workbook(
    path: Path | IO[bytes], report: dict[str, Any], recommendation: dict[str, Any] | None
) -> None:
    """The workbook of a coverage report (and a recommendation, if any) to ``path``."""
    book = Workbook()
    _town_sheet(book, report)
    units = [
        [unit, c["open"], c["planned"], c["suspended"], c["open"] + c["planned"] + c["suspended"]]
        for unit, c in report["progress_by_unit"].items()
    ]
    table_sheet(book, SHEETS[1], ["责任单位", "正常开放", "筹建中", "暂停服务", "合计"], units)
    if recommendation:
        _site_sheet(book, recommendation)
    save_workbook(book, path)
