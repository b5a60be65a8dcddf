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

__all__ = ["SHEETS", "SHEETS_EN", "WORDS", "write_workbook"]

#: The sheets, in order (the third only with recommended sites), per language.
SHEETS = ("镇街覆盖与达标", "责任单位进度", "选址建议")
SHEETS_EN = ("Towns", "Responsible units", "Suggested sites")
_PERCENT, _WHOLE, _DEGREES = "0.0%", "#,##0", "0.000000"
#: The sample notice's yellow, as on the map.
_SAMPLE_FILL = "FFF3CD"

#: Per-town columns in English (the Chinese are the analysis's ``TOWN_COLUMNS``).
_TOWN_EN = {
    "town_code": "Town code",
    "town_name": "Town",
    "facilities": "Facilities",
    "population": "People",
    "population_estimated": "People estimated",
    "population_covered_share": "People covered",
    "area_covered_share": "Area covered",
    "median_distance_m": "Median walk (m)",
    "p90_distance_m": "90th percentile walk (m)",
    "max_distance_m": "Longest walk (m)",
    "uncovered_cells": "Uncovered cells",
}
_ITEMS_EN = {
    "station": "Town station",
    "support_post": "Support post",
    "education_site": "Defence-education site",
    "health": "Health station or partner pharmacy",
    "green_channel": "Green-channel window",
}
#: Number formats by column key: shares as percentages, people and metres whole.
_TOWN_FORMATS = {
    "population": _WHOLE,
    "population_covered_share": _PERCENT,
    "area_covered_share": _PERCENT,
    "median_distance_m": _WHOLE,
    "p90_distance_m": _WHOLE,
    "max_distance_m": _WHOLE,
    "uncovered_cells": _WHOLE,
}

