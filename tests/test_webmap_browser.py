"""The web map in a real headless Chromium (Debian's), against a real uvicorn server.

Every request to a host other than the service is aborted and counted. In CI
(``CI=true``) a missing Chromium or Playwright fails these tests; elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from geo_service.crs import convert
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.server

CHROMIUM = os.environ.get("GEO_SERVICE_CHROMIUM") or shutil.which("chromium")
#: CI keeps this folder; the screenshots are looked at before an issue is closed.
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# A resident in 人民公园 (WGS-84), and a spot with no marker under it at zoom 15.
PARK = (118.042742, 36.810131)
EMPTY_SPOT = (118.0650, 36.7905)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not CHROMIUM:
        _missing("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Watched:
    page: object
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"file", "data", "blob"} or parsed.hostname in {
        "127.0.0.1",
        "localhost",
    }


@pytest.fixture
def open_map(browser) -> Iterator:
    contexts = []

    def opener(url: str, width: int = 1280, height: int = 800, position=None) -> Watched:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            locale="zh-CN",
            geolocation=position and {"longitude": position[0], "latitude": position[1]},
            permissions=["geolocation"] if position else [],
        )
        contexts.append(context)
        watched = Watched(context.new_page())

        def route(request_route):
            if _is_local(request_route.request.url):
                request_route.continue_()
            else:
                watched.outside.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        watched.page.on(
            "console", lambda m: watched.errors.append(m.text) if m.type == "error" else None
        )
        watched.page.on("pageerror", lambda e: watched.errors.append(str(e)))
        watched.page.goto(url)
        watched.page.wait_for_selector("body[data-gs-ready]", timeout=30_000)
        assert watched.page.get_attribute("body", "data-gs-ready") == "1", watched.errors
        return watched

    yield opener
    for context in contexts:
        context.close()


def _facility_features(base: str) -> dict[str, list[dict]]:
    layers = httpx.get(f"{base}/collections", params={"f": "json"}).json()["collections"]
    out = {}
    for layer in layers:
        if layer["id"] in {"towns", "district"}:
            continue
        body = httpx.get(f"{base}/collections/{layer['id']}/items", params={"limit": 10000}).json()
        out[layer["id"]] = body["features"]
    return out


def _visible_of_layer(watched: Watched, layer_id: str) -> int:
    return watched.page.locator(f'.leaflet-marker-pane [data-layer="{layer_id}"]').count()


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
        "'bank' && gsApp.layers.green_channels.cluster.hasLayer(s.marker)).length"
    )
    assert watched.js(count_banks) > 0
    watched.page.locator('#gs-legend input[data-kind="bank"]').uncheck()
    assert watched.js(count_banks) == 0
    others = watched.js(
        "gsApp.sites.filter(s => s.layer === 'green_channels' && "
        "gsApp.layers.green_channels.cluster.hasLayer(s.marker)).length"
    )
    assert others > 0


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory) -> Iterator[str]:
    """A server whose first bank has a phone number (the sample data has none
    it could verify), so the popup's tel: link is tested for real."""
    from geo_service.catalog import ValidFeature, load_catalog
    from geo_service.seeding import seed_store
    from geo_service.store import open_store

    folder = tmp_path_factory.mktemp("phone")
    store = open_store(folder / "live.gpkg", load_catalog())
    seed_store(store, store.catalog)
    bank = store.query("green_channels", filters={"kind": ["bank"]}, limit=1).features[0]
    props = dict(bank.properties, phone="0533-2180000")
    store.write("green_channels", [ValidFeature(bank.id, props, bank.geometry)], actor="test")
    store.close()
    with running_server(folder) as base:
        yield base


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
        watched.js("gsApp.sites[0].marker.openPopup()")
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
    assert watched.page.locator("#gs-open-now").is_disabled()
    assert watched.outside == [] and watched.errors == []
    assert 'src="http' not in Path(out).read_text(encoding="utf-8")
