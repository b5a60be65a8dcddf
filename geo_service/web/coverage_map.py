"""The coverage map: a folium choropleth of the covered share per town, the
cells left uncovered, existing and recommended sites, town labels, a legend.
Leaflet is inlined from the installed package: the page needs no network."""

from __future__ import annotations

from html import escape
from typing import Any

import folium
import numpy as np
import shapely
from branca.element import Element
from shapely.geometry import box, mapping

from geo_service.store import StoredFeature
from geo_service.web.assets import Asset, default_icon_script

__all__ = ["coverage_map"]

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
    fmap = folium.Map(location=[36.80, 118.05], zoom_start=11, tiles=None, control_scale=True)
    fmap.default_js, fmap.default_css = [], []
    root = fmap.get_root()
    root.title = title
    root.header.add_child(Element('<link rel="icon" href="data:,">'))
    root.header.add_child(Element(f"<style>{Asset('leaflet', 'leaflet.css').inlined()}</style>"))
    root.header.add_child(Element(f"<script>{Asset('leaflet', 'leaflet.js').inlined()}</script>"))
    root.header.add_child(Element(default_icon_script()))
    rows = {row["town_code"]: row for row in report["towns"]}
    radius = report["radius_m"]
    for town in towns:
        row = rows.get(town.id)
        if row is None:
            continue
        share = row["population_covered_share"]
        median = row["median_distance_m"]
        label = (
            f"<b>{escape(row['town_name'])}</b><br>覆盖人口 {share:.0%} · 面积 "
            f"{row['area_covered_share']:.0%}<br>步行距离中位数 "
            f"{'-' if median is None else f'{median:.0f} 米'}"
            f"<br>设施 {row['facilities']} 个"
        )
        fill = _colour(share)
        folium.GeoJson(
            {"type": "Feature", "geometry": mapping(town.geometry), "properties": {}},
            style_function=lambda _f, colour=fill: {
                "fillColor": colour,
                "fillOpacity": 0.65,
                "color": "#555",
                "weight": 1.5,
            },
            tooltip=folium.Tooltip(label),
            name=town.id,
        ).add_to(fmap)
        point = town.geometry.representative_point()
        folium.Marker(
            [point.y, point.x],
            icon=folium.DivIcon(
                html=f'<div class="cov-label">{escape(row["town_name"])}<br>{share:.0%}</div>',
                icon_size=(90, 34),
                icon_anchor=(45, 17),
            ),
        ).add_to(fmap)
        shape = _uncovered_shape(report["uncovered"].get(town.id, []), report["cell_m"])
        if shape:
            folium.GeoJson(
                shape,
                style_function=lambda _f: {
                    "fillColor": "#b2182b",
                    "fillOpacity": 0.25,
                    "color": "#b2182b",
                    "weight": 0,
                },
                name=f"uncovered-{town.id}",
            ).add_to(fmap)
    for site in report["sites"]:
        folium.CircleMarker(
            [site["lat"], site["lon"]],
            radius=5,
            color="#1f2328",
            fill=True,
            fill_opacity=1,
            tooltip=escape(f"{site['name']} ({site['kind']})"),
        ).add_to(fmap)
    if recommendation:
        for number, site in enumerate(recommendation["sites"], start=1):
            folium.Marker(
                [site["lat"], site["lon"]],
                icon=folium.DivIcon(
                    html=f'<div class="cov-new">★{number}</div>',
                    icon_size=(36, 36),
                    icon_anchor=(18, 18),
                ),
                tooltip=f"建议新址 {number}: +{site['gain']:,} 人 ({escape(site['town_name'])})",
            ).add_to(fmap)
    bands = "".join(
        f'<div><span style="background:{colour}"></span>≥ {floor:.0%}</div>'
        for floor, colour in BANDS
    )
    after = ""
    if recommendation:
        after = (
            f"<div>建议新址 ★ (MCLP): 覆盖 {recommendation['covered_share_before']:.1%} → "
            f"{recommendation['covered_share_after']:.1%}</div>"
        )
    legend = f"""
    <style>
    .cov-label {{font: 12px/1.3 "Noto Sans CJK SC", sans-serif; text-align: center; color: #222;
      text-shadow: 0 0 3px #fff, 0 0 3px #fff; font-weight: 700}}
    .cov-new {{font: 700 18px/36px sans-serif; color: #fff; background: #6a1b9a;
      border-radius: 18px; text-align: center; box-shadow: 0 0 0 2px #fff}}
    .cov-legend {{position: absolute; z-index: 1000; right: 10px; bottom: 24px; background: #fff;
      padding: 8px 10px; border: 1px solid #ccc; border-radius: 6px;
      font: 13px/1.5 "Noto Sans CJK SC", sans-serif; max-width: 300px}}
    .cov-legend span {{display: inline-block; width: 16px; height: 12px; margin-right: 6px;
      border: 1px solid #999}}
    </style>
    <div class="cov-legend" id="cov-legend"><b>{escape(title)}</b>
      <div>覆盖人口比例（步行 {radius:.0f} 米内）</div>{bands}
      <div><span style="background:#b2182b;opacity:.4"></span>未覆盖网格</div>
      <div><span style="background:#1f2328;border-radius:6px"></span>现有设施</div>{after}
      <div style="color:#555;font-size:11px">{escape(report["distance"])}</div>
    </div>"""
    root.html.add_child(Element(legend))
    bounds = shapely.total_bounds([t.geometry for t in towns]) if towns else None
    if bounds is not None:
        fmap.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    html = root.render()
    return html.replace("<html>", '<html lang="zh-CN">', 1)
