"""The resident map as a phone shows it (and a desktop): popups whole on the
screen, the bottom sheet's states, the resident's dot never under the sheet,
a zoomable page, 定位我 on plain HTTP, and 长辈模式 (large text).

Real uvicorn server, real Chromium. Whether a control can be tapped is
proved the way a finger finds it: ``document.elementFromPoint`` at its centre
must be the control itself, not the top bar, the sheet or another popup.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import Watched
from tests.test_webmap_browser import EMPTY_SPOT, PARK, SCREENSHOTS, _settle

pytestmark = pytest.mark.server

SIZES = [(360, 740), (1280, 800)]

#: Problems with the open popup as a resident meets it: an empty list when
#: the popup lies inside the viewport, clear of the top bar and the sheet,
#: and each of its controls is what a tap at its centre reaches.
_POPUP_PROBLEMS = """() => {
  const problems = [];
  const box = document.querySelector('.leaflet-popup-content-wrapper');
  if (!box) return ['no popup'];
  const W = innerWidth, H = innerHeight, r = box.getBoundingClientRect();
  if (r.left < 0 || r.top < 0 || r.right > W || r.bottom > H)
    problems.push('outside the viewport ' + JSON.stringify([r.left, r.top, r.right, r.bottom]));
  const top = document.querySelector('.gs-top').getBoundingClientRect();
  if (r.top < top.bottom) problems.push('under the top bar: ' + r.top + ' < ' + top.bottom);
  const sheet = document.getElementById('gs-panel').getBoundingClientRect();
  const overlaps = sheet.left < r.right && r.left < sheet.right
    && sheet.top < r.bottom && r.top < sheet.bottom;
  if (overlaps) problems.push('overlaps the panel');
  const controls = [box.parentNode.querySelector('.leaflet-popup-close-button'),
    box.querySelector('h3'), ...box.querySelectorAll('.gs-nav a, a[href^="tel:"]')];
  controls.forEach(c => {
    const b = c.getBoundingClientRect(), x = b.left + b.width / 2, y = b.top + b.height / 2;
    const hit = document.elementFromPoint(x, y);
    if (!hit || !(hit === c || c.contains(hit)))
      problems.push((c.className || c.tagName) + ' ' + (c.textContent || '').slice(0, 12) +
        ' covered by ' + (hit ? hit.className || hit.tagName : 'nothing (off screen)'));
  });
  return problems;
}"""


def _sites_across_layers(watched: Watched, per_layer: int = 2) -> list[str]:
    """``per_layer`` sites of each layer with a distinct name (searchable)."""
    return watched.js(
        """n => { const out = [], seen = {}, names = {};
          gsApp.sites.forEach(s => {
            const name = s.feature.properties.name; names[name] = (names[name] || 0) + 1; });
          gsApp.sites.forEach(s => { const name = s.feature.properties.name;
            if (names[name] > 1 || (seen[s.layer] || 0) >= n) return;
            seen[s.layer] = (seen[s.layer] || 0) + 1; out.push(s.layer + '/' + s.feature.id); });
          return out; }""",
        per_layer,
    )


def _open_from_search(watched: Watched, key: str) -> str:
    """Finds the site ``layer/id`` by its name in the search box and taps it,
    as a resident does; returns its name once the popup has settled."""
    watched.js("() => gsApp.map.closePopup()")
    name = watched.js(
        "key => gsApp.sites.find(s => s.layer + '/' + s.feature.id === key)"
        ".feature.properties.name",
        key,
    )
    if watched.js("() => !!gsApp.setSheet"):
        watched.js("() => gsApp.setSheet('half')")
    watched.page.fill("#gs-search", name)
    watched.page.locator("#gs-matches button").filter(has_text=name).first.click()
    watched.page.locator(".gs-popup h3").wait_for(timeout=10_000)
    _popup_still(watched)
    return name


#: True once no pan or zoom runs and the popup has not moved since the last poll.
_STILL = """() => { const p = document.querySelector('.leaflet-popup');
  if (!p || gsApp.map._animatingZoom || (gsApp.map._panAnim && gsApp.map._panAnim._inProgress))
    return false;
  const at = JSON.stringify(p.getBoundingClientRect()), same = window.gsLastPopupAt === at;
  window.gsLastPopupAt = at;
  return same; }"""


def _popup_still(watched: Watched) -> None:
    watched.page.wait_for_function(_STILL, polling=150)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_popups_opened_from_search_lie_whole_on_the_screen(phone_server, open_map, width, height):
    watched = open_map(phone_server + "/", width, height)
    keys = _sites_across_layers(watched)
    assert len(keys) >= 10
    failures = {}
    for lang in ("zh", "en"):
        for key in keys:
            name = _open_from_search(watched, key)
            assert watched.page.locator(".gs-popup h3").inner_text().startswith(name)
            problems = watched.js(_POPUP_PROBLEMS)
            if problems:
                failures[(lang, key)] = problems
        watched.page.screenshot(path=str(SCREENSHOTS / f"map-popup-{width}-{lang}.png"))
        watched.js("() => gsApp.map.closePopup()")
        watched.page.click("#gs-language")
    assert failures == {}
    assert watched.outside == [] and watched.errors == []


def test_the_page_can_be_zoomed_by_the_resident(live_server):
    """WCAG 1.4.4: no viewport that forbids pinch-zoom (folium writes one)."""
    import httpx

    page = httpx.get(live_server + "/", headers={"Accept": "text/html"}).text
    viewport = re.findall(r'<meta name="viewport" content="([^"]*)"', page)
    assert viewport == ["width=device-width, initial-scale=1"]
    assert "user-scalable" not in page and "maximum-scale" not in page


_SHEET = """() => { const p = document.getElementById('gs-panel'), r = p.getBoundingClientRect();
  return {state: p.dataset.sheet, top: r.top, height: r.height,
    grip: document.getElementById('gs-grip').getAttribute('aria-expanded'),
    toggle: document.getElementById('gs-toggle').getAttribute('aria-expanded'),
    name: document.getElementById('gs-grip').getAttribute('aria-label'),
    bar: document.querySelector('.gs-top').getBoundingClientRect().bottom}; }"""

#: Where the resident's dot and the numbered results lie, against the top bar
#: and the sheet: every one must be in the map's uncovered part.
_HIDDEN_MARKS = """() => {
  const top = document.querySelector('.gs-top').getBoundingClientRect().bottom;
  const sheet = document.getElementById('gs-panel').getBoundingClientRect().top;
  const marks = [...document.querySelectorAll('.gs-here span, .gs-result-num span')];
  if (!marks.length) return ['no marks'];
  return marks.filter(m => { const r = m.getBoundingClientRect();
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return r.top < top || r.bottom > sheet || r.left < 0 || r.right > innerWidth ||
        (hit && hit.closest('.gs-panel, .gs-top')); })
    .map(m => (m.textContent || 'dot') + ' at ' + Math.round(m.getBoundingClientRect().top)); }"""


def test_the_bottom_sheet_peeks_halves_and_fills_by_tap_key_and_drag(live_server, open_map):
    watched = open_map(live_server + "/", 360, 740)
    sheet = watched.js(_SHEET)
    # The map comes first: the sheet opens folded, with 定位我 in reach.
    assert sheet["state"] == "peek" and sheet["grip"] == "false" and sheet["toggle"] == "false"
    assert sheet["height"] < 740 * 0.2
    assert "已收起" in sheet["name"]
    assert watched.page.locator("#gs-locate").is_visible()
    watched.page.screenshot(path=str(SCREENSHOTS / "map-sheet-peek.png"))
    heights = {"peek": sheet["height"]}
    watched.page.click("#gs-grip")
    sheet = watched.js(_SHEET)
    assert sheet["state"] == "half" and sheet["grip"] == "true" and "半屏" in sheet["name"]
    heights["half"] = sheet["height"]
    assert watched.page.locator("#gs-nearest-layer").is_visible()
    watched.page.screenshot(path=str(SCREENSHOTS / "map-sheet-half.png"))
    watched.page.click("#gs-grip")
    sheet = watched.js(_SHEET)
    assert sheet["state"] == "full" and sheet["top"] == pytest.approx(sheet["bar"], abs=1)
    heights["full"] = sheet["height"]
    # Nothing of the map (its zoom buttons, scale or credits) lies over the sheet.
    assert (
        watched.js(
            "() => [...document.querySelectorAll('.leaflet-control')].filter(c => {"
            " const r = c.getBoundingClientRect();"
            " const x = r.left + r.width / 2, y = r.top + r.height / 2;"
            " return document.elementFromPoint(x, y)?.closest('.leaflet-control'); }).length"
        )
        == 0
    )
    watched.page.screenshot(path=str(SCREENSHOTS / "map-sheet-full.png"))
    assert heights["peek"] < heights["half"] < heights["full"]
    watched.page.click("#gs-grip")  # from full, a tap folds it
    assert watched.js(_SHEET)["state"] == "peek"
    # The keyboard: arrows on the grip, Enter on the 展开/收起 button.
    watched.page.focus("#gs-grip")
    watched.page.keyboard.press("ArrowUp")
    assert watched.js(_SHEET)["state"] == "half"
    watched.page.keyboard.press("ArrowUp")
    assert watched.js(_SHEET)["state"] == "full"
    watched.page.keyboard.press("ArrowDown")
    assert watched.js(_SHEET)["state"] == "half"
    watched.page.focus("#gs-toggle")
    watched.page.keyboard.press("Enter")
    assert watched.js(_SHEET)["state"] == "peek"
    watched.page.keyboard.press("Enter")
    assert watched.js(_SHEET)["state"] == "half"
    # A finger drags the grip up most of the way: the sheet settles full;
    # dragged down a little from there, it settles at half.
    grip = watched.page.locator("#gs-grip").bounding_box()
    x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
    watched.page.mouse.move(x, y)
    watched.page.mouse.down()
    watched.page.mouse.move(x, 130, steps=8)
    watched.page.mouse.up()
    assert watched.js(_SHEET)["state"] == "full"
    grip = watched.page.locator("#gs-grip").bounding_box()
    y = grip["y"] + grip["height"] / 2
    watched.page.mouse.move(x, y)
    watched.page.mouse.down()
    watched.page.mouse.move(x, y + 300, steps=8)
    watched.page.mouse.up()
    assert watched.js(_SHEET)["state"] == "half"
    assert watched.errors == [] and watched.outside == []


def test_the_residents_dot_and_results_stay_clear_of_the_sheet_and_top_bar(live_server, open_map):
    watched = open_map(live_server + "/", 360, 740, position=PARK)
    watched.page.click("#gs-locate")
    watched.page.wait_for_selector("#gs-nearest li")
    _settle(watched)
    # The answer unfolds the sheet to half; the map above it shows them all.
    assert watched.js(_SHEET)["state"] == "half"
    assert watched.js(_HIDDEN_MARKS) == []
    watched.page.screenshot(path=str(SCREENSHOTS / "map-located-phone.png"))
    for state in ("peek", "half"):
        watched.js(f"() => gsApp.setSheet('{state}')")
        _settle(watched)
        assert watched.js(_HIDDEN_MARKS) == [], state
    assert watched.errors == [] and watched.outside == []


def _plain_http(base: str) -> str:
    from tests.conftest import PLAIN_HTTP_HOST

    return base.replace("127.0.0.1", PLAIN_HTTP_HOST)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_locate_me_on_plain_http_explains_and_offers_the_map(live_server, open_map, lang):
    # The browser would give a position, but not to a plain-HTTP page.
    watched = open_map(_plain_http(live_server) + "/", 360, 740, position=PARK)
    assert watched.js("window.isSecureContext") is False
    if lang == "en":
        watched.page.click("#gs-language")
    watched.page.click("#gs-locate")
    notice = watched.page.locator("#gs-notice")
    notice.wait_for()
    text = notice.inner_text()
    if lang == "zh":
        assert "HTTPS" in text and "点击地图" in text
    else:
        assert "HTTPS" in text and "Tap the place where you are on the map" in text
    # The notice is in the sheet's folded part, in view and not covered.
    assert watched.js(
        "() => { const r = document.getElementById('gs-notice').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight &&"
        " document.elementFromPoint(r.left + 10, r.top + r.height / 2).id === 'gs-notice'; }"
    )
    watched.page.screenshot(path=str(SCREENSHOTS / f"map-locate-http-{lang}.png"))
    assert watched.js("gsApp.point") is None
    # Tapping the map instead works (where no marker is), and the notice goes.
    lon, lat = EMPTY_SPOT
    watched.js(f"gsApp.map.setView([{lat}, {lon}], 15, {{animate: false}})")
    x, y = watched.js(f"(p => [p.x, p.y])(gsApp.map.latLngToContainerPoint([{lat}, {lon}]))")
    box = watched.page.locator(".leaflet-container").bounding_box()
    watched.page.mouse.click(box["x"] + x, box["y"] + y)
    watched.page.wait_for_selector("#gs-nearest li")
    assert not notice.is_visible()
    # Chromium's own remark on any plain-HTTP page (the service sends COOP).
    errors = [e for e in watched.errors if "Cross-Origin-Opener-Policy" not in e]
    assert watched.outside == [] and errors == []


_FAILING_GEOLOCATION = """code => {
  navigator.geolocation.getCurrentPosition = (ok, fail) => setTimeout(() => fail({
    code, message: 'User denied Geolocation',
    PERMISSION_DENIED: 1, POSITION_UNAVAILABLE: 2, TIMEOUT: 3}), 10);
}"""


@pytest.mark.parametrize(
    ("code", "zh", "en"),
    [
        (None, "没有允许", "may not use your position"),  # the browser's own refusal
        (2, "暂时无法确定", "not available right now"),
        (3, "超时", "took too long"),
    ],
)
def test_locate_errors_are_told_in_the_residents_language(live_server, open_map, code, zh, en):
    watched = open_map(live_server + "/", 360, 740)  # no permission given
    if code is not None:  # a device that cannot find itself: the error it reports
        watched.js(_FAILING_GEOLOCATION, code)
    for lang, words in (("zh", zh), ("en", en)):
        watched.page.click("#gs-locate")
        watched.page.wait_for_function(
            "w => document.getElementById('gs-notice').textContent.includes(w)", arg=words
        )
        text = watched.page.locator("#gs-notice").inner_text()
        assert "User denied" not in text and "Geolocation" not in text
        if lang == "zh":
            watched.page.click("#gs-language")
            # The notice follows the language at once.
            assert en in watched.page.locator("#gs-notice").inner_text()
    assert watched.outside == [] and watched.errors == []


# -- 长辈模式 (large text) --------------------------------------------------------

#: Every visible piece of text on the screen (a text node with letters in it,
#: inside the viewport) with its computed font size.
_TEXT_SIZES = """() => {
  const out = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, parent = node.parentElement;
    if (!node.textContent.trim() || !parent || parent.closest('script, style, option')) continue;
    const range = document.createRange(); range.selectNodeContents(node);
    const r = range.getBoundingClientRect(), style = getComputedStyle(parent);
    if (!r.width || !r.height || r.bottom < 0 || r.top > innerHeight) continue;
    if (r.right < 0 || r.left > innerWidth) continue;
    if (style.visibility === 'hidden' || parseFloat(style.opacity) === 0) continue;
    out.push([node.textContent.trim().slice(0, 20), parseFloat(style.fontSize),
      parent.className || parent.tagName]);
  }
  return out;
}"""

#: Every visible control a finger taps, with its size.
_TARGETS = """() => [...document.querySelectorAll('button, a[href], select, input, .gs-check,'
    + ' .leaflet-bar a, .leaflet-popup-close-button')]
  .filter(e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden'
    && !e.closest('.gs-check:not(:is(button, a, select, input))') || e.matches('.gs-check'))
  .filter(e => { const r = e.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.width; })
  .filter(e => !(e.matches('input[type=checkbox]')))  // its label (.gs-check) is the target
  // A link inside the credits' line of text (WCAG 2.5.8's inline exception).
  .filter(e => !e.closest('.leaflet-control-attribution'))
  .map(e => { const r = e.getBoundingClientRect();
    return [e.id || e.className || e.tagName, (e.textContent || '').trim().slice(0, 10),
      r.width, r.height]; })"""


def _elder_problems(watched: Watched) -> dict[str, list]:
    small_text = [t for t in watched.js(_TEXT_SIZES) if t[1] < 18]
    small_targets = [t for t in watched.js(_TARGETS) if t[3] < 48 or t[2] < 48]
    return {"text": small_text, "targets": small_targets}


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_elder_mode_makes_every_text_large_and_every_target_big(
    phone_server, open_map, width, height
):
    watched = open_map(phone_server + "/", width, height, position=PARK)
    elder = watched.page.locator("#gs-elder")
    # Reachable from the first screen: in the top bar, named in Chinese.
    assert elder.is_visible() and elder.inner_text() == "长辈模式"
    assert elder.get_attribute("aria-pressed") == "false"
    assert _elder_problems(watched)["text"], "normal mode has small text: the check can fail"
    elder.click()
    assert elder.get_attribute("aria-pressed") == "true"
    assert watched.js("document.documentElement.classList.contains('gs-elder')")
    watched.page.click("#gs-locate")
    watched.page.wait_for_selector("#gs-nearest li")
    _settle(watched)
    seen = {}
    for state in ("peek", "half", "full"):
        watched.js(f"() => gsApp.setSheet('{state}')")
        _settle(watched)
        seen[state] = _elder_problems(watched)
    watched.js("() => gsApp.setSheet('half')")
    _settle(watched)
    name = "phone" if width < 720 else "desktop"
    watched.page.screenshot(path=str(SCREENSHOTS / f"map-elder-{name}.png"))
    # A popup (with a phone link) read in 长辈模式.
    _open_from_search(
        watched,
        watched.js(
            "() => { const s = gsApp.sites.find(s => s.feature.properties.phone);"
            " return s.layer + '/' + s.feature.id; }"
        ),
    )
    seen["popup"] = _elder_problems(watched)
    watched.page.screenshot(path=str(SCREENSHOTS / f"map-elder-popup-{name}.png"))
    assert seen == {state: {"text": [], "targets": []} for state in seen}
    assert watched.outside == [] and watched.errors == []


def test_elder_mode_is_remembered_and_popups_still_fit_at_360(phone_server, open_map):
    watched = open_map(phone_server + "/", 360, 740)
    watched.page.click("#gs-elder")
    watched.page.click("#gs-language")
    watched.page.reload()
    watched.page.wait_for_selector("body[data-gs-ready='1']")
    assert watched.page.locator("#gs-elder").get_attribute("aria-pressed") == "true"
    assert watched.page.locator("#gs-elder").inner_text() == "Large text"
    keys = _sites_across_layers(watched)
    failures = {}
    for lang in ("en", "zh"):
        for key in keys:
            _open_from_search(watched, key)
            if problems := watched.js(_POPUP_PROBLEMS):
                failures[(lang, key)] = problems
        watched.page.click("#gs-language")
    assert failures == {}
    # Off again, and remembered so.
    watched.page.click("#gs-elder")
    watched.page.reload()
    watched.page.wait_for_selector("body[data-gs-ready='1']")
    assert watched.page.locator("#gs-elder").get_attribute("aria-pressed") == "false"
    assert watched.outside == [] and watched.errors == []


def test_elder_mode_works_when_storage_is_blocked(live_server, browser):
    """Privacy settings may make localStorage throw: the map still opens
    (in normal mode) and the toggle still works for the visit."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN")
    try:
        context.add_init_script(
            "Object.defineProperty(window, 'localStorage', {get() { throw new DOMException("
            "'blocked', 'SecurityError'); }});"
        )
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server + "/")
        page.wait_for_selector("body[data-gs-ready='1']")
        assert page.get_attribute("#gs-elder", "aria-pressed") == "false"
        page.click("#gs-elder")
        assert page.get_attribute("#gs-elder", "aria-pressed") == "true"
        assert page.evaluate("document.documentElement.classList.contains('gs-elder')")
        assert errors == []
    finally:
        context.close()


def test_a_phone_opens_on_the_whole_district(live_server, open_map):
    import httpx
    from shapely.geometry import shape

    district = httpx.get(f"{live_server}/collections/district/items").json()["features"]
    west, south, east, north = shape(district[0]["geometry"]).bounds
    watched = open_map(live_server + "/", 360, 740)
    _settle(watched)
    # The outline's corners lie in the map the title bar and the folded sheet leave free.
    outside = watched.js(
        """corners => {
          const top = document.querySelector('.gs-top').getBoundingClientRect().bottom;
          const sheet = document.getElementById('gs-panel').getBoundingClientRect().top;
          return corners.map(c => gsApp.map.latLngToContainerPoint(c))
            .filter(p => p.y < top - 1 || p.y > sheet + 1 || p.x < -1 || p.x > innerWidth + 1)
            .map(p => [p.x, p.y]); }""",
        [[north, west], [south, east]],
    )
    assert outside == []
