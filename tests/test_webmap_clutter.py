"""Less clutter on the resident map, an honest sample notice and open-now in
the offline file: one clustering across layers, town names clear of markers,
one glyph per kind, a plain-text attribution prefix, a notice that counts
the examples and can be closed, and the standalone file telling what is
open from the reader's clock.

Browser tests run in Debian's Chromium against a real server (or the file
opened from disk), as in ``test_webmap_browser``.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geo_service.analysis.nearest import LOCAL_TIME
from geo_service.errors import StyleError
from geo_service.settings import Settings
from geo_service.sources.style import default_style_file, load_style
from geo_service.web.markup import read_json_script
from geo_service.web.page import OFFLINE_HORIZON, site_times
from tests.conftest import ROOT, running_server
from tests.test_webmap_browser import (
    PARK,
    SCREENSHOTS,
    TILED_ABOVE,
    Watched,
    _facility_features,
    _style_with_threshold,
)

# -- one glyph per kind, refused when shared ------------------------------------


def test_every_kind_of_the_shipped_style_has_its_own_glyph(catalog):
    style = load_style(default_style_file(), catalog)
    glyphs = [look.glyph for kinds in style.kinds.values() for look in kinds.values()]
    assert len(glyphs) == sum(len(layer.kinds) for layer in catalog.facility_layers)
    assert len(set(glyphs)) == len(glyphs)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        # A bank drawn with the hospital's glyph.
        (('bank = { glyph = "银" }', 'bank = { glyph = "医" }'), ["bank", "hospital"]),
        # A layer's swatch drawn with another layer's kind's glyph.
        (
            ('glyph = "健"\n[layers.medical.kinds]', 'glyph = "医"\n[layers.medical.kinds]'),
            ["layers.medical.glyph", "green_channels.kinds.hospital"],
        ),
        # Kinds left without a glyph inherit their layer's: two share it.
        (
            ('town_station = { glyph = "镇" }\ncommunity_station = { glyph = "村" }\n', ""),
            ["stations.kinds.town_station", "stations.kinds.community_station"],
        ),
    ],
)
def test_a_style_with_a_glyph_shared_by_two_kinds_is_refused_naming_them(
    tmp_path, catalog, edit, named
):
    text = default_style_file().read_text(encoding="utf-8")
    assert edit[0] in text
    path = tmp_path / "style.toml"
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(StyleError, match="glyph") as refused:
        load_style(path, catalog)
    for name in named:
        assert name in str(refused.value)


def test_the_attribution_prefix_comes_from_the_style_as_text(tmp_path, catalog):
    text = default_style_file().read_text(encoding="utf-8")
    assert load_style(default_style_file(), catalog).config(catalog)["attributionPrefix"] == (
        "Leaflet"
    )
    path = tmp_path / "style.toml"
    path.write_text(text.replace('attribution_prefix = "Leaflet"', "attribution_prefix = 1"))
    with pytest.raises(StyleError, match=r"map\.attribution_prefix"):
        load_style(path, catalog)
    path.write_text(text.replace('attribution_prefix = "Leaflet"', ""))  # an older style file
    assert load_style(path, catalog).attribution_prefix == "Leaflet"


# -- what a resident sees on the map ----------------------------------------------

#: Icons a resident taps: every marker and cluster drawn.
_ICON_BOXES = """() => [...document.querySelectorAll(
    '.leaflet-marker-pane .gs-marker, .leaflet-marker-pane .gs-cluster')]
  .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""

