"""The web map in a real headless Chromium (Debian's), against a real uvicorn server.

Every request to a host other than the service is aborted and counted. In CI
(``CI=true``) a missing Chromium or Playwright fails these tests; elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from geo_service.sources.crs import convert
from tests.conftest import ROOT, Watched, missing, running_server

pytestmark = pytest.mark.server

#: CI keeps this folder; the screenshots are looked at before an issue is closed.
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# A resident in 人民公园 (WGS-84), and a spot with no marker under it at zoom 15.
PARK = (118.042742, 36.810131)
EMPTY_SPOT = (118.0650, 36.7905)


def _facility_features(base: str) -> dict[str, list[dict]]:
    layers = httpx.get(f"{base}/collections", params={"f": "json"}).json()["collections"]
    out = {}
    for layer in layers:
        if layer["id"] in {"towns", "district", "context"}:
            continue
        body = httpx.get(f"{base}/collections/{layer['id']}/items", params={"limit": 10000}).json()
        out[layer["id"]] = body["features"]
    return out


def _visible_of_layer(watched: Watched, layer_id: str) -> int:
    """Markers of the layer and clusters holding some of its sites."""
    return watched.page.locator(
        f'.leaflet-marker-pane :is([data-layer="{layer_id}"], [data-layers~="{layer_id}"])'
    ).count()


def test_the_page_loads_offline_with_every_site_boundaries_and_legend(live_server, open_map):
    watched = open_map(live_server + "/")
    features = _facility_features(live_server)
    loaded = watched.js(
        "Object.fromEntries(Object.entries(gsApp.layers).map(([k, v]) => [k, v.markers.length]))"
    )
    assert loaded == {layer: len(items) for layer, items in features.items()}
    assert watched.page.locator(".gs-marker, .gs-cluster").count() > 10
    towns = httpx.get(f"{live_server}/collections/towns/items").json()["features"]
    labels = watched.page.locator(".gs-town-label").all_inner_texts()
    assert sorted(labels) == sorted(t["properties"]["name"] for t in towns)
    legend = watched.page.locator("#gs-legend").inner_text()
    for title in ("服务站点", "拥军绿色通道", "医疗拥军", "烈士纪念设施", "国防教育阵地", "区界"):
        assert title in legend
    assert watched.page.locator("#gs-sample").is_visible()
    assert "示例数据" in watched.page.locator("#gs-sample").inner_text()
    assert watched.outside == []
    assert watched.errors == []


def test_each_layer_toggle_hides_and_shows_its_markers(live_server, open_map):
    watched = open_map(live_server + "/")
    watched.js("gsApp.map.setView([36.80, 118.05], 11)")
    for layer_id in watched.js("Object.keys(gsApp.layers)"):
        box = watched.page.locator(f'#gs-legend input[data-layer="{layer_id}"]:not([data-kind])')
        assert _visible_of_layer(watched, layer_id) > 0, layer_id
        box.uncheck()
        assert _visible_of_layer(watched, layer_id) == 0, layer_id
        box.check()
        assert _visible_of_layer(watched, layer_id) > 0, layer_id
    assert watched.errors == []


def test_a_kind_can_be_filtered_out(live_server, open_map):
    watched = open_map(live_server + "/")
    count_banks = (
        "gsApp.sites.filter(s => s.layer === 'green_channels' && s.feature.properties.kind === "
        "'bank' && gsApp.cluster.hasLayer(s.marker)).length"
    )
    assert watched.js(count_banks) > 0
    watched.page.locator('#gs-legend input[data-kind="bank"]').uncheck()
    assert watched.js(count_banks) == 0
    others = watched.js(
        "gsApp.sites.filter(s => s.layer === 'green_channels' && "
        "gsApp.cluster.hasLayer(s.marker)).length"
    )
    assert others > 0


def test_search_opens_a_popup_in_chinese_with_phone_and_navigation(phone_server, open_map):
    live_server = phone_server
    watched = open_map(live_server + "/")
    site = httpx.get(
        f"{live_server}/collections/green_channels/items", params={"kind": "bank", "limit": 1}
    ).json()["features"][0]
    assert site["properties"]["phone"] == "0533-2180000"
    name = site["properties"]["name"]
    watched.page.fill("#gs-search", name[:6])
    watched.page.locator("#gs-matches button").filter(has_text=name).first.click()
    popup = watched.page.locator(".gs-popup")
    popup.wait_for(timeout=10_000)
    assert popup.locator("h3").inner_text().startswith(name)
    text = popup.inner_text()
    assert "地址" in text and site["properties"]["address"] in text
    assert popup.locator('a[href="tel:05332180000"]').inner_text() == "0533-2180000"
    lon, lat = site["geometry"]["coordinates"]
    g_lon, g_lat = convert(lon, lat, "wgs84", "gcj02")
    b_lon, b_lat = convert(lon, lat, "wgs84", "bd09")
    amap = popup.locator('a[data-app="amap"]').get_attribute("href")
    baidu = popup.locator('a[data-app="baidu"]').get_attribute("href")
    tencent = popup.locator('a[data-app="tencent"]').get_attribute("href")
    assert f"position={g_lon:.6f},{g_lat:.6f}" in amap
    assert f"location={b_lat:.6f},{b_lon:.6f}" in baidu
    assert f"coord:{g_lat:.6f},{g_lon:.6f}" in tencent
    assert watched.outside == []


def _nearest_ids(base: str, lon: float, lat: float, **params) -> list[str]:
    body = httpx.get(f"{base}/nearest", params={"lon": lon, "lat": lat, "k": 5, **params}).json()
    return [f"{f['properties']['layer']}/{f['id']}" for f in body["features"]]


def _panel_ids(watched: Watched) -> list[str]:
    watched.page.wait_for_function(
        "document.getElementById('gs-status').textContent === '' || "
        "document.querySelectorAll('#gs-nearest li').length > 0"
    )
    buttons = watched.page.locator("#gs-nearest li button")
    return [
        f"{buttons.nth(i).get_attribute('data-layer')}/{buttons.nth(i).get_attribute('data-id')}"
        for i in range(buttons.count())
    ]


def test_clicking_the_map_lists_the_nearest_sites_in_the_apis_order(live_server, open_map):
    watched = open_map(live_server + "/")
    lon, lat = EMPTY_SPOT
    watched.js(f"gsApp.map.setView([{lat}, {lon}], 15, {{animate: false}})")
    x, y = watched.js(f"(p => [p.x, p.y])(gsApp.map.latLngToContainerPoint([{lat}, {lon}]))")
    box = watched.page.locator(".leaflet-container").bounding_box()
    # A real click on the map, where no marker sits.
    assert (
        watched.js(
            f"document.elementFromPoint({box['x'] + x}, {box['y'] + y})"
            ".closest('.leaflet-marker-icon')"
        )
        is None
    )
    watched.page.mouse.click(box["x"] + x, box["y"] + y)
    watched.page.wait_for_selector("#gs-nearest li")
    point = watched.js("[gsApp.point.lng, gsApp.point.lat]")
    assert point == pytest.approx([lon, lat], abs=2e-4)
    expected = _nearest_ids(live_server, f"{point[0]:.6f}", f"{point[1]:.6f}")
    assert _panel_ids(watched) == expected
    lines = watched.js("gsApp.nearestLayer.getLayers().filter(l => l instanceof L.Polyline).length")
    assert lines == len(expected) == 5
    # Filters go to the API too: banks only, then open now.
    watched.page.select_option("#gs-nearest-layer", "green_channels")
    watched.page.select_option("#gs-nearest-kind", "bank")
    watched.page.wait_for_function(
        "[...document.querySelectorAll('#gs-nearest li button')]"
        ".every(b => b.dataset.layer === 'green_channels')"
    )
    banks = _nearest_ids(
        live_server,
        f"{point[0]:.6f}",
        f"{point[1]:.6f}",
        layers="green_channels",
        kind="bank",
    )
    watched.page.wait_for_function(
        f"[...document.querySelectorAll('#gs-nearest li button')].map(b => b.dataset.layer + "
        f"'/' + b.dataset.id).join() === {','.join(banks)!r}"
    )
    watched.page.check("#gs-open-now")
    open_banks = _nearest_ids(
        live_server,
        f"{point[0]:.6f}",
        f"{point[1]:.6f}",
        layers="green_channels",
        kind="bank",
        open_now="true",
    )
    watched.page.wait_for_function(
        f"[...document.querySelectorAll('#gs-nearest li button')].map(b => b.dataset.layer + "
        f"'/' + b.dataset.id).join() === {','.join(open_banks)!r}"
    )
    assert watched.errors == [] and watched.outside == []


def test_a_failed_nearest_question_clears_the_previous_answer(live_server, open_map):
    watched = open_map(live_server + "/")
    watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
    watched.page.wait_for_selector("#gs-nearest li")

    def broken(route):
        route.fulfill(
            status=503,
            content_type="application/problem+json",
            body='{"title": "Store unavailable", "status": 503, "detail": "store is locked"}',
        )

    watched.page.route("**/nearest?*", broken)
    watched.js(f"gsApp.setPoint(L.latLng({EMPTY_SPOT[1]}, {EMPTY_SPOT[0]}), false)")
    watched.page.wait_for_selector("#gs-status.gs-error")
    assert "store is locked" in watched.page.locator("#gs-status").inner_text()
    assert watched.page.locator("#gs-nearest li").count() == 0
    assert watched.js("gsApp.nearestLayer.getLayers().length") == 0
    watched.page.click("#gs-language")  # switching language must not redraw the old answer
    assert watched.page.locator("#gs-nearest li").count() == 0


def test_locate_me_asks_nearest_from_the_browsers_position(live_server, open_map):
    watched = open_map(live_server + "/", 360, 740, position=PARK)
    watched.page.click("#gs-locate")
    watched.page.wait_for_selector("#gs-nearest li")
    assert watched.js("[gsApp.point.lng, gsApp.point.lat]") == pytest.approx(list(PARK))
    assert _panel_ids(watched) == _nearest_ids(live_server, *PARK)


def test_english_is_one_tap_away(live_server, open_map):
    watched = open_map(live_server + "/")
    watched.page.click("#gs-language")
    assert watched.page.locator(".gs-bar h1").inner_text() == (
        "Zhangdian military support resources map"
    )
    legend = watched.page.locator("#gs-legend").inner_text()
    assert "Green channels" in legend and "拥军绿色通道" not in legend
    assert "Sample data" in watched.page.locator("#gs-sample").inner_text()


def test_javascript_coordinate_conversion_matches_the_service(live_server, open_map):
    watched = open_map(live_server + "/")
    points = [(117.9 + 0.05 * i, 36.6 + 0.04 * j) for i in range(8) for j in range(8)]
    got = watched.js(
        "pts => pts.map(p => { const g = GeoServiceMap.wgs84ToGcj02(p[0], p[1]);"
        " return [g, GeoServiceMap.gcj02ToBd09(g[0], g[1])]; })",
        points,
    )
    for (lon, lat), (gcj, bd) in zip(points, got, strict=True):
        assert gcj == pytest.approx(list(convert(lon, lat, "wgs84", "gcj02")), abs=1e-9)
        assert bd == pytest.approx(list(convert(lon, lat, "wgs84", "bd09")), abs=1e-9)


def _settle(watched: Watched) -> None:
    """Wait for the fitted view and the clusters' animation to finish."""
    watched.page.wait_for_function("!gsApp.map._animatingZoom && !gsApp.map._panAnim?._inProgress")
    watched.page.wait_for_timeout(800)


