"""The coverage map: a choropleth of the covered share per town, the cells
left uncovered, existing and recommended sites, town labels, a legend.
Leaflet and the page's script are inlined: the page needs no network."""

from __future__ import annotations

import itertools
from html import escape
from typing import Any

import folium
import numpy as np
import shapely
from branca.element import Element, MacroElement
from jinja2 import Template
from shapely.geometry import box, mapping

from geo_service.store import StoredFeature
from geo_service.web.assets import Asset
from geo_service.web.markup import finish_page, json_script

__all__ = ["coverage_data", "coverage_map"]

#: Covered share of people -> fill colour: ColorBrewer YlGnBu, light (few
#: people reached) to dark blue (most), as in the legend. No red or pink: the
#: uncovered cells are drawn over the fill as a grey hatch, which leaves the
#: town's colour readable between the lines.
BANDS = [(0.0, "#ffffcc"), (0.1, "#a1dab4"), (0.25, "#41b6c4"), (0.5, "#2c7fb8"), (0.75, "#253494")]
_LANGS = ("zh", "en")
#: The page's texts in each language ({placeholders} filled by ``coverage_data``).
_WORDS = {
    "zh": {
        "title": "张店区拥军服务覆盖分析",
        "subtitle": "镇街覆盖人口比例（步行 {r} 米以内）",
        "uncovered": "未覆盖区域（斜线）",
        "sites": "现有设施（正常开放）",
        "suggested": "建议新址 ★（最大覆盖模型）：覆盖人口 {before} → {after}",
        "people": "覆盖人口 {people} · 面积 {area}",
        "median": "步行距离中位数 {median}",
        "metres": "{m} 米",
        "facilities": "设施 {n} 个",
        "new_site": "建议新址 {n}: +{gain} 人 ({town})",
        "legend": "图例",
    },
    "en": {
        "title": "Zhangdian support services: coverage",
        "subtitle": "Share of people within a {r} m walk, by town",
        "uncovered": "Not covered (hatched)",
        "sites": "Existing facilities (open)",
        "suggested": "Suggested sites ★ (maximal covering): people covered {before} → {after}",
        "people": "People covered {people} · area {area}",
        "median": "Median walk {median}",
        "metres": "{m} m",
        "facilities": "{n} facilities",
        "new_site": "Suggested site {n}: +{gain} people ({town})",
        "legend": "Legend",
    },
}


def _colour(share: float) -> str:
    colour = BANDS[0][1]
    for floor, band_colour in BANDS:
        if share >= floor:
            colour = band_colour
    return colour


def _band_texts() -> list[str]:
    """Each class as the range it holds: 0–10%, 10–25%, …, 75–100%."""
    floors = [floor for floor, _colour in BANDS] + [1.0]
    return [f"{low:.0%}–{high:.0%}" for low, high in itertools.pairwise(floors)]


def _uncovered_shape(points: list[tuple[float, float]], cell_m: float) -> dict | None:
    """The uncovered cells of a town as one (multi)polygon, in degrees."""
    if not points:
        return None
    lon, lat = np.array(points).T
    # Cell size in degrees at this latitude (the cells are metric squares),
    # a little larger so neighbouring cells overlap and merge without slivers.
    half_lat = cell_m * 1.1 / 2 / 110_950.0
    half_lon = half_lat / np.cos(np.radians(lat.mean()))
    cells = [
        box(x - half_lon, y - half_lat, x + half_lon, y + half_lat)
        for x, y in zip(lon, lat, strict=True)
    ]
    return mapping(shapely.union_all(cells).simplify(half_lat / 4))