#: Every other text of the workbook, per language ({placeholders} filled in).
WORDS = {
    "zh": {
        "yes": "是",
        "no": "否",
        "all_met": "全部达标",
        "people_note": "人口说明",
        "samples": "其中示例站点",
        "estimated": None,  # the analysis's own (Chinese) note
        "from_file": None,
        "units": ["责任单位", "正常开放", "筹建中", "暂停服务", "合计"],
        "sites": ["序号", "方法", "经度（WGS-84）", "纬度（WGS-84）", "所在镇街", "新增覆盖人口"],
        "mclp": "最大覆盖（MCLP）",
        "greedy": "贪心算法（对比）",
        "reach": "覆盖范围：步行 {r} 米以内。{distance}。",
        "even": "人口：每个镇街的人口总数平均分布到该镇街的 {cell} 米网格上（未提供人口分布文件），"
        "所以每个镇街的“覆盖人口比例”等于“覆盖面积比例”。"
        "提供社区或网格的人口分布文件（经度、纬度、人口，命令行 --population）后，"
        "人口按实际分布计算，两者会不同。",
        "file": "人口：来自人口分布文件 {source}，每个点或网格的人口计入其所在的 {cell} 米网格，"
        "所以“覆盖人口比例”按人口实际分布计算，可能与“覆盖面积比例”不同。",
        "outside": "文件中有 {n} 个点在区界外，未计入。",
        "facilities": "设施数：只计所选图层中正常开放的站点，共 {n} 个。",
        "not_open": "另有{parts}未计入，所以合计与图层中的站点总数（{total} 个）不同。"
        "筹建中的站点开放后才计入覆盖和达标。",
        "status": {"planned": "筹建中 {n} 个", "suspended": "暂停服务 {n} 个"},
        "joiner": "、",
        "compliance": "达标各项只计正常开放的站点，并计入所有图层（不受所选图层限制）。",
        "crs": "坐标系：WGS-84（EPSG:4326，即 GPS 坐标），经度、纬度以度为单位。"
        "在高德、腾讯地图上标注前需转换为 GCJ-02，在百度地图上需转换为 BD-09。",
        "covered": "覆盖人口：{before}（{share_before}）→ {after}（{share_after}），"
        "最大覆盖模型（MCLP）；贪心算法 {greedy}（{share_greedy}）。",
        "solve": "求解时间：{s} 秒。",
    },
    "en": {
        "yes": "yes",
        "no": "no",
        "all_met": "All met",
        "people_note": "About the people figure",
        "samples": "Sample sites counted",
        "estimated": "No figure: the median of the towns with figures stands in",
        "from_file": "From the population file {source}",
        "units": ["Responsible unit", "Open", "Planned", "Suspended", "Total"],
        "sites": [
            "No.",
            "Method",
            "Longitude (WGS-84)",
            "Latitude (WGS-84)",
            "Town",
            "People added",
        ],
        "mclp": "Maximal covering (MCLP)",
        "greedy": "Greedy (for comparison)",
        "reach": "Reach: within a {r} m walk. {distance}.",
        "even": "People: each town's total spread evenly over its {cell} m cells (no population "
        "file given), so in every town the share of people covered equals the share of area "
        "covered. With a population file of communities or cells (longitude, latitude, people; "
        "--population), people are counted where they live and the two differ.",
        "file": "People: from the population file {source}, each point's or cell's people in the "
        "{cell} m cell it falls in, so the share of people covered follows where people live "
        "and may differ from the share of area.",
        "outside": "{n} points of the file lie outside the district and are left out.",
        "facilities": "Facilities: only the open sites of the chosen layers count, {n} in all.",
        "not_open": "Not counted: {parts}, so the total differs from the layers' count "
        "({total}). A planned site counts once it opens.",
        "status": {"planned": "{n} planned", "suspended": "{n} suspended"},
        "joiner": ", ",
        "compliance": "Each item of the 2022 opinion counts open sites of every layer, whatever "
        "layers were chosen.",
        "crs": "Coordinates: WGS-84 (EPSG:4326, as GPS gives them), longitude and latitude in "
        "degrees. Convert to GCJ-02 before pinning them on Amap or Tencent maps, to BD-09 for "
        "Baidu.",
        "covered": "People covered: {before} ({share_before}) → {after} ({share_after}), "
        "maximal covering (MCLP); greedy {greedy} ({share_greedy}).",
        "solve": "Solved in {s} s.",
    },
}


def _population_note(report: dict[str, Any], words: dict[str, Any]) -> str:
    """Where the people come from, and so whether people and area shares agree."""
    cell = f"{report['cell_m']:.0f}"
    source = report.get("population_source")
    if not source:
        return words["even"].format(cell=cell)
    note = words["file"].format(source=source, cell=cell)
    if report.get("population_outside"):
        note += words["outside"].format(n=report["population_outside"])
    return note


def _facilities_note(report: dict[str, Any], words: dict[str, Any]) -> str:
    note = words["facilities"].format(n=report["facilities"])
    not_open = {k: v for k, v in report.get("not_open", {}).items() if v}
    if not_open:
        parts = words["joiner"].join(
            words["status"].get(status, status + " {n}").format(n=n)
            for status, n in not_open.items()
        )
        total = report["facilities"] + sum(not_open.values())
        note += words["not_open"].format(parts=parts, total=total)
    return note


def _town_note(town: dict[str, Any], report: dict[str, Any], words: dict[str, Any]) -> str:
    """The town's people note: the office's own (from the store) as it is,
    else what the analysis put in, in the workbook's language."""
    if town["population_estimated"] and words["estimated"]:
        return words["estimated"]
    if report.get("population_source") and words["from_file"]:
        return words["from_file"].format(source=report["population_source"])
    return town["population_note"] or ""