#: Town names drawn (a name left out has display: none and no box).
_LABEL_BOXES = """() => [...document.querySelectorAll('.gs-town-label')]
  .filter(e => e.offsetParent !== null)
  .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""


def _overlap(a: list[float], b: list[float]) -> bool:
    # Half a pixel of slack: boxes that only touch do not cover each other.
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _pairs_overlapping(boxes: list[list[float]]) -> list[tuple]:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if _overlap(a, b)]


def _go(watched: Watched, lat: float, lon: float, zoom: int) -> None:
    """Move the map and wait until it and its clusters are still."""
    watched.js(f"gsApp.map.setView([{lat}, {lon}], {zoom}, {{animate: false}})")
    watched.page.wait_for_function(
        "!gsApp.map._animatingZoom && !gsApp.cluster._inZoomAnimation"
        " && !(gsApp.map._panAnim && gsApp.map._panAnim._inProgress)"
        " && document.getAnimations().length === 0"  # icons gliding into place
    )


def _in_view(box: list[float], width: int, height: int) -> bool:
    return box[2] > 0 and box[0] < width and box[3] > 0 and box[1] < height


#: Views over the district: its middle and the four quarters around it.
_CENTRES = [(36.80, 118.05), (36.84, 118.00), (36.84, 118.10), (36.76, 118.00), (36.76, 118.10)]


def test_no_two_icons_overlap_from_zoom_10_to_16_anywhere_in_the_district(live_server, open_map):
    watched = open_map(live_server + "/")
    # One clustering for all layers: a cluster may mix them, and says so.
    assert watched.js("Object.values(gsApp.layers).every(l => !('cluster' in l))")
    seen = 0
    for zoom in range(10, 17):
        for lat, lon in _CENTRES if zoom >= 13 else _CENTRES[:1]:
            _go(watched, lat, lon, zoom)
            boxes = watched.js(_ICON_BOXES)
            seen += len(boxes)
            assert _pairs_overlapping(boxes) == [], (zoom, lat, lon)
    assert seen > 200
    _go(watched, 36.80, 118.05, 11)
    mixed = watched.page.locator('.gs-cluster [data-layers*=" "]').first
    name = mixed.get_attribute("aria-label")
    count = int(mixed.inner_text())
    assert name.startswith(f"{count} 个地点：")
    # The parts named add up to the count shown.
    assert sum(int(part.rsplit(" ", 1)[1]) for part in name.split("：", 1)[1].split("、")) == count
    assert "conic-gradient" in mixed.get_attribute("style")
    assert watched.errors == []


def test_town_names_never_lie_under_a_marker_or_cluster(live_server, open_map):
    shown = {}
    for width, height in ((1280, 800), (360, 740)):
        watched = open_map(live_server + "/", width, height)
        views = [("opening", None)] + [(f"zoom {z}", z) for z in range(12, 16)]
        for name, zoom in views:
            if zoom is not None:
                _go(watched, 36.80, 118.05, zoom)
            icons, labels = watched.js(_ICON_BOXES), watched.js(_LABEL_BOXES)
            assert [(a, b) for a in labels for b in icons if _overlap(a, b)] == [], name
            assert _pairs_overlapping(labels) == [], name
            shown[f"{width}x{height} {name}"] = sum(_in_view(b, width, height) for b in labels)
        # A toggle changes the icons: the names are placed again. (A phone's
        # sheet opens on its peek: the resident unfolds it to reach the legend.)
        if watched.js("gsApp.sheet") == "peek":
            watched.page.click("#gs-toggle")
        watched.page.locator("#gs-legend input[data-layer='memorials']:not([data-kind])").uncheck()
        icons, labels = watched.js(_ICON_BOXES), watched.js(_LABEL_BOXES)
        assert [(a, b) for a in labels for b in icons if _overlap(a, b)] == []
    print("town names shown:", shown)  # reported with -s
    # Names are moved aside before they are left out: most stay on the map.
    assert shown["1280x800 opening"] >= 10
    assert shown["1280x800 zoom 12"] >= 10


def test_the_attribution_prefix_is_plain_text(live_server, open_map, tmp_path):
    watched = open_map(live_server + "/")
    control = watched.page.locator(".leaflet-control-attribution")
    assert control.inner_text() == "Leaflet"
    assert control.locator("a, svg").count() == 0  # no link, no flag
    watched.js("gsApp.setAttributionPrefix('')")
    assert not control.is_visible()  # nothing to credit: no empty strip
    hostile = '<img src=x onerror="window.__pwned=1">Leaflet & co'
    text = default_style_file().read_text(encoding="utf-8")
    style = tmp_path / "style.toml"
    style.write_text(
        text.replace('attribution_prefix = "Leaflet"', f"attribution_prefix = '{hostile}'"),
        encoding="utf-8",
    )
    with running_server(tmp_path, GEO_SERVICE_STYLE_FILE=str(style)) as base:
        watched = open_map(base + "/")
        control = watched.page.locator(".leaflet-control-attribution")
        assert control.inner_text() == hostile  # shown as typed
        assert control.locator("img").count() == 0
        assert watched.js("window.__pwned") is None
        assert watched.outside == [] and watched.errors == []


# -- the sample notice ----------------------------------------------------------------


def _expected_notice(base: str) -> tuple[int, int]:
    features = [f for items in _facility_features(base).values() for f in items]
    return len(features), sum(bool(f["properties"].get("sample")) for f in features)


def test_the_notice_counts_the_examples_and_stays_closed_once_closed(live_server, open_map):
    total, samples = _expected_notice(live_server)
    assert 0 < samples < total  # the shipped data mixes real places and examples
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    watched = open_map(live_server + "/", 360, 740)
    page = watched.page
    notice = page.locator("#gs-sample")
    assert notice.inner_text().startswith(
        f"本图 {total} 个地点中 {samples} 个为示例数据（标“示例”）"
    )
    close = page.get_by_role("button", name="关闭示例数据说明")
    box = close.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44
    page.screenshot(path=str(SCREENSHOTS / "map-notice-phone-open.png"))
    covered = notice.bounding_box()
    close.click()
    assert not notice.is_visible()
    # Where the notice was, the map is now: nothing but the map under that point.
    x, y = covered["x"] + covered["width"] / 2, covered["y"] + covered["height"] / 2
    assert watched.js(f"document.elementFromPoint({x}, {y}).closest('.leaflet-container') !== null")
    page.screenshot(path=str(SCREENSHOTS / "map-notice-phone-closed.png"))
    page.reload()
    page.wait_for_selector("body[data-gs-ready='1']")
    assert not page.locator("#gs-sample").is_visible()  # remembered
    # The legend brings it back (in the sheet, unfolded first).
    page.click("#gs-toggle")
    page.locator("#gs-sample-show").scroll_into_view_if_needed()
    page.locator("#gs-sample-show").click()
    assert page.locator("#gs-sample").is_visible()
    page.locator("#gs-language").click()
    assert (
        page.locator("#gs-sample")
        .inner_text()
        .startswith(
            f"Sample data: {samples} of the {total} sites on this map are examples"
            " (tagged “sample”)"
        )
    )
    assert watched.errors == []


def test_the_notice_survives_blocked_storage(live_server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(
        "Object.defineProperty(window, 'localStorage', {get() { throw new Error('blocked'); }})"
    )
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server + "/")
    page.wait_for_selector("body[data-gs-ready='1']")
    page.get_by_role("button", name="关闭示例数据说明").click()
    assert not page.locator("#gs-sample").is_visible()  # closed for this visit
    assert errors == []
    context.close()


def test_the_notice_counts_tiled_layers_too(tmp_path, open_map):
    style = _style_with_threshold(tmp_path, TILED_ABOVE)
    with running_server(tmp_path, GEO_SERVICE_STYLE_FILE=str(style)) as base:
        total, samples = _expected_notice(base)
        watched = open_map(base + "/")
        assert watched.js("Object.values(gsApp.layers).filter(l => l.tiled).length") > 0
        watched.page.wait_for_function(
            f"document.querySelector('#gs-sample').textContent.includes('{total} 个地点中')"
        )
        assert (
            watched.page.locator("#gs-sample")
            .inner_text()
            .startswith(f"本图 {total} 个地点中 {samples} 个为示例数据")
        )


# -- open now in the offline file ------------------------------------------------------


@pytest.fixture(scope="module")
def offline_file(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The standalone file, its embedded data and, to check it against, the
    service's own site index over the same store."""
    from geo_service.runtime import Runtime

    folder = tmp_path_factory.mktemp("offline")
    out, store = folder / "zhangdian-map.html", folder / "standalone.gpkg"
    subprocess.run(
        [sys.executable, "-m", "geo_service.cli", "map", "--out", str(out)],
        env=dict(os.environ, GEO_SERVICE_STORE=str(store)),
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    data = read_json_script(out.read_text(encoding="utf-8"), "gs-data")
    settings = Settings()
    settings.store = str(store)
    with Runtime.open(settings) as rt:
        yield out, data, {"index": rt.site_indexes.get()}


def _instants(exported: dt.datetime) -> dict[str, dt.datetime]:
    """Moments after the export a resident may open the file (China time)."""
    day = exported.date() + dt.timedelta(days=1)
    monday = day + dt.timedelta(days=(7 - day.weekday()) % 7)
    saturday = monday + dt.timedelta(days=5)

    def at(date, hour, minute=0):
        return dt.datetime.combine(date, dt.time(hour, minute), LOCAL_TIME)

    return {
        "weekday morning": at(monday, 9, 30),
        "weekday before opening": at(monday + dt.timedelta(days=1), 7, 55),
        "night": at(monday + dt.timedelta(days=2), 22, 30),
        "saturday": at(saturday, 10, 15),
        "sunday evening": at(saturday + dt.timedelta(days=1), 19, 0),
        "after the horizon": exported + OFFLINE_HORIZON + dt.timedelta(hours=1),
    }


def _open_at(browser, path: Path, when: dt.datetime) -> Watched:
    # The browser's own zone is not China's: the page converts the clock.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="America/New_York"
    )
    watched = Watched(context.new_page())
    watched.page.on("pageerror", lambda e: watched.errors.append(str(e)))
    watched.page.clock.set_fixed_time(when)
    watched.page.goto(path.as_uri())
    watched.page.wait_for_selector("body[data-gs-ready]")
    assert watched.page.get_attribute("body", "data-gs-ready") == "1", watched.errors
    return watched


