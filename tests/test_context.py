"""Context: the office's roads, water and landmarks imported into the context
layer and drawn under the sites; the gazetteer's real places when there is
none. Fixture files are made here with geopandas (never read from shared data).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import httpx
import pytest
from pyproj import Geod
from shapely.geometry import LineString, Point, Polygon

from geo_service.errors import InvalidParameter
from geo_service.services.importing import apply_import, plan_import
from geo_service.sources.catalog import load_catalog
from geo_service.sources.crs import convert
from geo_service.sources.geocoding import gazetteer_landmarks
from geo_service.sources.importing import ImportRefused
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import running_server
from tests.test_webmap_browser import SCREENSHOTS

# Near 人民公园 (WGS-84). The names say they are test data.
EAST_WEST = LineString([(118.030, 36.8125), (118.056, 36.8125)])
NORTH_SOUTH = LineString([(118.0455, 36.800), (118.0455, 36.822)])
LAKE = Polygon([(118.038, 36.806), (118.043, 36.806), (118.043, 36.809), (118.038, 36.809)])
RIVER = LineString([(118.030, 36.800), (118.036, 36.810), (118.040, 36.822)])
SQUARE = Point(118.0500, 36.8080)


def _roads(folder: Path, crs: int = 32650, **extra) -> Path:
    frame = gpd.GeoDataFrame(
        {"名称": ["示例东西路", "示例南北路"]}, geometry=[EAST_WEST, NORTH_SOUTH], crs=4326
    )
    path = folder / "roads.gpkg"
    frame.to_crs(crs).to_file(path, driver="GPKG")
    return path


def _water(folder: Path) -> Path:
    frame = gpd.GeoDataFrame({"name": ["示例湖", "示例河"]}, geometry=[LAKE, RIVER], crs=4326)
    path = folder / "water.geojson"
    frame.to_file(path, driver="GeoJSON")
    return path


def _landmarks(folder: Path, names=("示例广场",), points=(SQUARE,)) -> Path:
    frame = gpd.GeoDataFrame({"name": list(names)}, geometry=list(points), crs=4326)
    path = folder / "landmarks.shp"  # with its .prj (CGCS2000: taken as WGS-84)
    frame.to_crs(4490).to_file(path, encoding="utf-8")
    return path


def _import(store, path: Path, kind: str | None, **options):
    plan = plan_import(path, "context", store.catalog, store, kind=kind)
    return plan, apply_import(plan, store, **options)


def _context(store, kind: str) -> dict[str, object]:
    return {
        f.properties["name"]: f
        for f in store.all_features("context")
        if f.properties["kind"] == kind
    }


def test_roads_from_a_projected_geopackage_land_in_wgs84_and_import_again_unchanged(
    store, tmp_path
):
    plan, results = _import(store, _roads(tmp_path), "road")
    assert [row.status.value for row in plan.rows] == ["OK", "OK"]
    assert "coordinate system EPSG:32650, reprojected to WGS-84" in plan.notes
    assert len(results["context"].inserted) == 2
    stored = _context(store, "road")
    assert stored["示例东西路"].geometry.equals_exact(EAST_WEST, 1e-6)
    assert stored["示例南北路"].geometry.equals_exact(NORTH_SOUTH, 1e-6)
    _, again = _import(store, _roads(tmp_path), "road")
    assert again["context"].changed == 0 and len(again["context"].unchanged) == 2


def test_each_kind_replaces_only_itself(store, tmp_path):
    _import(store, _roads(tmp_path), "road")
    _import(store, _water(tmp_path), "water")
    _import(store, _landmarks(tmp_path), "landmark")
    one_road = tmp_path / "one"
    one_road.mkdir()
    frame = gpd.GeoDataFrame({"name": ["示例东西路"]}, geometry=[EAST_WEST], crs=4326)
    frame.to_file(one_road / "roads.geojson", driver="GeoJSON")
    _, results = _import(store, one_road / "roads.geojson", "road")
    assert results["context"].deleted and len(results["context"].deleted) == 1
    assert set(_context(store, "road")) == {"示例东西路"}
    assert set(_context(store, "water")) == {"示例湖", "示例河"}
    assert set(_context(store, "landmark")) == {"示例广场"}


def test_geometry_types_are_checked_per_kind_and_nothing_is_written(store, tmp_path):
    # A lake in a road file, and a nameless landmark: both rows refused.
    frame = gpd.GeoDataFrame(
        {"name": ["示例东西路", "示例湖"]}, geometry=[EAST_WEST, LAKE], crs=4326
    )
    frame.to_file(tmp_path / "mixed.geojson", driver="GeoJSON")
    plan = plan_import(tmp_path / "mixed.geojson", "context", store.catalog, store, kind="road")
    assert [row.status.value for row in plan.rows] == ["OK", "error"]
    assert "LineString or MultiLineString for a road" in " ".join(plan.rows[1].reasons)
    with pytest.raises(ImportRefused):
        apply_import(plan, store)
    assert store.count("context") == 0
    nameless = _landmarks(tmp_path, names=("示例广场", ""), points=(SQUARE, Point(118.05, 36.81)))
    plan = plan_import(nameless, "context", store.catalog, store, kind="landmark")
    assert plan.rows[1].status.value == "error"
    assert "a landmark needs a name" in plan.rows[1].reasons[0]


def test_control_characters_in_a_name_are_refused(store, tmp_path):
    frame = gpd.GeoDataFrame({"name": ["示例\x07路"]}, geometry=[EAST_WEST], crs=4326)
    frame.to_file(tmp_path / "bell.geojson", driver="GeoJSON")
    plan = plan_import(tmp_path / "bell.geojson", "context", store.catalog, store, kind="road")
    assert plan.rows[0].status.value == "error"
    assert "name" in plan.rows[0].reasons[0]


def test_a_file_without_or_with_a_wrong_crs_is_refused_with_a_clear_message(store, tmp_path):
    metres = gpd.GeoDataFrame({"name": ["示例东西路"]}, geometry=[EAST_WEST], crs=4326).to_crs(
        32650
    )
    no_prj = tmp_path / "noprj.shp"
    metres.set_crs(None, allow_override=True).to_file(no_prj)
    with pytest.raises(InvalidParameter, match=r"没有坐标系.*does not say its coordinate system"):
        plan_import(no_prj, "context", store.catalog, store, kind="road")
    # Lon/lat numbers under a projected CRS: they land near Africa's coast.
    wrong = gpd.GeoDataFrame({"name": ["示例东西路"]}, geometry=[EAST_WEST], crs=32650)
    wrong.to_file(tmp_path / "wrong.gpkg", driver="GPKG")
    plan = plan_import(tmp_path / "wrong.gpkg", "context", store.catalog, store, kind="road")
    assert plan.rows[0].status.value == "error"
    assert "coordinate system (EPSG:32650) is probably wrong" in plan.rows[0].reasons[0]
    assert any("check the file's coordinate system" in note for note in plan.notes)
    with pytest.raises(InvalidParameter, match="--kind"):
        plan_import(_water(tmp_path), "context", store.catalog, store)
    with pytest.raises(InvalidParameter, match="GeoPackage, Shapefile or GeoJSON"):
        (tmp_path / "roads.csv").write_text("name,lon,lat\nx,118.05,36.8\n", encoding="utf-8")
        plan_import(tmp_path / "roads.csv", "context", store.catalog, store, kind="road")


def test_gazetteer_landmarks_are_real_places_and_never_roads():
    catalog = load_catalog()
    landmarks = gazetteer_landmarks(catalog.directory / "gazetteer.csv")
    names = {place.name for place in landmarks}
    assert {"淄博站", "淄博人民公园", "黑铁山抗日武装起义纪念馆"} <= names
    # Proxies (a bus stop named after a hospital, a bank for a town office)
    # and derived town centres are not labelled as the place they stand for.
    assert not names & {"淄博市中心医院", "淄博市人民政府", "和平街道", "张店区政务服务中心"}
    assert not any(name.endswith("银行") or ")" in name for name in names)
    assert "柳泉路" not in names  # roads of the gazetteer are derived segments
    assert len(names) == len(landmarks)


# -- the web map ---------------------------------------------------------------


def _store_with_context(location, folder: Path) -> None:
    store = open_store(location, load_catalog())
    try:
        seed_store(store, store.catalog)
        _import(store, _roads(folder), "road")
        _import(store, _water(folder), "water")
        _import(store, _landmarks(folder), "landmark")
    finally:
        store.close()


#: Pane of a drawn layer and the stacking order of that pane.
_PANES = """() => {
  const z = name => Number(getComputedStyle(gsApp.map.getPane(name)).zIndex);
  return { context: z('gsContext'), markers: z('markerPane'), dots: z('gsPoints'),
           land: z('overlayPane') };
}"""


def test_context_is_drawn_under_the_sites_with_names_at_street_zoom(
    server_store, tmp_path, open_map
):
    _store_with_context(server_store["GEO_SERVICE_STORE"], tmp_path)
    with running_server(tmp_path, **server_store) as base:
        watched = open_map(base + "/")
        panes = watched.js(_PANES)
        assert panes["land"] < panes["context"] < panes["dots"] < panes["markers"]
        pane = watched.page.locator(".leaflet-gsContext-pane")
        assert pane.locator("path").count() >= 6  # lake, river, two roads with casings, square
        watched.js("gsApp.map.setView([36.8115, 118.0440], 11, {animate: false})")
        assert watched.page.locator(".gs-road-label").first.is_hidden()  # district view
        watched.js("gsApp.map.setView([36.8115, 118.0440], 16, {animate: false})")
        for name in ("示例东西路", "示例南北路", "示例湖", "示例广场"):
            shown = pane.locator(".gs-context-label", has_text=name)
            # Shown once the zoom has ended (the zoom is animated).
            shown.wait_for(state="visible", timeout=10_000)
            assert shown.count() == 1, name
        # Context labels are not in the tooltip pane above the markers.
        assert watched.page.locator(".leaflet-tooltip-pane .gs-context-label").count() == 0
        # A click on a road reaches the map, not the road.
        assert watched.js("getComputedStyle(gsApp.map.getPane('gsContext')).pointerEvents") == (
            "none"
        )
        # The gazetteer stands back when the office supplies context.
        assert pane.locator(".gs-context-label", has_text="淄博站").count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        watched.page.screenshot(path=str(SCREENSHOTS / "map-context-street.png"))
        assert watched.outside == [] and watched.errors == []


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2]


def test_without_tiles_or_context_the_gazetteer_labels_the_map(live_server, open_map):
    watched = open_map(live_server + "/")
    pane = watched.page.locator(".leaflet-gsContext-pane")
    # A place with a site's marker on it (within 60 m) is named by the marker.
    sites = [
        f["geometry"]["coordinates"]
        for layer in (layer.id for layer in load_catalog().facility_layers)
        for f in httpx.get(f"{live_server}/collections/{layer}/items?limit=1000").json()["features"]
    ]
    everywhere = gazetteer_landmarks(load_catalog().directory / "gazetteer.csv")
    landmarks = [p for p in everywhere if all(_metres(p.lon, p.lat, *site) >= 60 for site in sites)]
    assert 0 < len(landmarks) < len(everywhere)  # some are left to their markers
    assert pane.locator(".gs-landmark-label").count() == len(landmarks)
    station = landmarks[0]
    watched.js(f"gsApp.map.setView([{station.lat}, {station.lon}], 15, {{animate: false}})")
    label = pane.locator(".gs-landmark-label", has_text=station.name)
    label.wait_for(state="visible", timeout=10_000)
    # Its dot is at the station: the label starts just right of it.
    dot = watched.js(
        "([lat, lon]) => { const p = gsApp.map.latLngToContainerPoint([lat, lon]);"
        " const r = gsApp.map.getContainer().getBoundingClientRect();"
        " return [p.x + r.left, p.y + r.top]; }",
        [station.lat, station.lon],
    )
    box = label.bounding_box()
    assert 0 < box["x"] - dot[0] < 20 and box["y"] < dot[1] < box["y"] + box["height"]
    assert pane.locator("path.leaflet-interactive, path").count() == len(landmarks)  # dots only
    watched.js("gsApp.map.setView([36.8101, 118.0427], 14, {animate: false})")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    watched.page.screenshot(path=str(SCREENSHOTS / "map-context-gazetteer.png"))
    assert watched.outside == [] and watched.errors == []


def test_on_amap_tiles_context_is_shifted_to_gcj02(tmp_path, open_map):
    _store_with_context(tmp_path / "live.gpkg", tmp_path)
    with running_server(tmp_path, GEO_SERVICE_TILES="amap") as base:
        watched = open_map(base + "/")
        drawn = watched.js(
            "() => { let found = null; gsApp.context.eachLayer(g => g.eachLayer && g.eachLayer(l =>"
            " { if (!found && l.feature && l.feature.properties.name === '示例东西路')"
            " found = l.getLatLngs()[0]; })); return found && [found.lng, found.lat]; }"
        )
        expected = convert(*EAST_WEST.coords[0], "wgs84", "gcj02")
        assert drawn == pytest.approx(list(expected), abs=1e-6)
        # No gazetteer labels over tiles that name places themselves.
        assert watched.page.locator(".gs-landmark-label").count() == 1  # the office's square


def test_the_standalone_file_embeds_the_context(tmp_path, open_map):
    import subprocess
    import sys

    from tests.conftest import ROOT

    _store_with_context(tmp_path / "store.gpkg", tmp_path)
    out = tmp_path / "map.html"
    subprocess.run(
        [sys.executable, "-m", "geo_service.cli", "map", "--out", str(out)],
        check=True,
        cwd=ROOT,
        env={**__import__("os").environ, "GEO_SERVICE_STORE": str(tmp_path / "store.gpkg")},
        capture_output=True,
    )
    watched = open_map(out.as_uri())
    watched.js("gsApp.map.setView([36.8115, 118.0440], 16, {animate: false})")
    labels = watched.page.locator(".leaflet-gsContext-pane .gs-context-label")
    assert {"示例东西路", "示例南北路", "示例湖", "示例河", "示例广场"} <= set(
        labels.all_inner_texts()
    )
    assert watched.outside == [] and watched.errors == []
    assert httpx  # the served map is tested above; this one has no server


# -- the printed maps ----------------------------------------------------------


def _page_text(pdf: bytes, tmp_path: Path, page: int = 1) -> str:
    import subprocess

    path = tmp_path / "page.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), str(path), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_a_printed_town_page_draws_the_context_with_its_names(store, tmp_path):
    from geo_service.outputs.printing import town_pdf
    from geo_service.sources.style import default_style_file, load_style

    style = load_style(default_style_file(), store.catalog)
    _import(store, _roads(tmp_path), "road")
    _import(store, _water(tmp_path), "water")
    _import(store, _landmarks(tmp_path), "landmark")
    pdf = town_pdf(store.catalog, store, style, "370303002", base_url="https://map.example.cn")
    text = _page_text(pdf, tmp_path)
    for name in ("示例东西路", "示例南北路", "示例湖", "示例广场"):
        assert text.count(name) == 1, name  # searchable, once (the halo is no text)
    # With the office's context, the gazetteer's places stand back.
    assert "莲池法治文化公园" not in text


def test_without_context_a_printed_town_page_names_the_gazetteer_places(store, tmp_path):
    from geo_service.outputs.printing import town_pdf
    from geo_service.sources.style import default_style_file, load_style

    style = load_style(default_style_file(), store.catalog)
    pdf = town_pdf(store.catalog, store, style, "370303002", base_url="https://map.example.cn")
    text = _page_text(pdf, tmp_path)
    # Parks in 公园街道 that are not sites of the page's table.
    assert "莲池法治文化公园" in text and "小西湖公园" in text


def test_the_command_line_imports_a_kind_and_says_what_it_removed(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "geo_service.cli", "import", *args, "--store", str(store)],
            capture_output=True,
            text=True,
            env={"COLUMNS": "160", "PATH": ""},
        )

    store = tmp_path / "cli.gpkg"
    first = run(str(_roads(tmp_path)), "--layer", "context", "--kind", "road")
    assert first.returncode == 0, first.stderr
    assert "context: 2 inserted, 0 updated, 0 unchanged" in first.stdout
    one = tmp_path / "one.geojson"
    gpd.GeoDataFrame({"name": ["示例东西路"]}, geometry=[EAST_WEST], crs=4326).to_file(
        one, driver="GeoJSON"
    )
    second = run(str(one), "--layer", "context", "--kind", "road")
    # The kept road is the same feature (its id), its vertices a reprojection apart.
    assert "context: 0 inserted, 1 updated, 0 unchanged, 1 removed" in second.stdout
    wrong = run(str(one), "--layer", "stations", "--kind", "road")
    assert wrong.returncode != 0 and "--kind is for context layers" in wrong.stderr
    assert "Traceback" not in wrong.stderr


# -- hostile names ---------------------------------------------------------------


def _hostile_landmarks(folder: Path) -> Path:
    """Every stored text of the hostile corpus as a landmark's name, on a grid
    inside 公园街道 (printed on its town page, drawn at street zoom)."""
    from tests.hostile import STORED

    points = [
        Point(118.036 + 0.0025 * (i % 6), 36.804 + 0.002 * (i // 6)) for i in range(len(STORED))
    ]
    return _landmarks(folder, names=[text for _what, text in STORED], points=points)


def test_hostile_context_names_are_kept_drawn_as_text_and_printed_literally(tmp_path, open_map):
    from geo_service.outputs.printing import town_pdf
    from geo_service.sources.style import default_style_file, load_style
    from tests.hostile import STORED
    from tests.test_hostile_outputs import pdf_text, printed

    names = [text for _what, text in STORED]
    location = tmp_path / "store.gpkg"
    store = open_store(location, load_catalog())
    try:
        seed_store(store, store.catalog)
        plan, _ = _import(store, _hostile_landmarks(tmp_path), "landmark")
        assert [row.status.value for row in plan.rows] == ["OK"] * len(names)
        assert sorted(_context(store, "landmark")) == sorted(names)  # kept exactly
        style = load_style(default_style_file(), store.catalog)
        pdf = town_pdf(store.catalog, store, style, "370303002", base_url="https://map.example.cn")
    finally:
        store.close()
    text = pdf_text(pdf, tmp_path)
    for name in names:
        assert printed(name, text), name
    with running_server(tmp_path, GEO_SERVICE_STORE=str(location)) as base:
        watched = open_map(base + "/")
        watched.js("gsApp.map.setView([36.806, 118.045], 16, {animate: false})")
        labels = watched.page.locator(".leaflet-gsContext-pane .gs-landmark-label")
        assert sorted(labels.all_text_contents()) == sorted(names)
        assert watched.js("window.__pwned") is None
        assert watched.errors == [] and watched.outside == []


def _geojson(path: Path, names: list[str]) -> Path:
    """Written by hand: GDAL's writer would cut a name at a NUL."""
    features = [
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": {"type": "Point", "coordinates": [118.04 + 0.002 * i, 36.806]},
        }
        for i, name in enumerate(names)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_a_context_name_with_a_control_character_is_refused_row_by_row(store, tmp_path):
    from tests.hostile import REFUSED

    names = [text for _what, text in REFUSED if "\x00" not in text]
    plan = plan_import(
        _geojson(tmp_path / "refused.geojson", names),
        "context",
        store.catalog,
        store,
        kind="landmark",
    )
    assert [row.status.value for row in plan.rows] == ["error"] * len(names)
    with pytest.raises(ImportRefused):
        apply_import(plan, store)
    assert store.count("context") == 0


@pytest.mark.parametrize("layer", ["context", "stations"])
def test_a_geojson_with_a_nul_is_refused_not_read_cut_short(store, tmp_path, layer):
    # GDAL would read "示例\u0000站" as "示例": the file is refused instead.
    path = _geojson(tmp_path / "nul.geojson", ["示例\x00站"])
    assert "\\u0000" in path.read_text()
    with pytest.raises(InvalidParameter, match="NUL"):
        plan_import(
            path, layer, store.catalog, store, kind="landmark" if layer == "context" else None
        )
    assert store.count("context") == 0
