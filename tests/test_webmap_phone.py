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

from tests.test_webmap_browser import (  # noqa: F401 (fixtures)
    PARK,
    SCREENSHOTS,
    Watched,
    _settle,
    open_map,
    phone_server,
)

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
  const overlaps = sheet.left < r.right && r.left < sheet.right && sheet.top < r.bottom && r.top < sheet.bottom;
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
          gsApp.sites.forEach(s => names[s.feature.properties.name] = (names[s.feature.properties.name] || 0) + 1);
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
        "key => gsApp.sites.find(s => s.layer + '/' + s.feature.id === key).feature.properties.name",
        key,
    )
    if watched.js("() => !!gsApp.setSheet"):
        watched.js("() => gsApp.setSheet('half')")
    watched.page.fill("#gs-search", name)
    watched.page.locator("#gs-matches button").filter(has_text=name).first.click()
    watched.page.locator(".gs-popup h3").wait_for(timeout=10_000)
    _settle(watched)
    return name


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_popups_opened_from_search_lie_whole_on_the_screen(
    phone_server, open_map, width, height
):
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
