"""Hostile files a town office's account could send: each is refused while it
is read, in bounded time and memory, and nothing reaches the store. Every
bomb is built here, big enough that reading it in full (as the import did
before it had limits) would take minutes and gigabytes.

Also: the duplicate checks stay exact while no longer comparing every pair,
on 6,000 rows of one name and on 200 rows against 20,000 stored sites."""

from __future__ import annotations

import csv
import io
import math
import re
import resource
import sqlite3
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point

from geo_service.errors import ImportTooLarge, InvalidParameter
from geo_service.services.importing import apply_import, plan_import
from geo_service.sources.catalog import ValidFeature
from geo_service.sources.crs import GEOD
from geo_service.sources.importing import RowStatus, feature_id_for
from geo_service.sources.tables import ImportLimits
from geo_service.sources.towns import TownIndex
from geo_service.store import Store

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: In 马尚街道.
MASHANG = (117.9905, 36.8005)
#: Python allocations while refusing a bomb; the bombs themselves expand to
#: billions of cells, so a few tens of megabytes is "did not expand it".
SMALL_PEAK = 64 * 2**20
#: Growth of the whole process (GDAL and SQLite allocate outside Python).
SMALL_GROWTH_KB = 200 * 1024


def moved(point, east_m=0.0, north_m=0.0):
    lon, lat, _ = GEOD.fwd(point[0], point[1], 90, east_m)
    lon, lat, _ = GEOD.fwd(lon, lat, 0, north_m)
    return float(lon), float(lat)


def plan(path, store, catalog, layer="stations", **kwargs):
    return plan_import(path, layer, catalog, store, actor="test", **kwargs)


def refused_quietly(store: Store, catalog, call: Callable[[], object], error=ImportTooLarge):
    """Run ``call``; it must raise ``error`` without a big allocation and
    without writing to the store. Returns the error."""
    before = {layer: store.count(layer) for layer in catalog.layers}
    versions = store.layer_versions()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < SMALL_PEAK, f"peak {peak / 2**20:.0f} MB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown < SMALL_GROWTH_KB
    assert {layer: store.count(layer) for layer in catalog.layers} == before
    assert store.layer_versions() == versions
    return caught.value


# -- hostile spreadsheets -----------------------------------------------------------


def office_workbook(path: Path) -> Path:
    """A small, ordinary stations sheet."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["名称", "类型", "地址", "经度", "纬度"])
    sheet.append(["马尚测试驿站", "拥军服务驿站", "马尚街道测试路1号", *MASHANG])
    book.save(path)
    return path


def rewrite_sheet(path: Path, edit: Callable[[str], str]) -> Path:
    """Rewrite the first sheet's XML as a hand-made hostile file would be."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    name = "xl/worksheets/sheet1.xml"
    parts[name] = edit(parts[name].decode("utf-8")).encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, data in parts.items():
            archive.writestr(part, data)
    return path


def merged_range_bomb(path: Path) -> Path:
    """One merged range over the whole sheet below the data: 17 billion cells
    that a full load expands one object each (a 5 KB file)."""
    merge = '<mergeCells count="1"><mergeCell ref="A3:XFD1048576"/></mergeCells>'
    return rewrite_sheet(
        office_workbook(path), lambda xml: xml.replace("</sheetData>", "</sheetData>" + merge)
    )


def test_a_merged_range_bomb_is_refused_before_any_cell_is_expanded(tmp_path, store, catalog):
    path = merged_range_bomb(tmp_path / "合并单元格.xlsx")
    assert path.stat().st_size < 10_000
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "合并单元格 A3:XFD1048576" in error.detail
    assert "unmerge" in error.detail


def test_a_declared_dimension_bomb_is_refused(tmp_path, store, catalog):
    """The sheet claims to span all of Excel's grid, and a formatted empty
    cell in its far corner makes a full load believe it."""
    corner = '<row r="1048576"><c r="XFD1048576" s="0"/></row>'

    def edit(xml: str) -> str:
        # openpyxl writes `<dimension ref="A1:E2"/>` with lxml, `... />` without it.
        xml, replaced = re.subn(
            r'<dimension ref="A1:E2"\s*/>', '<dimension ref="A1:XFD1048576"/>', xml
        )
        assert replaced == 1
        return xml.replace("</sheetData>", corner + "</sheetData>")

    path = rewrite_sheet(office_workbook(tmp_path / "dimension.xlsx"), edit)
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "A1:XFD1048576" in error.detail and "工作表声明的范围" in error.detail