def test_phone_and_desktop_screenshots(live_server, open_map):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, width, height in (("phone", 360, 740), ("desktop", 1280, 800)):
        watched = open_map(live_server + "/", width, height)
        watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
        watched.page.wait_for_selector("#gs-nearest li")
        _settle(watched)
        # Readable at 360 px: nothing wider than the screen, every control >= 44 px tall.
        assert watched.js("document.scrollingElement.scrollWidth") <= width
        small = watched.js(
            "[...document.querySelectorAll('.gs-panel button, .gs-panel select, "
            ".gs-panel input[type=search], .gs-check, .gs-bar button, .leaflet-bar a')]"
            ".filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)"
            ".map(e => e.outerHTML.slice(0, 80))"
        )
        assert small == []
        watched.page.screenshot(path=str(SCREENSHOTS / f"map-{name}.png"))
        # A popup's links and close button are finger-sized too.
        # (The site may sit in a cluster: focus zooms until its marker shows.)
        watched.js("gsApp.focus(gsApp.sites[0])")
        watched.page.wait_for_selector(".leaflet-popup .gs-nav a")
        sizes = watched.js(
            "[...document.querySelectorAll('.leaflet-popup-close-button, .gs-nav a')]"
            ".map(e => e.getBoundingClientRect().height)"
        )
        assert len(sizes) == 4 and min(sizes) >= 44
        assert watched.outside == [] and watched.errors == []


