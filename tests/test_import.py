"""Importing town offices' files: hand-made messy fixtures, row-by-row reports,
all-or-nothing writes, idempotent re-imports, official town boundaries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import geopandas as gpd
import pytest
from shapely.geometry import Point

from geo_service.services.importing import apply_import, plan_import
from geo_service.sources.crs import GEOD, CoordinateSystem, convert
from geo_service.sources.importing import ImportRefused, RowStatus
from tests.conftest import ROOT

TODAY = dt.date(2026, 11, 30)
# Real positions (WGS-84) inside 公园街道 and 车站街道.
PARK = (118.042742, 36.810131)
STATION = (118.0515, 36.7905)

GBK_HEADER = [
    "序号",
    "单位名称",
    "类别",
    "详细地址",
    "联系电话",
    "经度",
    "纬度",
    "服务时间",
    "所属镇街",
    "服务内容",
    "服务对象",
    "窗口",
    "备注",
]


def gcj(lon, lat):
    g = convert(lon, lat, "wgs84", "gcj02")
    return round(float(g[0]), 6), round(float(g[1]), 6)


def east_of(point, metres):
    lon, lat, _ = GEOD.fwd(point[0], point[1], 90, metres)
    return lon, lat


def _gbk_rows():
    p1, p2, p3 = gcj(*PARK), gcj(*east_of(PARK, 400)), gcj(*STATION)
    return [
        [
            "1",
            "工商银行人民路支行",
            "银行",
            "张店区人民西路10号",
            "0533-2180001",
            p1[0],
            p1[1],
            "Mo-Fr 09:00-17:00",
            "公园街道",
            "优先办理、专用窗口",
            "退役军人、军属",
            "3号窗口",
            "示例备注",
        ],
        [
            "2",
            "建设银行共青团路支行",
            "银行",
            "张店区共青团西路20号",
            "05332180002",
            p2[0],
            p2[1],
            "Mo-Sa 09:00-17:00",
            "公园",
            "优先办理",
            "",
            "1号窗口",
            "",
        ],
        [
            "3",
            "张店汽车站",
            "汽车站",
            "张店区华光路1号",
            "",
            p3[0],
            p3[1],
            "24/7",
            "",
            "优先办理",
            "现役军人",
            "",
            "",
        ],
    ]


def write_gbk_csv(path, rows, header=GBK_HEADER):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("gbk"))
    return path


@pytest.fixture
def gbk_csv(tmp_path):
    return write_gbk_csv(tmp_path / "公园街道绿色通道.csv", _gbk_rows())


def plan(path, store, catalog, layer="green_channels", **kwargs):
    return plan_import(path, layer, catalog, store, today=TODAY, actor="test", **kwargs)


def test_a_gbk_csv_with_chinese_headers_and_gcj02_imports_cleanly(gbk_csv, store, catalog):
    result = plan(gbk_csv, store, catalog)
    assert any("gb18030" in note for note in result.notes)
    assert result.crs.value == "wgs84"  # nothing in the headers says GCJ-02...
    # ...so the points land ~500 m east of where they are: declare it.
    result = plan(gbk_csv, store, catalog, crs=CoordinateSystem.gcj02)
    assert [r.status for r in result.rows] == [RowStatus.ok] * 3, [r.reasons for r in result.rows]
    first = result.features[2]
    assert first.properties["name"] == "工商银行人民路支行"
    assert first.properties["kind"] == "bank"
    assert first.properties["services"] == ["priority_queue", "dedicated_window"]
    assert first.properties["eligible"] == ["veteran", "military_family"]
    assert first.properties["window"] == "3号窗口"
    assert first.properties["town_code"] == "370303002"
    assert first.properties["备注"] == "示例备注"  # an unknown column is kept
    assert first.properties["sample"] is False
    # GCJ-02 -> WGS-84 lands within 0.5 m of the true position
    assert GEOD.inv(*PARK, first.geometry.x, first.geometry.y)[2] < 0.5
    # No beneficiary column value: every type is assumed
    assert result.features[3].properties["eligible"] == list(catalog.values["eligible"])
    assert result.features[4].properties["kind"] == "bus_station"


def test_column_names_can_declare_the_coordinate_system(tmp_path, store, catalog):
    header = [h if h not in {"经度", "纬度"} else f"{h}（高德）" for h in GBK_HEADER]
    path = write_gbk_csv(tmp_path / "gaode.csv", _gbk_rows(), header)
    result = plan(path, store, catalog)
    assert result.crs.value == "gcj02"
    assert result.errors == []


def test_every_kind_of_bad_row_is_reported_with_its_reasons(tmp_path, store, catalog):
    good = _gbk_rows()[0]
    bad_rows = [
        ["4", "", "银行", "某地址", "", 118.05, 36.8, "", "", "", "", "", ""],  # no name
        ["5", "坐标不是数字", "银行", "某地址", "", "东经118度", "36.8", "", "", "", "", "", ""],
        ["6", "坐标超范围", "银行", "某地址", "", 218.05, 36.8, "", "", "", "", "", ""],
        ["7", "区外的银行", "银行", "淄川区", "", 117.96, 36.64, "", "", "", "", "", ""],
        ["8", "镇街不符", "银行", "某地址", "", 118.0515, 36.7905, "", "公园街道", "", "", "", ""],
        ["9", "营业时间错", "银行", "某地址", "", 118.05, 36.80, "周一到周五", "", "", "", "", ""],
        ["10", "电话错", "银行", "某地址", "123", 118.05, 36.80, "", "", "", "", "", ""],
        ["11", "类型错", "理发店", "某地址", "", 118.05, 36.80, "", "", "", "", "", ""],
        ["12", "经纬度颠倒", "银行", "某地址", "", 36.80, 118.05, "", "", "", "", "", ""],
        ["13", "服务对象错", "银行", "某地址", "", 118.05, 36.80, "", "", "", "全体市民", "", ""],
        ["14", "没有坐标", "银行", "某地址", "", "", "", "", "", "", "", "", ""],
    ]
    path = write_gbk_csv(tmp_path / "bad.csv", [good, *bad_rows])
    result = plan(path, store, catalog, crs=None)
    by_name = {r.name or "": r for r in result.rows}
    expect = {
        "": "missing name",
        "坐标不是数字": "unparseable coordinates",
        "坐标超范围": "out of range",
        "区外的银行": "outside the district",
        "营业时间错": "opening_hours",
        "电话错": "phone",
        "类型错": "unknown kind",
        "经纬度颠倒": "swapped",
        "服务对象错": "unknown eligible",
        "没有坐标": "no coordinates",
    }
    for name, reason in expect.items():
        row = by_name[name]
        assert row.status == RowStatus.error, (name, row.reasons)
        assert any(reason in r for r in row.reasons), (name, row.reasons)
    # Town boundaries are approximate, so a mismatch warns and keeps the declared town.
    mismatch = by_name["镇街不符"]
    assert mismatch.status == RowStatus.warning and "town mismatch" in mismatch.reasons[0]
    assert result.rows[0].status == RowStatus.ok
    # all-or-nothing: refused, and nothing written
    before = store.count("green_channels")
    with pytest.raises(ImportRefused, match="10 of 12 rows have errors"):
        apply_import(result, store)
    assert store.count("green_channels") == before
    written = apply_import(result, store, skip_invalid=True)
    assert len(written["green_channels"].inserted) == 2
    assert store.count("green_channels") == before + 2


def test_duplicates_within_the_file_and_against_the_store(tmp_path, store, catalog):
    rows = _gbk_rows()
    near = gcj(*east_of(PARK, 20))
    twin = list(rows[0])
    twin[0], twin[5], twin[6], twin[3] = "9", near[0], near[1], "张店区人民西路12号"
    same_address = list(rows[1])
    same_address[0], same_address[1] = "10", "建行另一名称"
    path = write_gbk_csv(tmp_path / "dups.csv", [*rows, twin, same_address])
    result = plan(path, store, catalog, crs=CoordinateSystem.gcj02)
    reasons = {r.line: "; ".join(r.reasons) for r in result.rows}
    assert "probable duplicate of line 2 (same name, 20 m apart)" in reasons[5]
    assert "probable duplicate of line 3 (same address)" in reasons[6]
    stored = store.query("green_channels", limit=1).features[0]
    lon, lat = gcj(stored.geometry.x, stored.geometry.y)
    copy = [
        "1",
        stored.properties["name"] + "（新）",
        "银行",
        stored.properties["address"],
        "",
        lon,
        lat,
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    result = plan(
        write_gbk_csv(tmp_path / "vs_store.csv", [copy]), store, catalog, crs=CoordinateSystem.gcj02
    )
    assert f"probable duplicate of stored site {stored.id} (same address)" in result.rows[0].reasons


def test_reimporting_the_same_file_changes_nothing(gbk_csv, store, catalog):
    gcj02 = CoordinateSystem.gcj02
    first = apply_import(plan(gbk_csv, store, catalog, crs=gcj02), store)
    assert len(first["green_channels"].inserted) == 3
    count = store.count("green_channels")
    later = plan_import(
        gbk_csv,
        "green_channels",
        catalog,
        store,
        crs=gcj02,
        actor="test",
        today=TODAY + dt.timedelta(days=5),
    )
    assert [r.action for r in later.rows] == ["unchanged"] * 3
    again = apply_import(later, store)
    assert again["green_channels"].changed == 0
    assert store.count("green_channels") == count
    # the same file with a new phone number updates that row only, by name + position
    rows = _gbk_rows()
    rows[0][4] = "0533-2189999"
    changed = write_gbk_csv(gbk_csv, rows)
    result = apply_import(plan(changed, store, catalog, crs=gcj02), store)
    assert len(result["green_channels"].updated) == 1 and not result["green_channels"].inserted


def test_an_xlsx_with_a_title_row_and_merged_cells(tmp_path, store, catalog):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["张店区拥军服务站点统计表（2026年11月）"])
    sheet.merge_cells("A1:H1")
    sheet.append(["名称", "类型", "地址", "经度", "纬度", "所属镇街", "责任单位", "联系电话"])
    p1, p2 = PARK, east_of(PARK, 300)
    sheet.append(
        [
            "公园街道退役军人服务站",
            "镇街退役军人服务站",
            "公园街道办事处",
            p1[0],
            p1[1],
            "公园街道",
            "公园街道办事处",
            5332180003,
        ]
    )
    sheet.append(
        ["人民公园拥军驿站", "拥军服务驿站", "人民公园东门", p2[0], p2[1], None, None, None]
    )
    sheet.merge_cells("F3:F4")  # one town cell spans both rows
    sheet.merge_cells("G3:G4")
    path = tmp_path / "stations.xlsx"
    book.save(path)
    result = plan(path, store, catalog, layer="stations")
    assert [r.line for r in result.rows] == [3, 4]  # the lines Excel shows
    assert result.errors == [], [r.reasons for r in result.rows]
    assert "restored the leading 0" in result.rows[0].reasons[0]
    second = result.features[4].properties
    assert second["responsible_unit"] == "公园街道办事处"  # from the merged cell
    assert second["kind"] == "support_post"
    assert result.features[3].properties["phone"] == "05332180003"


def test_a_bd09_geojson(tmp_path, store, catalog):
    b_lon, b_lat = convert(*PARK, "wgs84", "bd09")
    frame = gpd.GeoDataFrame(
        {"name": ["百度坐标的药店"], "kind": ["partner_pharmacy"], "address": ["张店区某路1号"]},
        geometry=[Point(b_lon, b_lat)],
        crs=4326,
    )
    path = tmp_path / "pharmacies.geojson"
    frame.to_file(path, driver="GeoJSON")
    bd09 = CoordinateSystem.bd09
    result = plan(path, store, catalog, layer="medical", crs=bd09)
    feature = result.features[1]
    assert GEOD.inv(*PARK, feature.geometry.x, feature.geometry.y)[2] < 0.5
    assert result.errors == []


def test_dry_run_writes_nothing_and_the_cli_reports(tmp_path, gbk_csv, store, catalog):
    before = {layer: store.count(layer) for layer in catalog.layers}
    report = tmp_path / "report.xlsx"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "import",
            str(gbk_csv),
            "--layer",
            "green_channels",
            "--crs",
            "gcj02",
            "--dry-run",
            "--report",
            str(report),
            "--store",
            store.location,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert done.returncode == 0, done.stderr
    assert "dry run" in done.stdout and "工商银行人民路支行" in done.stdout
    assert {layer: store.count(layer) for layer in catalog.layers} == before
    from openpyxl import load_workbook

    sheet = load_workbook(report).active
    assert [c.value for c in sheet[1]][:2] == ["行号 line", "状态 status"]
    assert sheet.max_row == 4
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "import",
            str(gbk_csv),
            "--layer",
            "green_channels",
            "--crs",
            "gcj02",
            "--store",
            store.location,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert written.returncode == 0, written.stderr
    assert "3 inserted" in written.stdout
    assert store.count("green_channels") == before["green_channels"] + 3


def test_a_refused_import_exits_non_zero_and_leaves_the_store_as_it_was(tmp_path, store, catalog):
    rows = [*_gbk_rows(), ["9", "", "银行", "", "", "x", "y", "", "", "", "", "", ""]]
    path = write_gbk_csv(tmp_path / "one_bad.csv", rows)
    before = {layer: store.count(layer) for layer in catalog.layers}
    versions = store.layer_versions()
    audit = store.audit_records()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "import",
            str(path),
            "--layer",
            "green_channels",
            "--store",
            store.location,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "nothing was written" in done.stderr
    assert {layer: store.count(layer) for layer in catalog.layers} == before
    # not a row touched: no layer version moved, no audit record added
    assert store.layer_versions() == versions
    assert store.audit_records() == audit


def test_official_town_boundaries_replace_the_approximate_ones(tmp_path, store, catalog):
    towns = store.all_features("towns")
    # "Official" boundaries: the approximate ones, with 公园街道 taking a strip of 车站街道.
    by_code = {t.id: t.geometry for t in towns}
    strip = by_code["370303001"].intersection(Point(STATION).buffer(0.01))
    by_code["370303002"] = by_code["370303002"].union(strip)
    by_code["370303001"] = by_code["370303001"].difference(strip)
    frame = gpd.GeoDataFrame(
        {"town_code": list(by_code), "name": [t.properties["name"] for t in towns]},
        geometry=list(by_code.values()),
        crs=4326,
    )
    path = tmp_path / "official_towns.gpkg"
    frame.to_file(path, driver="GPKG")
    result = plan(path, store, catalog, layer="towns")
    assert result.errors == []
    moved = [n for n in result.notes if "370303001 → 370303002" in n]
    assert moved, result.notes
    apply_import(result, store)
    assert all(not t.properties["approximate"] for t in store.all_features("towns"))
    for layer in catalog.facility_layers:
        for site in store.all_features(layer.id):
            inside = store.get("towns", site.properties["town_code"]).geometry
            assert inside.intersects(Point(site.geometry.x, site.geometry.y)), site.id


def test_a_partial_town_file_is_refused(tmp_path, store, catalog):
    towns = store.all_features("towns")[:5]
    frame = gpd.GeoDataFrame(
        {"town_code": [t.id for t in towns], "name": [t.properties["name"] for t in towns]},
        geometry=[t.geometry for t in towns],
        crs=4326,
    )
    path = tmp_path / "five_towns.geojson"
    frame.to_file(path, driver="GeoJSON")
    result = plan(path, store, catalog, layer="towns")
    assert result.errors and "lacks towns" in result.errors[0].reasons[0]
    with pytest.raises(ImportRefused):
        apply_import(result, store)


def test_round_trips_stay_within_half_a_metre_over_shandong():
    import numpy as np

    lon, lat = np.meshgrid(np.linspace(114.8, 122.7, 40), np.linspace(34.4, 38.4, 30))
    lon, lat = lon.ravel(), lat.ravel()
    for system in ("gcj02", "bd09"):
        there = convert(lon, lat, "wgs84", system)
        back = convert(*there, system, "wgs84")
        error = GEOD.inv(lon, lat, back[0], back[1])[2]
        assert error.max() < 0.5, system


def test_a_shapefile_in_cgcs2000_with_chinese_field_names(tmp_path, store, catalog):
    frame = gpd.GeoDataFrame(
        {"名称": ["测试拥军药店"], "类型": ["拥军药店"], "地址": ["张店区某路2号"]},
        geometry=[Point(*east_of(PARK, 150))],
        crs=4490,  # CGCS2000, as Chinese survey data comes
    )
    path = tmp_path / "pharmacies.shp"
    frame.to_file(path, encoding="utf-8")
    result = plan(path, store, catalog, layer="medical")
    assert result.errors == [], [r.reasons for r in result.rows]
    feature = result.features[1]
    assert feature.properties["name"] == "测试拥军药店"
    assert feature.properties["kind"] == "partner_pharmacy"
    assert GEOD.inv(*east_of(PARK, 150), feature.geometry.x, feature.geometry.y)[2] < 0.5


def test_two_same_named_rows_near_each_other_reimport_as_themselves(tmp_path, store, catalog):
    """Two windows of one bank 14 m apart, no ids: each row keeps its own record."""
    p1, p2 = PARK, east_of(PARK, 14)
    rows = [
        ["1", "工商银行人民路支行", "银行", "人民西路10号", "", *p1, "", "", "", "", "1号窗口", ""],
        ["2", "工商银行人民路支行", "银行", "人民西路10号", "", *p2, "", "", "", "", "2号窗口", ""],
    ]
    path = write_gbk_csv(tmp_path / "twin.csv", rows)
    first = apply_import(plan(path, store, catalog), store)
    assert len(first["green_channels"].inserted) == 2
    again = plan(path, store, catalog)
    assert again.errors == [] and [r.action for r in again.rows] == ["unchanged", "unchanged"]
    windows = sorted(
        f.properties["window"]
        for f in store.all_features("green_channels")
        if f.properties["name"] == "工商银行人民路支行"
    )
    assert windows == ["1号窗口", "2号窗口"]


def test_messy_files_get_clear_errors(tmp_path, store, catalog):
    from openpyxl import Workbook

    from geo_service.errors import InvalidParameter

    header_only = tmp_path / "header_only.csv"
    header_only.write_text("名称,经度,纬度\n", encoding="utf-8")
    with pytest.raises(InvalidParameter, match="no data rows"):
        plan(header_only, store, catalog)
    clash = tmp_path / "clash.csv"
    clash.write_text("单位名称,站点名称,类型,经度,纬度\n甲,乙,银行,118.05,36.8\n", encoding="utf-8")
    with pytest.raises(InvalidParameter, match="several columns mean the same thing"):
        plan(clash, store, catalog)
    book = Workbook()
    sheet = book.active
    sheet.append(["名称", "类型", "地址", "经度", "纬度", "电话"])
    sheet.append(["公式银行", "银行", "=NA()", PARK[0], PARK[1], "=VLOOKUP(A1,B:B,1)"])
    path = tmp_path / "formulas.xlsx"
    book.save(path)  # openpyxl saves formulas without results, as an unsaved sheet would be
    result = plan(path, store, catalog)
    reasons = "; ".join(result.rows[0].reasons)
    assert result.rows[0].status == RowStatus.error
    assert "formula with no saved result" in reasons


def test_a_non_point_geometry_is_a_row_error(tmp_path, store, catalog):
    from shapely.geometry import LineString

    frame = gpd.GeoDataFrame(
        {"name": ["线状设施"], "kind": ["bank"], "address": ["某路"]},
        geometry=[LineString([PARK, east_of(PARK, 100)])],
        crs=4326,
    )
    path = tmp_path / "line.geojson"
    frame.to_file(path, driver="GeoJSON")
    result = plan(path, store, catalog)
    assert result.rows[0].status == RowStatus.error
    assert "a site must be a point" in result.rows[0].reasons[0]


def test_every_reason_is_named_even_after_an_early_error(tmp_path, store, catalog):
    rows = [
        ["1", "无地址银行", "银行", "", "12", *PARK, "", "", "", "", "", ""],
        ["1", "无地址银行二", "银行", "", "", *east_of(PARK, 500), "", "", "", "", "", ""],
    ]
    header = ["编号", *GBK_HEADER[1:]]
    result = plan(write_gbk_csv(tmp_path / "ids.csv", rows, header), store, catalog)
    second = "; ".join(result.rows[1].reasons)
    assert "already used by line 2" in second and "address: is required" in second


def test_user_text_is_not_read_as_markup(tmp_path, store):
    rows = [["1", "工商银行[/]", "银行", "地址[b]粗体", "", *gcj(*PARK), "", "", "", "", "", ""]]
    path = write_gbk_csv(tmp_path / "markup.csv", rows)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "import",
            str(path),
            "--layer",
            "green_channels",
            "--crs",
            "gcj02",
            "--dry-run",
            "--store",
            store.location,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert done.returncode == 0, done.stderr
    assert "工商银行[/]" in done.stdout