def test_a_formatted_cell_far_away_does_not_make_an_honest_sheet_large(tmp_path, store, catalog):
    """Without the lying dimension the same far cell is only formatting: the
    rows with data are read and nothing else."""
    corner = '<row r="1048576"><c r="XFD1048576" s="0"/></row>'
    path = rewrite_sheet(
        office_workbook(tmp_path / "far.xlsx"),
        lambda xml: xml.replace("</sheetData>", corner + "</sheetData>"),
    )
    result = plan(path, store, catalog)
    assert [r.line for r in result.rows] == [2]
    assert result.errors == [], [r.reasons for r in result.rows]


def test_a_zip_bomb_sheet_is_refused_from_its_declared_size(tmp_path, store, catalog):
    """150 MB of sheet XML packed into a file of a few hundred KB."""
    path = office_workbook(tmp_path / "zipbomb.xlsx")
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    sheet = parts.pop("xl/worksheets/sheet1.xml").decode()
    head, tail = sheet.split("</sheetData>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, data in parts.items():
            archive.writestr(part, data)
        with archive.open("xl/worksheets/sheet1.xml", "w") as out:
            out.write(head.encode())
            padding = b"<row/>" * 200_000
            for _ in range(125):
                out.write(padding)
            out.write(("</sheetData>" + tail).encode())
    assert path.stat().st_size < 2_000_000
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "解压后超过 100 MB" in error.detail


def test_a_value_past_the_column_limit_is_refused_before_rows_are_read(tmp_path, store, catalog):
    far = '<row r="3"><c r="GT3" t="inlineStr"><is><t>x</t></is></c></row>'  # column 202
    path = rewrite_sheet(
        office_workbook(tmp_path / "wide.xlsx"),
        lambda xml: xml.replace("</sheetData>", far + "</sheetData>"),
    )
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "第 3 行超过 200 列的上限" in error.detail


def test_a_sheet_with_a_dtd_is_refused(tmp_path, store, catalog):
    laughs = '<!DOCTYPE worksheet [<!ENTITY a "ha">]>'
    path = rewrite_sheet(
        office_workbook(tmp_path / "dtd.xlsx"),
        lambda xml: xml.replace("<worksheet", laughs + "<worksheet", 1),
    )
    with pytest.raises(InvalidParameter, match="DTD"):
        plan(path, store, catalog)


# -- hostile CSV ---------------------------------------------------------------------


def test_a_csv_over_the_row_limit_is_refused_while_it_is_read(tmp_path, store, catalog):
    """300,000 rows (a 20 MB upload's worth): reading stops after 50,000."""
    path = tmp_path / "全区台账.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["名称", "类型", "地址", "经度", "纬度"])
        row = ["马尚测试驿站", "拥军服务驿站", "马尚街道测试路1号", *MASHANG]
        writer.writerows([row] * 300_000)
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert error.detail.startswith("全区台账.csv：文件超过 50000 行的上限")
    assert "more than 50,000 rows" in error.detail


def test_the_row_limit_counts_data_rows_not_the_title_and_header(tmp_path, store, catalog):
    limits = ImportLimits(max_rows=3)
    path = tmp_path / "three.csv"
    rows = [f"驿站{i},拥军服务驿站,马尚街道测试路{i}号,{MASHANG[0]},{MASHANG[1]}" for i in range(3)]
    path.write_text(
        "张店区拥军服务站点统计表\n\n名称,类型,地址,经度,纬度\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    assert len(plan(path, store, catalog, limits=limits).rows) == 3
    path.write_text(path.read_text(encoding="utf-8") + rows[0] + "\n", encoding="utf-8")
    with pytest.raises(ImportTooLarge, match="文件超过 3 行的上限"):
        plan(path, store, catalog, limits=limits)


def test_a_row_with_too_many_columns_is_refused(tmp_path, store, catalog):
    """100,000 cells in one row, each of which a full read pads every row to."""
    path = tmp_path / "wide.csv"
    header = "名称,类型,地址,经度,纬度"
    wide = ",".join(["x"] * 100_000)
    path.write_text(f"{header}\n马尚测试驿站,拥军服务驿站,某路,{MASHANG[0]},{MASHANG[1]}\n{wide}\n")
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "第 3 行超过 200 列的上限" in error.detail


def test_trailing_empty_cells_are_not_columns(tmp_path, store, catalog):
    path = tmp_path / "padded.csv"
    padding = "," * 5_000
    path.write_text(
        f"名称,类型,地址,经度,纬度{padding}\n甲驿站,拥军服务驿站,某路,{MASHANG[0]},{MASHANG[1]}{padding}\n"
    )
    result = plan(path, store, catalog)
    assert result.errors == [], [r.reasons for r in result.rows]


@pytest.mark.parametrize("length", [10_001, 1_000_000])
def test_an_over_long_cell_is_refused(tmp_path, store, catalog, length):
    """Past this project's limit, and past the csv module's own (131,072)."""
    path = tmp_path / "long.csv"
    row = ["马尚测试驿站", "拥军服务驿站", "长" * length, *MASHANG]
    write_csv(path, [row])
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "第 2 行" in error.detail and "超过 10000 个字符的上限" in error.detail


def test_a_line_of_a_million_commas_is_never_split(tmp_path, store, catalog):
    path = tmp_path / "commas.csv"
    path.write_text("名称,类型,地址,经度,纬度\n" + "," * 5_000_000 + "x\n", encoding="utf-8")
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "第 2 行超过" in error.detail and "not a table" in error.detail


# -- hostile spatial files -----------------------------------------------------------


def recursive_view_geopackage(path: Path, rows: int) -> Path:
    """A GeoPackage whose only layer is a view that counts to ``rows`` by
    recursion: a 100 KB file that a reader turns into as many features."""
    gpd.GeoDataFrame(
        {"name": ["驿站"], "kind": ["support_post"], "address": ["某路"]},
        geometry=[Point(*MASHANG)],
        crs=4326,
    ).to_file(path, driver="GPKG", layer="seed")
    connection = sqlite3.connect(path)
    blob = connection.execute("SELECT geom FROM seed").fetchone()[0]
    connection.execute("DELETE FROM gpkg_geometry_columns")
    connection.execute("DELETE FROM gpkg_contents")
    connection.execute("DROP TABLE seed")
    connection.execute(
        "CREATE VIEW stations AS WITH RECURSIVE n(i) AS "
        f"(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
        "SELECT i AS fid, '驿站' || i AS name, 'support_post' AS kind, "
        "'某路' || i || '号' AS address, ? AS geom FROM n".replace("?", f"X'{blob.hex()}'")
    )
    connection.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) "
        "VALUES ('stations', 'features', 'stations', 4326)"
    )
    connection.execute(
        "INSERT INTO gpkg_geometry_columns VALUES ('stations', 'geom', 'POINT', 4326, 0, 0)"
    )
    connection.commit()
    connection.close()
    return path