def test_amap_tiles_draw_every_point_at_its_gcj02_position(tmp_path, open_map):
    with running_server(tmp_path, GEO_SERVICE_TILES="amap") as base:
        watched = open_map(base + "/", position=PARK)
        # Tiles are the one allowed outside request, and only to Amap's tile host.
        assert watched.outside, "the Amap tile layer asked for no tiles"
        assert {urlparse(u).hostname.split(".", 1)[1] for u in watched.outside} == {
            "is.autonavi.com"
        }
        site = httpx.get(f"{base}/collections/stations/items", params={"limit": 1}).json()
        feature = site["features"][0]
        lon, lat = feature["geometry"]["coordinates"]
        drawn = watched.js(
            "id => { const s = gsApp.sites.find(s => s.feature.id === id);"
            " const p = s.marker.getLatLng(); return [p.lng, p.lat]; }",
            feature["id"],
        )
        expected = convert(lon, lat, "wgs84", "gcj02")
        assert drawn == pytest.approx(list(expected), abs=1e-7)
        assert abs(drawn[0] - lon) > 0.003  # really shifted, about 500 m east
        assert watched.js("gsApp.config.crs") == "gcj02"
        # The browser reports WGS-84; on Amap tiles the point is shifted before asking.
        watched.page.click("#gs-locate")
        watched.page.wait_for_selector("#gs-nearest li")
        point = watched.js("[gsApp.point.lng, gsApp.point.lat]")
        assert point == pytest.approx(list(convert(*PARK, "wgs84", "gcj02")), abs=1e-9)
        first = watched.page.locator("#gs-nearest li button").first.get_attribute("data-id")
        assert first == _nearest_ids(base, *PARK)[0].split("/", 1)[1]


def test_the_standalone_file_works_from_disk_with_no_server(tmp_path, live_server, open_map):
    out = tmp_path / "zhangdian-map.html"
    subprocess.run(
        [sys.executable, "-m", "geo_service.cli", "map", "--out", str(out)],
        env=dict(os.environ, GEO_SERVICE_STORE=str(tmp_path / "standalone.gpkg")),
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    watched = open_map(out.as_uri())
    features = _facility_features(live_server)  # the same shipped data, served
    loaded = watched.js(
        "Object.fromEntries(Object.entries(gsApp.layers).map(([k, v]) => [k, v.markers.length]))"
    )
    assert loaded == {layer: len(items) for layer, items in features.items()}
    assert watched.page.locator(".gs-town-label").count() == 13
    assert watched.page.locator("#gs-sample").is_visible()
    watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
    watched.page.wait_for_selector("#gs-nearest li")
    # Computed in the page on a sphere; at these distances the order is the API's.
    assert _panel_ids(watched) == _nearest_ids(live_server, *PARK)
    # Open now is worked out in the file from the clock (tests/test_webmap_clutter.py).
    assert watched.page.locator("#gs-open-now").is_enabled()
    assert watched.outside == [] and watched.errors == []
    assert 'src="http' not in Path(out).read_text(encoding="utf-8")


# -- vector tiles for layers above the style's vector_tiles_above ----------------

#: With this threshold the three larger sample layers (25, 29, 25 sites) are
#: tiled and the two small ones (4, 7) keep their markers: both paths on one page.
TILED_ABOVE = 10
TILED = {"stations", "green_channels", "medical"}


def _style_with_threshold(folder: Path, above: int) -> Path:
    from geo_service.sources.style import default_style_file

    text = default_style_file().read_text(encoding="utf-8")
    assert "vector_tiles_above = 5000" in text
    path = folder / "style.toml"
    path.write_text(text.replace("vector_tiles_above = 5000", f"vector_tiles_above = {above}"))
    return path


@pytest.fixture
def tiled_server(tmp_path) -> Iterator[str]:
    # One server per test: a tiled page makes ~80 tile requests, and
    # running_server() never reads the server's piped output, so after about
    # 700 access-log lines the server blocks writing its log.
    style = _style_with_threshold(tmp_path, TILED_ABOVE)
    with running_server(tmp_path, GEO_SERVICE_STYLE_FILE=str(style)) as base:
        yield base


def _tile_stats(watched: Watched) -> dict[str, dict]:
    """Per tiled layer, what its canvas tiles drew (the page's own record)."""
    watched.page.wait_for_function("gsApp.tilesIdle()", timeout=30_000)
    return watched.js(
        "Object.fromEntries(Object.entries(gsApp.layers).filter(([k, v]) => v.tiled && v.visible)"
        ".map(([k, v]) => [k, v.tiles.stats()]))"
    )


def _tile_of(lon: float, lat: float, z: int) -> str:
    """The Web Mercator tile holding a WGS-84 point, as z/x/y."""
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return f"{z}/{x}/{y}"


def _python_decode(body: bytes) -> dict:
    import mapbox_vector_tile

    # y_coord_down: tile units as stored (y down), as the page reads them.
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True}) if body else {}