def coverage_map(
    report: dict[str, Any],
    towns: list[StoredFeature],
    recommendation: dict[str, Any] | None = None,
    lang: str = "zh",
) -> str:
    """The coverage map as one HTML page that needs no network, in ``lang``
    (``zh`` or ``en``).

    folium makes the map; everything drawn from the report (town shapes and
    labels, uncovered cells, sites, suggested sites, tooltips, the legend)
    reaches the page as one JSON block that ``static/coverage.js`` draws with
    text nodes: no name ever passes through folium's template literals."""
    fmap = folium.Map(location=[36.80, 118.05], zoom_start=11, tiles=None, control_scale=True)
    fmap.default_js, fmap.default_css = [], []
    root = fmap.get_root()
    root.title = escape(_WORDS[lang]["title"])  # branca writes the title as it is
    root.header.add_child(Element('<link rel="icon" href="data:,">'))
    root.header.add_child(Element(f"<style>{Asset('leaflet', 'leaflet.css').inlined()}</style>"))
    root.header.add_child(Element(f"<style>{Asset('app', 'coverage.css').inlined()}</style>"))
    root.header.add_child(Element(f"<script>{Asset('leaflet', 'leaflet.js').inlined()}</script>"))
    root.header.add_child(Element(f"<script>{Asset('app', 'coverage.js').inlined()}</script>"))
    data = coverage_data(report, towns, recommendation, lang)
    root.html.add_child(Element(json_script("cov-data", data)))
    fmap.add_child(_Draw())
    return finish_page(root.render())


class _Draw(MacroElement):
    """Draws the page's JSON block on the map folium made."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoServiceCoverage.draw({{ this._parent.get_name() }},
            JSON.parse(document.getElementById("cov-data").textContent));
        {% endmacro %}
        """
    )


def coverage_data(
    report: dict[str, Any],
    towns: list[StoredFeature],
    recommendation: dict[str, Any] | None = None,
    lang: str = "zh",
) -> dict[str, Any]:
    """What the coverage page draws, its texts in ``lang`` already formatted
    as people write them (plain text: the page shows it, never parses it)."""
    if lang not in _LANGS:
        raise ValueError(f"lang must be one of {_LANGS}, not {lang!r}")
    words = _WORDS[lang]
    rows = {row["town_code"]: row for row in report["towns"]}
    drawn_towns = []
    for town in towns:
        row = rows.get(town.id)
        if row is None:
            continue
        share = row["population_covered_share"]
        median = row["median_distance_m"]
        point = town.geometry.representative_point()
        drawn_towns.append(
            {
                "code": town.id,
                "geometry": mapping(town.geometry),
                "fill": _colour(share),
                "tooltip": {
                    "title": row["town_name"],
                    "lines": [
                        words["people"].format(
                            people=f"{share:.0%}", area=f"{row['area_covered_share']:.0%}"
                        ),
                        words["median"].format(
                            median="-"
                            if median is None
                            else words["metres"].format(m=f"{median:.0f}")
                        ),
                        words["facilities"].format(n=row["facilities"]),
                    ],
                },
                "label": {"at": [point.y, point.x], "lines": [row["town_name"], f"{share:.0%}"]},
                "uncovered": _uncovered_shape(
                    report["uncovered"].get(town.id, []), report["cell_m"]
                ),
            }
        )
    sites = [
        {"at": [site["lat"], site["lon"]], "tooltip": {"title": f"{site['name']} ({site['kind']})"}}
        for site in report["sites"]
    ]
    suggested = []
    legend_lines = []
    if recommendation:
        suggested = [
            {
                "at": [site["lat"], site["lon"]],
                "number": number,
                "tooltip": {
                    "title": words["new_site"].format(
                        n=number, gain=f"{site['gain']:,}", town=site["town_name"]
                    )
                },
            }
            for number, site in enumerate(recommendation["sites"], start=1)
        ]
        legend_lines.append(
            words["suggested"].format(
                before=f"{recommendation['covered_share_before']:.1%}",
                after=f"{recommendation['covered_share_after']:.1%}",
            )
        )
    bounds = shapely.total_bounds([t.geometry for t in towns]) if towns else None
    samples = report.get("sample_notes")
    return {
        "lang": lang,
        "towns": drawn_towns,
        "sites": sites,
        "suggested": suggested,
        "legend": {
            "heading": words["legend"],
            "title": words["title"],
            "subtitle": words["subtitle"].format(r=f"{report['radius_m']:.0f}"),
            "bands": [
                {"colour": colour, "text": text}
                for (_floor, colour), text in zip(BANDS, _band_texts(), strict=True)
            ],
            "uncovered": words["uncovered"],
            "sites": words["sites"],
            "lines": legend_lines,
            "note": report["distance_zh"] if lang == "zh" else report["distance"],
            # Every number on the page includes these sites: said under the title.
            "sample": samples[lang] if samples else None,
        },
        "bounds": None
        if bounds is None
        else [[float(bounds[1]), float(bounds[0])], [float(bounds[3]), float(bounds[2])]],
    }