def _town_sheet(book: Workbook, report: dict[str, Any], lang: str) -> None:
    words = WORDS[lang]
    yes_no = {True: words["yes"], False: words["no"]}
    names = dict(TOWN_COLUMNS) if lang == "zh" else _TOWN_EN
    items = dict(COMPLIANCE_COLUMNS) if lang == "zh" else _ITEMS_EN
    header = [names[key] for key, _zh in TOWN_COLUMNS] + [items[i] for i, _zh in COMPLIANCE_COLUMNS]
    header += [words["all_met"], words["people_note"], words["samples"]]
    rows = []
    for town in report["towns"]:
        row = [
            yes_no[town[key]] if isinstance(town[key], bool) else town[key]
            for key, _zh in TOWN_COLUMNS
        ]
        row += [yes_no[town[f"has_{item}"]] for item, _zh in COMPLIANCE_COLUMNS]
        row += [yes_no[town["all_met"]], _town_note(town, report, words), town["sample_sites"]]
        rows.append(row)
    formats = {names[key]: number_format for key, number_format in _TOWN_FORMATS.items()}
    sheet = table_sheet(
        book, (SHEETS if lang == "zh" else SHEETS_EN)[0], header, rows, first=True, formats=formats
    )
    sheet.append([])
    append_notes(
        sheet,
        [
            words["reach"].format(
                r=f"{report['radius_m']:.0f}",
                distance=report["distance_zh"] if lang == "zh" else report["distance"],
            ),
            _population_note(report, words),
            _facilities_note(report, words),
            words["compliance"],
        ],
    )
    if report.get("sample_notes"):
        # In the yellow of the map's sample notice: the numbers above include sample sites.
        append_notes(sheet, [report["sample_notes"][lang]], fill=_SAMPLE_FILL)


def _site_sheet(book: Workbook, recommendation: dict[str, Any], lang: str) -> None:
    words = WORDS[lang]

    def rows(method: str, sites: list[dict[str, Any]]) -> list[list[Any]]:
        return [
            [n, method, s["lon"], s["lat"], s["town_name"], s["gain"]]
            for n, s in enumerate(sites, start=1)
        ]

    greedy = recommendation["greedy"]
    header = words["sites"]
    sheet = table_sheet(
        book,
        (SHEETS if lang == "zh" else SHEETS_EN)[2],
        header,
        rows(words["mclp"], recommendation["sites"]) + rows(words["greedy"], greedy["sites"]),
        formats={header[2]: _DEGREES, header[3]: _DEGREES, header[5]: _WHOLE},
    )
    sheet.append([])
    append_notes(
        sheet,
        [
            words["crs"],
            words["covered"].format(
                before=f"{recommendation['covered_before']:,}",
                share_before=f"{recommendation['covered_share_before']:.1%}",
                after=f"{recommendation['covered_after']:,}",
                share_after=f"{recommendation['covered_share_after']:.1%}",
                greedy=f"{greedy['covered_after']:,}",
                share_greedy=f"{greedy['covered_share_after']:.1%}",
            ),
            words["solve"].format(s=recommendation["solve_seconds"]),
            *recommendation["notes_zh" if lang == "zh" else "notes"],
        ],
    )


def write_workbook(
    path: Path | IO[bytes],
    report: dict[str, Any],
    recommendation: dict[str, Any] | None,
    lang: str = "zh",
) -> None:
    """The workbook of a coverage report (and a recommendation, if any) to
    ``path``, in ``lang`` (``zh``, the default, or ``en``)."""
    if lang not in WORDS:
        raise ValueError(f"lang must be one of {tuple(WORDS)}, not {lang!r}")
    book = Workbook()
    _town_sheet(book, report, lang)
    units = [
        [unit, c["open"], c["planned"], c["suspended"], c["open"] + c["planned"] + c["suspended"]]
        for unit, c in report["progress_by_unit"].items()
    ]
    table_sheet(book, (SHEETS if lang == "zh" else SHEETS_EN)[1], WORDS[lang]["units"], units)
    if recommendation:
        _site_sheet(book, recommendation, lang)
    save_workbook(book, path)