def _decoded_in_python(base: str, layer_id: str, key: str) -> dict:
    return _python_decode(httpx.get(f"{base}/collections/{layer_id}/tiles/{key}.mvt").content)


def test_layers_above_the_threshold_are_drawn_from_vector_tiles(tiled_server, open_map):
    watched = open_map(tiled_server + "/")
    stats = _tile_stats(watched)
    assert set(stats) == TILED
    features = _facility_features(tiled_server)
    # Tiled layers were never fetched as GeoJSON; the small ones were, and got markers.
    items = [urlparse(u) for u in watched.local if "/items" in u]
    fetched_whole = {u.path.split("/")[2] for u in items if "limit=10000" in u.query}
    assert fetched_whole == {"memorials", "education", "towns", "district", "context"}
    for layer_id in ("memorials", "education"):
        assert watched.js(f"gsApp.layers.{layer_id}.markers.length") == len(features[layer_id])
    assert _visible_of_layer(watched, "stations") == 0  # no marker of a tiled layer
    tile_paths = [urlparse(u).path for u in watched.local if u.endswith(".mvt")]
    assert {p.split("/")[2] for p in tile_paths} == TILED
    z = watched.js("gsApp.map.getZoom()")
    for layer_id in TILED:
        layer_stats = stats[layer_id]
        # Each site is drawn once (in the tile that holds it, not again in a
        # neighbour's buffer), every site of the district being in view.
        assert sorted(layer_stats["ids"]) == sorted(f["id"] for f in features[layer_id])
        for key, tile in layer_stats["tiles"].items():
            expected = sorted(
                f["id"]
                for f in features[layer_id]
                if _tile_of(*f["geometry"]["coordinates"], z) == key
            )
            assert sorted(p["id"] for p in tile["drawn"]) == expected, (layer_id, key)
            # The page decoded as many points as mapbox-vector-tile finds in the tile.
            python = _decoded_in_python(tiled_server, layer_id, key)
            assert tile["decoded"] == len(python.get(layer_id, {}).get("features", [])), key
    legend = watched.page.locator("#gs-legend").inner_text()
    assert "服务站点" in legend and f"{len(features['stations'])}个" in legend
    assert watched.page.locator("#gs-sample").is_visible()  # the tiled sample says so too
    assert watched.outside == [] and watched.errors == []


def test_with_the_default_threshold_the_sample_map_keeps_its_markers(live_server, open_map):
    watched = open_map(live_server + "/")
    assert watched.js("gsApp.config.vectorTilesAbove") == 5000
    assert watched.js("Object.values(gsApp.layers).filter(l => l.tiled).length") == 0
    assert [u for u in watched.local if "/tiles/" in u] == []
    assert watched.page.locator(".gs-vt-tile").count() == 0
    assert watched.page.locator(".gs-marker, .gs-cluster").count() > 10


def _drawn_positions_match(watched: Watched, base: str, crs: str) -> None:
    """Every drawn dot is within a pixel of where the API puts its site (in
    the basemap's coordinates), i.e. where its marker would be."""
    stats = _tile_stats(watched)
    features = _facility_features(base)
    for layer_id, layer_stats in stats.items():
        where = {f["id"]: f["geometry"]["coordinates"] for f in features[layer_id]}
        drawn = [p for tile in layer_stats["tiles"].values() for p in tile["drawn"]]
        assert drawn and len({p["id"] for p in drawn}) == len(drawn) <= len(where)
        pairs = [[p["lng"], p["lat"], *convert(*where[p["id"]], "wgs84", crs)] for p in drawn]
        worst = watched.js(
            "pairs => Math.max(...pairs.map(([a, b, c, d]) => "
            "gsApp.map.latLngToContainerPoint([b, a]).distanceTo("
            "gsApp.map.latLngToContainerPoint([d, c]))))",
            pairs,
        )
        assert worst <= 1.0, (layer_id, worst)