def test_the_offline_file_tells_what_is_open_from_the_readers_clock(browser, offline_file):
    path, data, python = offline_file
    exported = dt.datetime.fromisoformat(data["exportedAt"])
    assert "openState" not in data  # nothing frozen at export time
    for name, when in _instants(exported).items():
        watched = _open_at(browser, path, when)
        expected = site_times(python["index"], when)
        page_states = watched.js("gsApp.openState")
        if name == "after the horizon":
            assert set(page_states.values()) == {"unknown"}, name
            label = watched.page.locator("#gs-open-now + span").inner_text()
            until = data["horizon"]["until"][:10]
            assert f"只算到 {until}" in label
            assert watched.page.locator("#gs-open-now").is_disabled()
        else:
            assert page_states == expected["sites"], name
            assert watched.js("gsApp.opens") == expected["opens"], name
            assert not watched.page.locator("#gs-open-now").is_disabled()
        watched.page.context.close()
        assert watched.errors == [], name


def _said(opens: str, when: dt.datetime) -> str:
    """The wording the page must use, worked out here from the dates."""
    at = dt.datetime.fromisoformat(opens)
    days = (at.date() - when.date()).days
    weekdays = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
    day = {0: "今天", 1: "明天"}.get(days, weekdays[at.weekday()])
    return f"{day} {at:%H:%M} 开放"


