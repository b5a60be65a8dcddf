"""Accessibility of the resident map, measured: axe-core (bundled in
axe-playwright-python) in a real Chromium over a real server, in both modes
(normal and 长辈模式), on a phone and a desktop, with the sheet in each state
and with a popup open; and the map's controls driven from the keyboard.
"""

from __future__ import annotations

import pytest

from tests.conftest import Watched
from tests.test_webmap_browser import PARK, _settle

pytestmark = pytest.mark.server


def _serious_violations(watched: Watched) -> list[tuple]:
    """axe's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(watched.page).response["violations"]
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:4])
        for v in found
        if v["impact"] in {"serious", "critical"}
    ]


def _open_first_popup_with_a_phone(watched: Watched) -> None:
    watched.js("() => gsApp.focus(gsApp.sites.find(s => s.feature.properties.phone))")
    watched.page.locator(".gs-popup h3").wait_for(timeout=10_000)
    _settle(watched)


@pytest.mark.parametrize("elder", [False, True], ids=["normal", "elder"])
@pytest.mark.parametrize(("width", "height"), [(360, 740), (1280, 800)], ids=["phone", "desktop"])
def test_axe_finds_no_serious_violation(phone_server, open_map, width, height, elder):
    watched = open_map(phone_server + "/", width, height)
    if elder:
        watched.page.click("#gs-elder")
    # With an answer listed: badges, numbers and lines are on the page too.
    watched.js(f"gsApp.setPoint(L.latLng({PARK[1]}, {PARK[0]}), false)")
    watched.page.wait_for_selector("#gs-nearest li")
    _settle(watched)
    seen = {}
    for state in ("peek", "half", "full"):
        watched.js(f"() => gsApp.setSheet('{state}')")
        _settle(watched)
        seen[state] = _serious_violations(watched)
    watched.js("() => gsApp.setSheet('half')")
    _open_first_popup_with_a_phone(watched)
    seen["popup"] = _serious_violations(watched)
    assert seen == {state: [] for state in seen}
    assert watched.outside == [] and watched.errors == []


def test_axe_here_can_fail(live_server, open_map):
    """The check above is not empty: a nameless button put on the map is reported."""
    watched = open_map(live_server + "/", 360, 740)
    assert _serious_violations(watched) == []
    watched.js(
        "() => document.getElementById('gs-panel').appendChild(document.createElement('button'))"
    )
    assert [v[0] for v in _serious_violations(watched)] == ["button-name"]


def _focused(watched: Watched) -> dict:
    return watched.js(
        "() => { const e = document.activeElement; return {id: e.id, cls: String(e.className),"
        " text: (e.textContent || '').trim().slice(0, 30),"
        " inPopup: !!e.closest('.leaflet-popup')}; }"
    )


def _tab_to(watched: Watched, test: str, limit: int = 400) -> dict:
    """Presses Tab until the focused element passes ``test`` (a JS predicate)."""
    for _ in range(limit):
        watched.page.keyboard.press("Tab")
        if watched.js(f"() => ({test})(document.activeElement)"):
            return _focused(watched)
    raise AssertionError(f"Tab never reached {test}")


@pytest.mark.parametrize(("width", "height"), [(360, 740), (1280, 800)], ids=["phone", "desktop"])
def test_the_keyboard_reaches_and_works_every_control(phone_server, open_map, width, height):
    watched = open_map(phone_server + "/", width, height)
    page = watched.page
    # The title bar comes first: 长辈模式 and the language, pressed with Enter.
    assert _tab_to(watched, "e => e.id === 'gs-elder'", limit=3)["text"] == "长辈模式"
    page.keyboard.press("Enter")
    assert page.get_attribute("#gs-elder", "aria-pressed") == "true"
    page.keyboard.press("Enter")
    assert page.get_attribute("#gs-elder", "aria-pressed") == "false"
    assert _focused(watched)["id"] == "gs-elder"
    # The panel folds and opens from the keyboard (a phone's sheet starts folded).
    _tab_to(watched, "e => e.id === 'gs-toggle'", limit=6)
    first = page.get_attribute("#gs-toggle", "aria-expanded")
    assert first == ("false" if width < 720 else "true")
    page.keyboard.press("Enter")
    assert page.get_attribute("#gs-toggle", "aria-expanded") != first
    if first == "true":
        page.keyboard.press("Enter")
    assert page.get_attribute("#gs-toggle", "aria-expanded") == "true"
    # Search, a result, its popup, Escape: focus returns to the result.
    _tab_to(watched, "e => e.id === 'gs-search'", limit=20)
    page.keyboard.type("银行")
    page.keyboard.press("Tab")
    result = _focused(watched)
    assert "银行" in result["text"]
    page.keyboard.press("Enter")
    page.locator(".gs-popup h3").wait_for(timeout=10_000)
    _settle(watched)
    assert _focused(watched)["inPopup"]
    page.keyboard.press("Tab")
    assert _focused(watched)["inPopup"]  # reading on inside the popup
    page.keyboard.press("Escape")
    page.wait_for_function("!document.querySelector('.leaflet-popup')")
    back = _focused(watched)
    assert back["text"] == result["text"] and not back["inPopup"]
    # A marker: focused, Enter opens its popup, Escape closes it and focus
    # goes back to the marker.
    marker = _tab_to(watched, "e => e.classList.contains('gs-marker')")
    page.keyboard.press("Enter")
    page.locator(".gs-popup h3").wait_for(timeout=10_000)
    _settle(watched)
    page.keyboard.press("Escape")
    page.wait_for_function("!document.querySelector('.leaflet-popup')")
    assert _focused(watched)["cls"] == marker["cls"] and "gs-marker" in marker["cls"]
    # The zoom buttons, named in Chinese, zoom with Enter.
    zoom = watched.js("gsApp.map.getZoom()")
    focused = _tab_to(watched, "e => e.classList.contains('leaflet-control-zoom-in')")
    assert focused["cls"].startswith("leaflet-control-zoom-in")
    page.keyboard.press("Enter")
    page.wait_for_function(f"gsApp.map.getZoom() === {zoom + 1}")
    assert watched.errors == [] and watched.outside == []


def test_every_control_has_a_name_in_the_pages_language(phone_server, open_map):
    watched = open_map(phone_server + "/", 360, 740)
    page = watched.page
    names = {
        "zh": ["放大地图", "缩小地图", "长辈模式", "EN", "定位我", "展开"],
        "en": ["Zoom in", "Zoom out", "Large text", "中文", "Locate me", "Show"],
    }
    in_popup = {"zh": ("关闭", "导航"), "en": ("Close", "Navigate")}
    opening = watched.js("[gsApp.map.getCenter(), gsApp.map.getZoom()]")
    for lang in ("zh", "en"):
        watched.js("([c, z]) => gsApp.map.setView(c, z, {animate: false})", opening)
        for name in names[lang]:
            assert page.get_by_role("button", name=name, exact=True).count() == 1, (lang, name)
        # Clusters are buttons named by their count (the phone opens on the
        # whole district, all in clusters), markers by their site.
        count = page.locator(".gs-cluster").first.inner_text()
        cluster = f"{count} 个地点" if lang == "zh" else f"{count} places"
        assert page.get_by_role("button", name=cluster).count() >= 1, cluster
        watched.js("new Promise(r => gsApp.cluster.zoomToShowLayer(gsApp.sites[0].marker, r))")
        marker = page.locator(".gs-marker").first.get_attribute("title")
        assert page.get_by_role("button", name=marker, exact=True).count() >= 1, marker
        grip = page.get_by_role("button", name="面板高度" if lang == "zh" else "Panel height")
        assert grip.count() == 1
        assert (
            page.get_by_role("main")
            .get_attribute("aria-label")
            .startswith("地图" if lang == "zh" else "Map")
        )
        _open_first_popup_with_a_phone(watched)
        close, navigate = in_popup[lang]
        assert page.get_by_role("button", name=close, exact=True).count() == 1, lang
        assert page.get_by_role("group", name=navigate).count() == 1, lang
        nameless = watched.js(
            "() => [...document.querySelectorAll('button, a[href], [role=button], select, input')]"
            ".filter(e => e.getClientRects().length && !(e.getAttribute('aria-label') || e.title ||"
            " e.textContent.trim() || (e.labels && e.labels.length) || e.getAttribute('alt')))"
            ".map(e => e.outerHTML.slice(0, 80))"
        )
        assert nameless == [], lang
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('.leaflet-popup')")
        if lang == "zh":
            page.click("#gs-language")
    assert watched.errors == []