# A dot of the layer with nothing within 30 px (no other dot, marker, cluster
# or town label) and clear of the panel, so a click or a pixel is its alone.
_ISOLATED_DOT = """layerId => {
  const map = gsApp.map, box = map.getContainer().getBoundingClientRect();
  const panel = document.getElementById('gs-panel').getBoundingClientRect();
  const dots = [];
  for (const [id, e] of Object.entries(gsApp.layers)) {
    if (!e.tiled || !e.visible) continue;
    for (const t of Object.values(e.tiles.stats().tiles)) for (const p of t.drawn) {
      const c = map.latLngToContainerPoint([p.lat, p.lng]);
      dots.push({layer: id, p, x: box.left + c.x, y: box.top + c.y});
    }
  }
  const things = [...document.querySelectorAll('.leaflet-marker-icon, .gs-town-label')]
    .map(e => e.getBoundingClientRect());
  const near = (d, r) =>
    d.x > r.left - 30 && d.x < r.right + 30 && d.y > r.top - 30 && d.y < r.bottom + 30;
  const ok = dots.filter(d => d.layer === layerId &&
    d.x > panel.right + 30 && d.x < box.right - 80 &&
    d.y > box.top + 120 && d.y < box.bottom - 50 &&
    dots.every(o => o === d || Math.hypot(o.x - d.x, o.y - d.y) > 30) &&
    !things.some(r => near(d, r)));
  if (!ok.length) return null;
  const d = ok[0];
  return {id: d.p.id, name: d.p.name, kind: d.p.kind, x: d.x, y: d.y,
    colour: gsApp.kindConfig(layerId, d.p.kind).colour};
}"""


def _pixel(watched: Watched, x: float, y: float) -> tuple[int, int, int]:
    import io

    from PIL import Image

    png = watched.page.screenshot(clip={"x": round(x), "y": round(y), "width": 1, "height": 1})
    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))


def _is_colour(rgb: tuple[int, int, int], hex_colour: str) -> bool:
    want = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return all(abs(a - b) <= 12 for a, b in zip(rgb, want, strict=True))


def test_tiled_dots_are_drawn_where_the_markers_would_be(tiled_server, open_map):
    watched = open_map(tiled_server + "/")
    _drawn_positions_match(watched, tiled_server, "wgs84")
    watched.js("gsApp.map.setView([36.80, 118.05], 14, {animate: false})")
    _drawn_positions_match(watched, tiled_server, "wgs84")
    assert watched.errors == []


def test_toggling_a_tiled_layer_and_one_of_its_kinds(tiled_server, open_map):
    watched = open_map(tiled_server + "/")
    _tile_stats(watched)
    dot = watched.js(_ISOLATED_DOT, "stations")
    assert dot, "no station dot stands alone at this view"
    # The pixel under the site is the kind's colour: the canvas really drew it.
    assert _is_colour(_pixel(watched, dot["x"], dot["y"]), dot["colour"])
    box = watched.page.locator('#gs-legend input[data-layer="stations"]:not([data-kind])')
    box.uncheck()
    assert watched.page.locator(".gs-vt-stations .gs-vt-tile").count() == 0
    assert not _is_colour(_pixel(watched, dot["x"], dot["y"]), dot["colour"])
    assert "stations" not in _tile_stats(watched)
    box.check()
    stats = _tile_stats(watched)
    assert dot["id"] in stats["stations"]["ids"]
    assert _is_colour(_pixel(watched, dot["x"], dot["y"]), dot["colour"])
    # A kind: the canvas is redrawn without it, from the tiles already fetched.
    tiles_before = len([u for u in watched.local if u.endswith(".mvt")])
    features = _facility_features(tiled_server)["green_channels"]
    banks = {f["id"] for f in features if f["properties"]["kind"] == "bank"}
    assert banks
    watched.page.locator(
        '#gs-legend input[data-layer="green_channels"][data-kind="bank"]'
    ).uncheck()
    drawn = set(_tile_stats(watched)["green_channels"]["ids"])
    assert drawn == {f["id"] for f in features} - banks
    watched.page.locator('#gs-legend input[data-layer="green_channels"][data-kind="bank"]').check()
    assert set(_tile_stats(watched)["green_channels"]["ids"]) == {f["id"] for f in features}
    assert len([u for u in watched.local if u.endswith(".mvt")]) == tiles_before
    assert watched.outside == [] and watched.errors == []


def test_clicking_a_tiled_dot_opens_the_sites_popup(tiled_server, open_map):
    watched = open_map(tiled_server + "/")
    _tile_stats(watched)
    dot = watched.js(_ISOLATED_DOT, "green_channels")
    assert dot
    site = httpx.get(f"{tiled_server}/collections/green_channels/items/{dot['id']}").json()
    watched.page.mouse.click(dot["x"] + 3, dot["y"] - 2)  # a finger is never exact
    popup = watched.page.locator(".gs-popup h3")
    popup.wait_for(timeout=10_000)
    assert popup.inner_text().startswith(site["properties"]["name"])
    text = watched.page.locator(".gs-popup").inner_text()
    assert site["properties"]["address"] in text and "拥军绿色通道" in text
    assert watched.page.locator('.gs-popup a[data-app="amap"]').count() == 1
    assert watched.js("gsApp.point") is None  # the click opened the site, not a nearest query
    # Open-now states: the marker layers' at load, the tiled site's with its popup.
    states = [urlparse(u).query for u in watched.local if urlparse(u).path == "/open-state"]
    assert states[0] == "layers=memorials,education"
    assert f"layers=green_channels&id={dot['id']}" in states
    state = httpx.get(
        f"{tiled_server}/open-state", params={"layers": "green_channels", "id": dot["id"]}
    ).json()["sites"][f"green_channels/{dot['id']}"]
    assert watched.page.locator(f".gs-popup .gs-badge.gs-{state}").count() == 1
    assert any(
        u.endswith(f"/collections/green_channels/items/{dot['id']}?crs=wgs84")
        for u in watched.local
    )
    assert watched.outside == [] and watched.errors == []