def test_at_night_a_closed_site_says_when_it_opens_and_the_filter_keeps_open_ones(
    browser, offline_file
):
    path, data, python = offline_file
    when = _instants(dt.datetime.fromisoformat(data["exportedAt"]))["night"]
    expected = site_times(python["index"], when)
    closed = sorted(expected["opens"])
    assert closed, "no site in the sample data is closed at night with hours"
    watched = _open_at(browser, path, when)
    layer, site_id = closed[0].split("/", 1)
    watched.js(
        "([layer, id]) => gsApp.focus("
        "gsApp.sites.find(s => s.layer === layer && s.feature.id === id))",
        [layer, site_id],
    )
    popup = watched.page.locator(".leaflet-popup-content")
    assert "已关闭" in popup.inner_text()
    assert popup.locator(".gs-next-opening").inner_text() == _said(
        expected["opens"][closed[0]], when
    )
    watched.js("gsApp.map.closePopup()")
    # 只看正在开放 in the offline file: only sites open at that moment are listed.
    watched.page.locator("#gs-open-now").check()
    watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
    watched.page.wait_for_selector("#gs-nearest li")
    listed = watched.js(
        "[...document.querySelectorAll('#gs-nearest li button')]"
        ".map(b => b.dataset.layer + '/' + b.dataset.id)"
    )
    assert listed and all(expected["sites"][key] == "open" for key in listed)
    assert any(state != "open" for state in expected["sites"].values())
    watched.page.context.close()
    assert watched.errors == []


def test_screenshots_of_the_less_cluttered_map(live_server, open_map):
    """For a person to look at: the opening view and street zoom, on both screens."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, width, height in (("desktop", 1280, 800), ("phone", 360, 740)):
        watched = open_map(live_server + "/", width, height)
        watched.page.wait_for_function("!gsApp.cluster._inZoomAnimation")
        watched.page.screenshot(path=str(SCREENSHOTS / f"map-clutter-opening-{name}.png"))
        _go(watched, 36.80, 118.05, 14)
        icons, labels = watched.js(_ICON_BOXES), watched.js(_LABEL_BOXES)
        assert [(a, b) for a in labels for b in icons if _overlap(a, b)] == []
        watched.page.screenshot(path=str(SCREENSHOTS / f"map-clutter-zoom14-{name}.png"))
