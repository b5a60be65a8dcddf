"""The coverage map as an office reads it, in Chromium on a real server, on a
desk (1280×800) and on a phone (360×740): each town's colour readable under
the uncovered cells, a legend in the reader's language, town labels clear of
the dots and stars, nothing wider than the screen."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator

import pytest
from shapely.geometry import shape

from tests.conftest import ROOT, running_server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
SCREENS = {"desk": (1280, 800), "phone": (360, 740)}
QUESTION = "layers=stations&radius=15min&p=1"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """One real server over the shipped data (the page is the same on either backend)."""
    with running_server(tmp_path_factory.mktemp("coverage-map")) as base:
        yield base


def open_map(browser, base: str, screen: str, lang: str = "zh"):
    width, height = SCREENS[screen]
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The server solves the site recommendation (MCLP) before it answers.
    page.goto(f"{base}/coverage/map?{QUESTION}&lang={lang}", timeout=150_000)
    page.wait_for_selector("body[data-cov-ready]", timeout=60_000)
    assert errors == []
    return context, page


def legend_text(page) -> str:
    """The legend as a reader sees it, unfolded first where it starts folded (a phone)."""
    legend = page.locator("#cov-legend")
    if legend.get_attribute("open") is None:
        page.locator("#cov-legend summary").click()
    return legend.inner_text()


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; })",
    )


def overlaps(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and (b["top"] < a["bottom"])
    )


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def css_rgb(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in re.findall(r"\d+", text)[:3])


@pytest.mark.parametrize("screen", list(SCREENS))
def test_an_office_reads_the_coverage_map_at_a_glance(browser, server, screen):
    from PIL import Image

    context, page = open_map(browser, server, screen)
    width, height = SCREENS[screen]
    # The phone starts with the legend folded, so the map is in view.
    assert (page.locator("#cov-legend").get_attribute("open") is None) == (screen == "phone")
    page.screenshot(path=str(SCREENSHOTS / f"coverage-map-{screen}.png"))

    # Town labels are clear of every dot and star.
    labels = boxes(page, ".cov-label > div")
    symbols = boxes(page, "path.cov-site") + boxes(page, ".cov-new span")
    assert len(labels) == 13 and len(symbols) > 13
    clashes = [(a, b) for a in labels for b in symbols if overlaps(a, b)]
    assert clashes == []

    # Under the hatch of uncovered cells, the town's own colour is what shows.
    towns = page.evaluate("gsCoverage.towns.map(t => ({fill: t.fill, uncovered: t.uncovered}))")
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    ground = css_rgb(
        page.eval_on_selector(".leaflet-container", "e => getComputedStyle(e).backgroundColor")
    )
    opacity = 0.8  # the towns' fill opacity (coverage.js)
    legend_box = boxes(page, "#cov-legend")[0]
    checked = set()
    for town in towns:
        if not town["uncovered"] or town["fill"] in checked:
            continue
        inner = shape(town["uncovered"]).buffer(-0.004)
        if inner.is_empty:
            continue
        point = inner.representative_point()
        x, y = page.evaluate(
            "([lat, lon]) => { const p = gsCoverage.map.latLngToContainerPoint([lat, lon]);"
            " return [p.x, p.y]; }",
            [point.y, point.x],
        )
        patch = {"left": x - 7, "right": x + 7, "top": y - 7, "bottom": y + 7}
        if not (patch["left"] >= 0 and patch["right"] < width and patch["bottom"] < height):
            continue
        if any(overlaps(patch, b) for b in [*labels, *symbols, legend_box]):
            continue
        crop = shot.crop((int(x) - 7, int(y) - 7, int(x) + 7, int(y) + 7))
        pixels = Counter(crop.getpixel((i, j)) for i in range(14) for j in range(14))
        seen, count = pixels.most_common(1)[0]
        expected = [
            round(opacity * c + (1 - opacity) * g)
            for c, g in zip(rgb(town["fill"]), ground, strict=True)
        ]
        assert all(abs(s - e) <= 3 for s, e in zip(seen, expected, strict=True)), (
            town["fill"],
            seen,
            expected,
        )
        assert count >= 0.4 * sum(pixels.values())
        # ...and the hatch is there too: darker lines over part of the patch.
        darker = sum(n for colour, n in pixels.items() if sum(colour) < sum(seen) - 60)
        assert darker >= 0.1 * sum(pixels.values()), pixels.most_common(4)
        checked.add(town["fill"])
    assert len(checked) >= 2  # at least two classes of towns seen through their hatch

    # The legend in Chinese: its classes as ranges, no English word in it.
    text = legend_text(page)
    assert "图例" in text and "镇街覆盖人口比例（步行 1000 米以内）" in text
    assert "0%–10%" in text and "75%–100%" in text and "≥" not in text
    assert "未覆盖区域（斜线）" in text and "建议新址 ★（最大覆盖模型）" in text
    assert re.findall(r"[A-Za-z]{2,}", text) == ["GB"], text  # GB 50180-2018, a standard's name
    page.screenshot(path=str(SCREENSHOTS / f"coverage-map-{screen}-legend.png"))

    # Nothing is wider than the screen, the open legend included.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for box in boxes(page, "#cov-legend, .leaflet-control"):
        assert box["left"] >= 0 and box["right"] <= width and box["bottom"] <= height, box
    context.close()


def test_the_english_page_has_an_english_legend(browser, server):
    context, page = open_map(browser, server, "desk", "en")
    assert page.evaluate("document.documentElement.lang") == "en"
    text = legend_text(page)
    assert "Share of people within a 1000 m walk, by town" in text
    assert "Not covered (hatched)" in text and "Sample sites are counted" in text
    assert not re.search(r"[\u4e00-\u9fff]", text), text
    context.close()