def _five_sites_in_one_cell(store_path: Path) -> tuple[str, list[str], tuple[float, float]]:
    """Five more green channels of one kind, ~20 m apart around the centre of
    one thinning cell at zoom 12 near the park; their kind, ids and centre."""
    import math

    from geo_service.sources.catalog import load_catalog
    from geo_service.store import open_store
    from geo_service.store.tiles import CELL, EXTENT

    size = EXTENT * 2**12  # zoom 12, tile units

    def lonlat(px: float, py: float) -> tuple[float, float]:
        lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * py / size))))
        return px / size * 360 - 180, lat

    lat = math.radians(PARK[1])
    px = (PARK[0] + 180) / 360 * size
    py = (1 - math.asinh(math.tan(lat)) / math.pi) / 2 * size
    cx, cy = (px // CELL + 0.5) * CELL, (py // CELL + 0.5) * CELL
    catalog = load_catalog()
    store = open_store(store_path, catalog)
    template = store.all_features("green_channels")[0].properties
    sites = [
        catalog.validate_feature(
            "green_channels",
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(cx + dx, cy + dy)},
                "properties": {**template, "id": f"gc-thinned-{n}", "name": f"示例：同处窗口{n}"},
            },
        )
        for n, (dx, dy) in enumerate([(0, 0), (10, 0), (-10, 0), (0, 10), (0, -10)])
    ]
    store.write("green_channels", sites, actor="test:thinning")
    store.close()
    return template["kind"], [site.id for site in sites], lonlat(cx, cy)


def test_a_thinned_dot_says_how_many_sites_it_stands_for_and_zooms_to_them(tmp_path, open_map):
    style = _style_with_threshold(tmp_path, TILED_ABOVE)
    with running_server(tmp_path, GEO_SERVICE_STYLE_FILE=str(style)) as base:
        kind, ids, (lon, lat) = _five_sites_in_one_cell(tmp_path / "live.gpkg")
        watched = open_map(base + "/")
        watched.js(f"gsApp.map.setView([{lat}, {lon}], 12, {{animate: false}})")
        drawn = [
            p
            for tile in _tile_stats(watched)["green_channels"]["tiles"].values()
            for p in tile["drawn"]
            if p["id"] in ids
        ]
        # One dot for the five, the lowest id, counting them all (and any
        # sample site of that kind in the cell); no name at this zoom.
        assert [p["id"] for p in drawn] == [min(ids)] and drawn[0]["count"] >= 5
        assert drawn[0]["kind"] == kind and drawn[0]["name"] is None
        count = drawn[0]["count"]
        box = watched.js(
            "([lat, lng]) => { const c = gsApp.map.latLngToContainerPoint([lat, lng]);"
            " const r = gsApp.map.getContainer().getBoundingClientRect();"
            " return [r.left + c.x, r.top + c.y]; }",
            [drawn[0]["lat"], drawn[0]["lng"]],
        )
        watched.page.mouse.click(box[0] + 2, box[1] - 1)
        note = watched.page.locator(".gs-popup .gs-thinned")
        note.wait_for(timeout=10_000)
        assert f"此处共有 {count} 个同类地点" in note.inner_text()
        assert watched.page.locator(".gs-popup h3").inner_text().startswith("示例：同处窗口0")
        _settle(watched)  # the map pans to make room for the popup
        box = note.bounding_box()
        header = watched.js("document.querySelector('.gs-top').getBoundingClientRect().bottom")
        assert box and box["y"] >= header and box["y"] + box["height"] <= 800
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        watched.page.screenshot(path=str(SCREENSHOTS / "map-thinned-dot-popup.png"))
        note.locator("button").click()
        # The zoom is animated; its tiles come after it, each of the five with its own dot.
        watched.page.wait_for_function(
            "ids => ids.every(id => gsApp.layers.green_channels.tiles.stats().ids.includes(id))",
            arg=ids,
            timeout=15_000,
        )
        assert watched.js("gsApp.map.getZoom()") == watched.js("gsApp.config.tileDetailZoom")
        close = _tile_stats(watched)["green_channels"]["tiles"].values()
        shown = [p for tile in close for p in tile["drawn"] if p["id"] in ids]
        assert sorted(p["id"] for p in shown) == sorted(ids)
        assert all(p["count"] is None and p["name"] for p in shown)
        assert watched.outside == [] and watched.errors == []


def test_a_nearest_result_on_a_tiled_layer_opens_its_popup(tiled_server, open_map):
    watched = open_map(tiled_server + "/")
    watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
    watched.page.wait_for_selector("#gs-nearest li")
    button = watched.page.locator("#gs-nearest li button[data-layer='green_channels']").first
    site_id = button.get_attribute("data-id")
    site = httpx.get(f"{tiled_server}/collections/green_channels/items/{site_id}").json()
    button.click()
    popup = watched.page.locator(".gs-popup h3")
    popup.wait_for(timeout=10_000)
    assert popup.inner_text().startswith(site["properties"]["name"])
    assert watched.errors == []


def _as_compared(python: dict) -> dict:
    """mapbox-vector-tile's answer in the shape the page's decoder returns."""
    out = {}
    for name, layer in python.items():
        features = []
        for feature in layer["features"]:
            geometry = feature["geometry"]
            points = None
            if geometry["type"] == "Point":
                points = [geometry["coordinates"]]
            elif geometry["type"] == "MultiPoint":
                points = geometry["coordinates"]
            features.append({"properties": feature["properties"], "points": points})
        out[name] = {"version": layer["version"], "extent": layer["extent"], "features": features}
    return out


_DECODE_IN_PAGE = """base64 => {
  const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  const layers = GeoServiceTiles.decode(bytes);
  return Object.fromEntries(Object.entries(layers).map(([name, l]) => [name, {
    version: l.version, extent: l.extent,
    features: l.features.map(f => ({properties: f.properties, points: f.points}))}]));
}"""