def test_a_geopackage_whose_layer_is_a_recursive_view_is_refused(tmp_path, store, catalog):
    path = recursive_view_geopackage(tmp_path / "stations.gpkg", 10_000_000)
    assert path.stat().st_size < 200_000
    error = refused_quietly(
        store, catalog, lambda: plan(path, store, catalog), error=InvalidParameter
    )
    assert "图层 stations 是视图（view）" in error.detail and "not a table" in error.detail


@pytest.mark.parametrize("suffix", [".shp", ".geojson"])
def test_a_spatial_file_over_the_feature_limit_is_refused(tmp_path, store, catalog, suffix):
    count = 60_000
    frame = gpd.GeoDataFrame(
        {
            "name": [f"驿站{i}" for i in range(count)],
            "kind": ["support_post"] * count,
            "address": [f"马尚街道测试路{i}号" for i in range(count)],
        },
        geometry=gpd.points_from_xy([MASHANG[0]] * count, [MASHANG[1]] * count),
        crs=4326,
    )
    path = tmp_path / f"stations{suffix}"
    frame.to_file(path, engine="pyogrio")
    del frame
    error = refused_quietly(store, catalog, lambda: plan(path, store, catalog))
    assert "文件超过 50000 行的上限" in error.detail


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("stations.geojson", b'<OGRVRTDataSource><OGRVRTLayer name="x"/></OGRVRTDataSource>'),
        ("stations.gpkg", b'{"type": "FeatureCollection", "features": []}'),
        ("stations.shp", b"SQLite format 3\x00"),
    ],
)
def test_a_spatial_file_must_be_what_its_name_says(tmp_path, store, catalog, name, content):
    """GDAL picks its driver by content: a ".geojson" holding a VRT would make
    the server read its own files (or fetch URLs) into the import."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidParameter, match="its content is not of that kind"):
        plan(path, store, catalog)


def test_a_zip_must_hold_a_shapefile_only(tmp_path, store, catalog):
    view = recursive_view_geopackage(tmp_path / "inner.gpkg", 10_000_000)
    path = tmp_path / "stations.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(view, "stations.gpkg")
    with pytest.raises(InvalidParameter, match="Shapefile only"):
        plan(path, store, catalog)


# -- duplicate checks at scale ------------------------------------------------------


def district_points(store: Store, spacing_m: float, count: int) -> list[tuple[float, float]]:
    """``count`` points on a lattice inside the district, ``spacing_m`` apart."""
    towns = TownIndex((t.id, t.geometry) for t in store.all_features("towns"))
    west, south = 117.93, 36.71
    dlat = spacing_m / 111_000
    dlon = spacing_m / (111_000 * math.cos(math.radians(36.75)))
    points = []
    for row in range(400):
        for column in range(400):
            lon, lat = round(west + column * dlon, 6), round(south + row * dlat, 6)
            if towns.locate(lon, lat) is not None:
                points.append((lon, lat))
                if len(points) == count:
                    return points
    raise AssertionError(f"only {len(points)} lattice points in the district")


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["名称", "类型", "地址", "经度", "纬度"])
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def duplicate_reasons(report) -> list[str]:
    return [r for r in report.reasons if "duplicate" in r]


def test_six_thousand_rows_of_one_name_are_checked_exactly(tmp_path, store, catalog):
    """A town's sheet of 6,000 "拥军服务驿站" with no ids: every tenth has a twin
    20 m east. The twins, and only they, are warned of, each naming its pair."""
    lattice = district_points(store, 120, 5_460)
    rows, twin_of = [], {}
    for number, (lon, lat) in enumerate(lattice):
        rows.append(["拥军服务驿站", "拥军服务驿站", f"测试路{number}号", lon, lat])
        if number % 10 == 0:
            twin_of[len(rows) + 2] = len(rows) + 1  # the lines: header is line 1
            lon2, lat2 = moved((lon, lat), east_m=20)
            rows.append(["拥军服务驿站", "拥军服务驿站", f"测试路{number}号之二", lon2, lat2])
    assert len(rows) == 6_006
    result = plan(write_csv(tmp_path / "same_name.csv", rows), store, catalog)
    by_line = {r.line: r for r in result.rows}
    twins_kept = {
        line: first
        for line, first in twin_of.items()
        if line in result.features and first in result.features
    }
    assert len(twins_kept) > 500  # the district's edge drops a few rows
    for line, report in by_line.items():
        expected = (
            [f"probable duplicate of line {twins_kept[line]} (same name, 20 m apart)"]
            if line in twins_kept
            else []
        )
        assert duplicate_reasons(report) == expected, (line, report.reasons)
    assert len({f.id for f in result.features.values()}) == len(result.features)


def test_two_hundred_rows_against_twenty_thousand_stored_sites(tmp_path, store, catalog):
    """Rows without ids are matched to the nearest same-named stored site within
    50 m that no earlier row took, as before, among 20,000 stored sites."""
    template = store.all_features("stations")[0]
    lattice = district_points(store, 60, 20_000)
    stored = []
    for number, (lon, lat) in enumerate(lattice):
        props = dict(
            template.properties,
            id=f"st-bulk-{number:05d}",
            name=f"已有驿站{number % 4_000}",
            address=f"已有路{number}号",
            sample=False,
        )
        stored.append(ValidFeature(props["id"], props, Point(lon, lat)))
    store.write_layers({"stations": stored}, actor="test", action="import")
    towns = TownIndex((t.id, t.geometry) for t in store.all_features("towns"))
    near = [(0, 0), (20, 0), (0, 45), (70, 0), (0, 10)]

    def well_inside(site) -> bool:
        at = (site.geometry.x, site.geometry.y)
        return all(towns.locate(*moved(at, east, north)) for east, north in near)

    targets = [site for site in stored[::97] if well_inside(site)][:170]  # all over
    assert len(targets) == 170
    rows, expected = [], []
    offsets = [(0, 0), (20, 0), (0, 45)]
    for number, site in enumerate(targets[:150]):
        east, north = offsets[number % 3]
        position = moved((site.geometry.x, site.geometry.y), east, north)
        rows.append([site.properties["name"], "拥军服务驿站", f"新路{number}号", *position])
        expected.append((site.id, []))
    for number, site in enumerate(targets[150:170], start=150):
        position = moved((site.geometry.x, site.geometry.y), east_m=70)  # too far: a new site
        rows.append([site.properties["name"], "拥军服务驿站", f"新路{number}号", *position])
        expected.append((feature_id_for(catalog.layer("stations"), rows[-1][0], *position), []))
    for number in range(30):
        # A second row 10 m from a site an earlier row (at the site itself) took.
        site = targets[3 * number]
        position = moved((site.geometry.x, site.geometry.y), north_m=10)
        rows.append([site.properties["name"], "拥军服务驿站", f"再一路{number}号", *position])
        expected.append(
            (
                feature_id_for(catalog.layer("stations"), rows[-1][0], *position),
                [
                    f"probable duplicate of line {3 * number + 2} (same name, 10 m apart)",
                    f"probable duplicate of stored site {site.id} (10 m)",
                ],
            )
        )
    assert len(rows) == 200
    result = plan(write_csv(tmp_path / "vs_store.csv", rows), store, catalog)
    assert result.errors == [], [r.reasons for r in result.errors][:3]
    got = [(r.id, duplicate_reasons(r)) for r in result.rows]
    assert got == expected
    actions = [r.action for r in result.rows]
    assert actions == ["update"] * 150 + ["insert"] * 50


def test_a_dense_cluster_of_one_name_gets_a_bounded_report(tmp_path, store, catalog):
    """3,000 rows of one name at one spot, each with its own id: every pair is
    a duplicate (4.5 million of them), so each row names the first few and
    says the rest were not all compared."""
    path = tmp_path / "cluster.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["编号", "名称", "类型", "地址", "经度", "纬度"])
    for number in range(3_000):
        writer.writerow([f"x-{number}", "同一驿站", "拥军服务驿站", f"测试路{number}号", *MASHANG])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    result = plan(path, store, catalog)
    assert result.errors == []
    assert duplicate_reasons(result.rows[0]) == []
    assert duplicate_reasons(result.rows[1]) == [
        "probable duplicate of line 2 (same name, 0 m apart)"
    ]
    last = result.rows[-1].reasons
    assert last[:5] == [
        f"probable duplicate of line {line} (same name, 0 m apart)" for line in range(2, 7)
    ]
    assert "only the first 64 were checked" in last[5]
    # The file gives no 位置精度, 服务对象 or 状态: each row says so once, on top.
    assert all(len(r.defaults) == 3 for r in result.rows)
    assert max(len(r.reasons) - len(r.defaults) for r in result.rows) <= 7


def test_a_zipped_shapefile_still_imports(tmp_path, store, catalog):
    frame = gpd.GeoDataFrame(
        {"名称": ["压缩包里的驿站"], "类型": ["拥军服务驿站"], "地址": ["马尚街道测试路2号"]},
        geometry=[Point(*MASHANG)],
        crs=4326,
    )
    folder = tmp_path / "shp"
    folder.mkdir()
    frame.to_file(folder / "stations.shp", encoding="utf-8")
    path = tmp_path / "stations.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for part in folder.iterdir():
            archive.write(part, part.name)
    result = plan(path, store, catalog)
    assert result.errors == [], [r.reasons for r in result.rows]
    assert result.features[1].properties["name"] == "压缩包里的驿站"


# -- limits from the settings, and over HTTP ----------------------------------------


def test_the_limits_mirror_the_settings(monkeypatch):
    from geo_service.settings import Settings

    assert Settings().import_limits() == ImportLimits()
    for name, value in (("ROWS", 10), ("COLUMNS", 20), ("CELL_CHARS", 30), ("CELLS", 40)):
        monkeypatch.setenv(f"GEO_SERVICE_IMPORT_MAX_{name}", str(value))
    monkeypatch.setenv("GEO_SERVICE_IMPORT_MAX_UNPACKED_BYTES", "5000")
    assert Settings().import_limits() == ImportLimits(10, 20, 30, 40, 5000)


def test_the_merged_range_bomb_over_http_is_a_problem_and_writes_nothing(tmp_path, store, catalog):
    from fastapi.testclient import TestClient

    from geo_service.api import create_app
    from geo_service.services.access import issue_token
    from geo_service.settings import Settings

    bomb = merged_range_bomb(tmp_path / "bomb.xlsx").read_bytes()
    before = {layer: store.count(layer) for layer in catalog.layers}
    audit = store.audit_records()
    app = create_app(Settings(store=store.location))
    with TestClient(app) as client:
        known = [town.id for town in store.all_features("towns")]
        token = issue_token(store, "office", "admin", [], known)
        response = client.post(
            "/collections/stations/import",
            content=bomb,
            headers={"Authorization": f"Bearer {token}", "Content-Type": XLSX_TYPE},
        )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "合并单元格" in response.json()["detail"]
    assert {layer: store.count(layer) for layer in catalog.layers} == before
    assert store.audit_records() == audit


def test_an_honest_import_still_applies(tmp_path, store, catalog):
    """The limits change nothing for an ordinary file."""
    path = office_workbook(tmp_path / "ok.xlsx")
    before = store.count("stations")
    result = plan(path, store, catalog)
    assert result.errors == []
    assert result.rows[0].status in {RowStatus.ok, RowStatus.warning}
    apply_import(result, store)
    assert store.count("stations") == before + 1
