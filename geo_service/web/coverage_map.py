"""The coverage map: a choropleth of the covered share per town, the cells
left uncovered, existing and recommended sites, town labels, a legend.
Leaflet and the page's script are inlined: the page needs no network."""

from __future__ import annotations

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

#: Covered share of people -> fill colour (light to dark green), as in the legend.
BANDS = [(0.0, "#fde0dd"), (0.25, "#fee8c8"), (0.5, "#d9f0a3"), (0.75, "#78c679"), (0.9, "#238443")]


def _colour(share: float) -> str:
    colour = BANDS[0][1]
    for floor, band_colour in BANDS:
        if share >= floor:
            colour = band_colour
    return colour


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
    title: str = "张店区拥军服务覆盖分析",
) -> str:
    """The coverage map as one HTML page that needs no network.

    folium makes the map; everything drawn from the report (town shapes and
    labels, uncovered cells, sites, suggested sites, tooltips, the legend)
    reaches the page as one JSON block that ``static/coverage.js`` draws with
    text nodes: no name ever passes through folium's template literals."""
    fmap = folium.Map(location=[36.80, 118.05], zoom_start=11, tiles=None, control_scale=True)
    fmap.default_js, fmap.default_css = [], []
    root = fmap.get_root()
    root.title = escape(title)  # branca writes the title as it is
    root.header.add_child(Element('<link rel="icon" href="data:,">'))
    root.header.add_child(Element(f"<style>{Asset('leaflet', 'leaflet.css').inlined()}</style>"))
    root.header.add_child(Element(f"<style>{Asset('app', 'coverage.css').inlined()}</style>"))
    root.header.add_child(Element(f"<script>{Asset('leaflet', 'leaflet.js').inlined()}</script>"))
    root.header.add_child(Element(f"<script>{Asset('app', 'coverage.js').inlined()}</script>"))
    data = coverage_data(report, towns, recommendation, title)
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
    title: str = "张店区拥军服务覆盖分析",
) -> dict[str, Any]:
    """What the coverage page draws, its texts already formatted as people
    write them (plain text: the page shows it, never parses it)."""
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
                        f"覆盖人口 {share:.0%} · 面积 {row['area_covered_share']:.0%}",
                        f"步行距离中位数 {'-' if median is None else f'{median:.0f} 米'}",
                        f"设施 {row['facilities']} 个",
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
                    "title": f"建议新址 {number}: +{site['gain']:,} 人 ({site['town_name']})"
                },
            }
            for number, site in enumerate(recommendation["sites"], start=1)
        ]
        legend_lines.append(
            f"建议新址 ★ (MCLP): 覆盖 {recommendation['covered_share_before']:.1%} → "
            f"{recommendation['covered_share_after']:.1%}"
        )
    bounds = shapely.total_bounds([t.geometry for t in towns]) if towns else None
    return {
        "towns": drawn_towns,
        "sites": sites,
        "suggested": suggested,
        "legend": {
            "title": title,
            "subtitle": f"覆盖人口比例（步行 {report['radius_m']:.0f} 米内）",
            "bands": [{"colour": colour, "text": f"≥ {floor:.0%}"} for floor, colour in BANDS],
            "uncovered": "未覆盖网格",
            "sites": "现有设施",
            "lines": legend_lines,
            "note": report["distance"],
            # Every number on the page includes these sites: said under the title.
            "sample": report.get("sample_note"),
        },
        "bounds": None
        if bounds is None
        else [[float(bounds[1]), float(bounds[0])], [float(bounds[3]), float(bounds[2])]],
    }