def _tile_checks(base: str) -> list[tuple[str, str]]:
    """Tiles to compare: every tile with sites at the page's zoom 12, the whole
    district at zoom 9, and some close-ups."""
    features = _facility_features(base)
    keys = set()
    for layer_id, items in features.items():
        for f in items:
            for z in (9, 12, 16):
                keys.add((layer_id, _tile_of(*f["geometry"]["coordinates"], z)))
    return sorted(keys)


def _compare_decoders(base: str, open_map) -> int:
    """Decode the same tiles in the page and with mapbox-vector-tile; the
    number of features compared."""
    watched = open_map(base + "/")
    checks = _tile_checks(base)
    with httpx.Client(base_url=base) as http:
        bodies = [http.get(f"/collections/{lid}/tiles/{key}.mvt").content for lid, key in checks]
    in_page = watched.js(
        f"tiles => tiles.map({_DECODE_IN_PAGE})", [base64.b64encode(b).decode() for b in bodies]
    )
    compared = 0
    for (layer_id, key), body, decoded in zip(checks, bodies, in_page, strict=True):
        assert decoded == _as_compared(_python_decode(body)), (layer_id, key)
        compared += len(decoded.get(layer_id, {}).get("features", []))
    assert watched.errors == []
    return compared


def test_the_page_decodes_tiles_as_mapbox_vector_tile_does(tiled_server, open_map):
    assert _compare_decoders(tiled_server, open_map) > 200


def test_the_page_decodes_postgis_tiles_as_mapbox_vector_tile_does(tmp_path, open_map):
    """ST_AsMVT writes its tiles its own way (attribute order, value types)."""
    from tests.conftest import TEST_PG

    if not TEST_PG:
        missing("no PostGIS database (set GEO_SERVICE_TEST_PG=postgresql://...)")
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in TEST_PG else "?"
    try:
        with running_server(
            tmp_path, GEO_SERVICE_STORE=f"{TEST_PG}{separator}schema={schema}"
        ) as base:
            assert _compare_decoders(base, open_map) > 200
    finally:
        with psycopg.connect(TEST_PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_every_value_type_and_multipoints_decode_as_in_python(tiled_server, open_map):
    """A tile written with the protobuf classes themselves: each of the seven
    value types, a multipoint, negative deltas, keys after features, and a
    polygon whose attributes are read and geometry is not."""
    import mapbox_vector_tile
    from mapbox_vector_tile.Mapbox import vector_tile_pb2

    tile = vector_tile_pb2.tile()
    layer = tile.layers.add()
    layer.version, layer.name, layer.extent = 2, "测试", 512
    values = [
        ("string_value", "张店区 · Zhangdian"),
        ("float_value", 0.1),
        ("double_value", -118.0428),
        ("int_value", -5),
        ("uint_value", 2**40 + 3),
        ("sint_value", -123456789012),
        ("bool_value", True),
        ("int_value", 7),
    ]
    for kind, value in values:
        setattr(layer.values.add(), kind, value)
    point = layer.features.add()
    point.type = vector_tile_pb2.tile.Point
    point.tags.extend([0, 0, 1, 1, 2, 2, 3, 3])
    point.geometry.extend([(1 << 3) | 1, 50 << 1, 100 << 1])  # MoveTo(1) (50, 100)
    multi = layer.features.add()
    multi.type = vector_tile_pb2.tile.Point
    multi.tags.extend([4, 4, 5, 5, 6, 6, 7, 7])
    # MoveTo(3): (10, 20), then -5, +7 and +600, -30 (zigzag: 2n, or -2n-1)
    multi.geometry.extend([(3 << 3) | 1, 20, 40, 9, 14, 1200, 59])
    polygon = layer.features.add()
    polygon.type = vector_tile_pb2.tile.Polygon
    polygon.tags.extend([0, 7])
    polygon.geometry.extend([9, 0, 0, 26, 20, 0, 0, 20, 19, 0, 15])
    layer.keys.extend(["name", "f32", "f64", "neg", "big", "sneg", "flag", "n"])
    body = tile.SerializeToString()
    watched = open_map(tiled_server + "/")
    in_page = watched.js(_DECODE_IN_PAGE, base64.b64encode(body).decode())
    python = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    assert in_page == _as_compared(python)
    assert in_page["测试"]["features"][1]["points"] == [[10, 20], [5, 27], [605, -3]]
    assert in_page["测试"]["features"][2]["points"] is None
    assert watched.js(_DECODE_IN_PAGE, "") == {}  # an empty tile: no layers
    broken = watched.js(
        "bytes => { try { GeoServiceTiles.decode(new Uint8Array(bytes)); return null; }"
        " catch (e) { return e.message; } }",
        list(body[:-3]),
    )
    assert broken and broken.startswith("MVT:")


def test_tiled_dots_follow_amap_gcj02_like_the_markers(tmp_path, open_map):
    style = _style_with_threshold(tmp_path, TILED_ABOVE)
    with running_server(
        tmp_path, GEO_SERVICE_TILES="amap", GEO_SERVICE_STYLE_FILE=str(style)
    ) as base:
        watched = open_map(base + "/")
        _drawn_positions_match(watched, base, "gcj02")
        watched.js("gsApp.map.setView([36.80, 118.05], 16, {animate: false})")
        _drawn_positions_match(watched, base, "gcj02")
        assert not [u for u in watched.outside if "/tiles/" in u and ".mvt" in u]


def test_tiled_screenshot(tmp_path, live_server, open_map):
    """The same view drawn from vector tiles (every layer) and with markers,
    saved side by side in artifacts/screenshots for a person to compare."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    style = _style_with_threshold(tmp_path, 1)
    view = "gsApp.map.setView([36.800, 118.045], 13, {animate: false})"
    with running_server(tmp_path, GEO_SERVICE_STYLE_FILE=str(style)) as base:
        watched = open_map(base + "/", 1280, 800)
        watched.js(view)
        assert len(_tile_stats(watched)) == 5
        _settle(watched)
        watched.page.screenshot(path=str(SCREENSHOTS / "map-tiled-desktop.png"))
        assert watched.outside == [] and watched.errors == []
    watched = open_map(live_server + "/", 1280, 800)
    watched.js(view)
    _settle(watched)
    watched.page.screenshot(path=str(SCREENSHOTS / "map-markers-same-view.png"))


#: OSM hours, feet and miles: none of them may reach what a resident reads.
_NOT_FOR_RESIDENTS = re.compile(
    r"\b(?:Mo|Tu|We|Th|Fr|Sa|Su)-(?:Mo|Tu|We|Th|Fr|Sa|Su)\b|\d\s*(?:ft|mi)\b"
)


def _open_popup(watched: Watched, key: str) -> str:
    """Opens the popup of the marker site ``layer/id`` (the last one closed first)."""
    watched.js("() => gsApp.map.closePopup()")
    watched.page.wait_for_function("!document.querySelector('.gs-popup')")
    watched.js(
        "key => gsApp.focus(gsApp.sites.find(s => s.layer + '/' + s.feature.id === key))", key
    )
    popup = watched.page.locator(".gs-popup")
    popup.wait_for(timeout=10_000)
    return popup.inner_text()


@pytest.mark.parametrize(("width", "height"), [(360, 740), (1280, 800)])
def test_hours_read_in_the_residents_language_and_closed_sites_say_when_they_open(
    live_server, open_map, width, height
):
    watched = open_map(live_server + "/", width=width, height=height)
    watched.page.wait_for_function("gsApp.statesAt !== null")
    hours = watched.js(
        "() => { const out = {}; gsApp.sites.forEach(s => { const h = s.feature.properties"
        ".opening_hours; if (h && !(h in out)) out[h] = s.layer + '/' + s.feature.id; });"
        " return out; }"
    )
    assert len(hours) >= 5
    closed = watched.js("() => Object.keys(gsApp.opens)")
    assert closed, "no closed site: the sample hours always leave one"
    # A site with several services shows them as a list in either language.
    listed = watched.js(
        "() => { const s = gsApp.sites.find(s => (s.feature.properties.services || []).length > 1);"
        " return [s.layer + '/' + s.feature.id, s.feature.properties.services.map(v =>"
        " gsApp.config.values.services[v].en).join(', ')]; }"
    )
    keys = [*sorted(hours.values())[:5], closed[0], listed[0]]
    scale = watched.page.locator(".leaflet-control-scale-line")
    assert scale.count() == 1 and re.fullmatch(r"\d+ k?m", scale.inner_text())
    for lang in ("zh", "en"):
        for key in keys:
            text = _open_popup(watched, key)
            seen = watched.page.locator("body").inner_text()
            assert not _NOT_FOR_RESIDENTS.search(seen), (lang, key, text)
            assert "开放时间（原文）" not in text and "as written" not in text
        text = _open_popup(watched, closed[0])
        if lang == "zh":
            # One state word: the badge says 已关闭, the next opening says when.
            states = watched.page.locator(".gs-popup .gs-badge:not(.gs-sample-tag)")
            assert states.count() == 1 and states.inner_text() == "已关闭"
            assert re.search(r"(?:今天|明天|周[一二三四五六日]|\d+月\d+日) \d\d:\d\d 开放", text)
            zh_hours = text
        else:
            assert "Closed" in text
            assert re.search(
                r"opens (?:today|tomorrow|[A-Z][a-z]{2}|\d+ [A-Z][a-z]{2}) \d\d:\d\d", text
            )
            assert re.search(r"Daily|Mon|Tue|Sat", text)
            assert listed[1] in _open_popup(watched, listed[0])
        if lang == "zh":
            assert re.search(r"每天|周[一二三四五六日]", zh_hours)
            watched.page.click("#gs-language")
    watched.page.wait_for_timeout(600)  # the popup's fade-in and pan
    watched.page.screenshot(path=str(SCREENSHOTS / f"map-hours-{width}.png"))
    assert watched.outside == [] and watched.errors == []


def test_hours_the_map_cannot_word_are_shown_as_written(live_server, open_map):
    watched = open_map(live_server + "/")
    watched.page.wait_for_function("gsApp.statesAt !== null")
    key = watched.js(
        "() => { const s = gsApp.sites.find(s => s.feature.properties.opening_hours);"
        " s.feature.properties.opening_hours = 'Mo-Fr 09:00-17:00 || \"by appointment\"';"
        " return s.layer + '/' + s.feature.id; }"
    )
    text = _open_popup(watched, key)
    assert "开放时间（原文）" in text and 'Mo-Fr 09:00-17:00 || "by appointment"' in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [("bank", "bank"), ("BANK", "bank"), ("ＢＡＮＫ", "bank"), ("银行", "bank")],
)
def test_search_finds_sites_by_chinese_or_english_words(live_server, open_map, query, expected):
    watched = open_map(live_server + "/")
    watched.page.fill("#gs-search", query)
    found = watched.js(
        "() => Array.from(document.querySelectorAll('#gs-matches button'), b => b.textContent)"
    )
    assert found, query
    kinds = watched.js(
        "() => gsApp.sites.filter(s => s.feature.properties.kind === 'bank')"
        ".map(s => s.feature.properties.name)",
    )
    assert kinds and any(name in text for text in found for name in kinds), (query, found)
