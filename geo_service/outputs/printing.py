"""Printed district resource maps: the atlas (an overview, then every town),
one town, and a resident's nearest-services sheet. Vector PDF from matplotlib,
with Noto Sans CJK embedded so the file prints the same anywhere; the same
store and the same style file as the web map. No network.

Maps are drawn in the district's metric projection (EPSG:4548), so the scale
bar is true. Numbers on a town page are the rows of its index table; the
labels of town names are placed by ``adjustText`` so they keep off each other
and off the markers.

Every text from the store or a request is drawn literally: matplotlib would
read ``$...$`` as a TeX formula (a broken one fails the whole PDF, a valid one
prints something else). Mathtext and usetex are off for the printing's texts
from their creation (``use_cjk_font``), and ``_LiteralPages.savefig`` turns
them off again on every text of the figure, table cells included, just
before any page is written: a new page or label needs no care of its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: files only

import numpy as np
import pyproj
import shapely
from matplotlib import font_manager, patheffects
from matplotlib import pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch
from matplotlib.table import Table
from matplotlib.text import Text

from geo_service.analysis.nearest import LOCAL_TIME, SiteIndex, nearest_sites
from geo_service.errors import PrintError
from geo_service.outputs.print_fonts import PRINT_FAMILY, truetype_font
from geo_service.sources.catalog import Catalog
from geo_service.sources.crs import metric_crs
from geo_service.sources.geocoding import gazetteer_landmarks
from geo_service.sources.hours import hours_text
from geo_service.sources.style import MapStyle
from geo_service.store import Store, StoredFeature

__all__ = ["PAGE_SIZES", "PrintError", "atlas_pdf", "nearest_pdf", "town_pdf"]

#: Paper in inches, portrait.
PAGE_SIZES = {"A4": (8.27, 11.69), "A3": (11.69, 16.54)}
FONT_FILES = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
]
FONT_FAMILY = "Noto Sans CJK SC"
#: Layer marker shapes on paper (colour comes from the style file).
MARKERS = ["o", "s", "^", "D", "P", "v", "h"]
#: Said with counts: some printed sites are real, so "every site is an example" would be false.
SAMPLE_NOTICE = (
    "示例数据：所印 {total} 个地点中 {samples} 个为示例，其名称、位置与信息仅供演示，"
    "不代表真实服务点。"
)


_registered: set[str] = set()


def use_cjk_font() -> None:
    """Register Noto Sans CJK (once per process: each registration grows
    matplotlib's font list); without it Chinese would print as boxes, so refuse."""
    found = [path for path in FONT_FILES if Path(path).exists()]
    if not found:
        raise PrintError(
            "no CJK font: install Debian's fonts-noto-cjk (Noto Sans CJK); printed maps "
            "would otherwise show boxes instead of Chinese"
        )
    for path in found:
        if path not in _registered:
            weight = "Bold" if "Bold" in Path(path).name else "Regular"
            # The TrueType copy prints; the original is the fallback for rare
            # characters the copy leaves out (see print_fonts).
            font_manager.fontManager.addfont(str(truetype_font(path, weight)))
            font_manager.fontManager.addfont(path)
            _registered.add(path)
    plt.rcParams.update(
        {
            "font.family": [PRINT_FAMILY, FONT_FAMILY],
            "pdf.fonttype": 42,  # embed the font itself (Type 42), text stays searchable
            "axes.unicode_minus": False,
            # Names and addresses are printed as written: "$x^2$" is text, not TeX.
            "text.parse_math": False,
            "text.usetex": False,
        }
    )


def _literal_text(figure: Figure) -> None:
    """Every text of ``figure`` drawn as written, never as mathtext or TeX,
    without invisible format controls. ``findobj`` does not reach a table's
    cells (a cell is a patch that draws its own text), so those are added."""
    texts = figure.findobj(Text)
    for table in figure.findobj(Table):
        texts += [cell.get_text() for cell in table.get_celld().values()]
    for text in texts:
        text.set_parse_math(False)
        text.set_usetex(False)
        shown = text.get_text()
        if any(unicodedata.category(ch) == "Cf" for ch in shown):
            # Format controls (bidi overrides, zero-width marks) have no glyph:
            # on paper they are boxes, and in the PDF's text layer a reader's
            # search would see the characters after them reordered.
            text.set_text("".join(ch for ch in shown if unicodedata.category(ch) != "Cf"))


class _LiteralPages(PdfPages):
    """The only way a printed page is written: each figure's text made literal first."""

    def savefig(self, figure=None, **kwargs) -> None:
        if not isinstance(figure, Figure):
            figure = plt.gcf() if figure is None else plt.figure(figure)
        _literal_text(figure)
        super().savefig(figure, **kwargs)


@dataclass
class _Context:
    catalog: Catalog
    style: MapStyle
    towns: list[StoredFeature]
    district: list[StoredFeature]
    sites: dict[str, list[StoredFeature]]  # layer -> open and planned sites
    #: Where QR codes point; None: the pages say why they carry none.
    base_url: str | None
    size: tuple[float, float]
    to_metric: Any
    sample: tuple[int, int]  # sample sites, all sites printed
    #: The office's roads, water and landmarks (metric), drawn under the sites.
    context: list[tuple[str, str | None, Any]]  # kind, name, geometry


def _context(
    catalog: Catalog,
    store: Store,
    style: MapStyle,
    base_url: str | None,
    size: str,
    orientation: str,
    layers: Sequence[str] | None,
) -> _Context:
    use_cjk_font()
    if size not in PAGE_SIZES:
        raise PrintError(f"paper size must be one of {', '.join(PAGE_SIZES)}")
    width, height = PAGE_SIZES[size]
    if orientation == "landscape":
        width, height = height, width
    elif orientation != "portrait":
        raise PrintError("orientation must be portrait or landscape")
    wanted = list(layers) if layers else [layer.id for layer in catalog.facility_layers]
    for layer_id in wanted:
        if layer_id not in {layer.id for layer in catalog.facility_layers}:
            raise PrintError(f"unknown facility layer {layer_id!r}")
    towns = sorted(store.all_features("towns"), key=lambda t: t.id)
    district = list(store.all_features("district"))
    bounds = shapely.total_bounds([t.geometry for t in towns + district])
    forward = pyproj.Transformer.from_crs(4326, metric_crs(tuple(bounds)), always_xy=True)
    sites = {
        layer_id: [
            s for s in store.all_features(layer_id) if s.properties.get("status") != "suspended"
        ]
        for layer_id in wanted
    }
    sample = (
        sum(1 for layer in sites.values() for s in layer if s.properties.get("sample")),
        sum(len(layer) for layer in sites.values()),
    )

    def to_metric(geometry):
        return shapely.transform(
            geometry, lambda xy: np.column_stack(forward.transform(xy[:, 0], xy[:, 1]))
        )

    context = [
        (f.properties.get("kind"), f.properties.get("name"), to_metric(f.geometry))
        for layer in catalog.layers.values()
        if layer.is_context
        for f in store.all_features(layer.id)
    ]
    if not context:
        # No context from the office: the gazetteer's real named places (never
        # its roads, which are derived segments) label the maps instead.
        context = [
            ("landmark", place.name, to_metric(shapely.Point(place.lon, place.lat)))
            for place in gazetteer_landmarks(catalog.directory / "gazetteer.csv")
        ]
    return _Context(
        catalog,
        style,
        towns,
        district,
        sites,
        base_url.rstrip("/") if base_url else None,
        (width, height),
        to_metric,
        sample,
        context,
    )


# -- drawing pieces -------------------------------------------------------------------


def _draw_polygon(ax, geometry, **style) -> None:
    for part in getattr(geometry, "geoms", [geometry]):
        ax.add_patch(PolygonPatch(np.asarray(part.exterior.coords), closed=True, **style))


def _layer_look(ctx: _Context, layer_id: str) -> tuple[str, str]:
    index = [layer.id for layer in ctx.catalog.facility_layers].index(layer_id)
    return ctx.style.layers[layer_id].colour, MARKERS[index % len(MARKERS)]


def _scale_bar(ax) -> None:
    """A bar of a round length, about a fifth of the map's width, true in metres."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    target = (x1 - x0) / 5
    length = max(n for n in (100, 200, 500, 1000, 2000, 5000, 10000) if n <= max(target, 100))
    x, y = x0 + (x1 - x0) * 0.05, y0 + (y1 - y0) * 0.04
    ax.plot([x, x + length], [y, y], color="black", linewidth=3, solid_capstyle="butt")
    label = f"{length / 1000:g} 公里" if length >= 1000 else f"{length} 米"
    ax.text(x + length / 2, y + (y1 - y0) * 0.012, label, ha="center", va="bottom", fontsize=8)


def _north_arrow(ax) -> None:
    ax.annotate(
        "北\nN",
        xy=(0.95, 0.95),
        xytext=(0.95, 0.85),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=9,
        arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.5},
    )


def _legend(fig, ctx: _Context, anchor=(0.5, 0.02), loc: str = "lower center") -> None:
    handles = []
    for layer in ctx.catalog.facility_layers:
        if layer.id not in ctx.sites:
            continue
        colour, marker = _layer_look(ctx, layer.id)
        handles.append(
            plt.Line2D(
                [],
                [],
                marker=marker,
                color="white",
                markerfacecolor=colour,
                markeredgecolor="white",
                markersize=9,
                label=layer.zh,
            )
        )
    handles.append(plt.Line2D([], [], color=ctx.style.district_colour, linewidth=2, label="区界"))
    handles.append(
        plt.Line2D([], [], color=ctx.style.town_colour, linewidth=1, linestyle="--", label="镇街界")
    )
    fig.legend(
        handles=handles,
        loc=loc,
        bbox_to_anchor=anchor,
        ncol=4,
        fontsize=8,
        frameon=False,
    )


def _footer(fig, ctx: _Context, notice_y: float = 0.955) -> None:
    today = dt.datetime.now(LOCAL_TIME).date().isoformat()
    text = (
        f"制图日期 {today} · 数据来源：张店区拥军服务资源地图服务（各图层记录注明来源）"
        "· 镇街边界为示意"
    )
    fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=6.5, color="#444")
    samples, total = ctx.sample
    if samples:
        fig.text(
            0.5,
            notice_y,
            SAMPLE_NOTICE.format(samples=samples, total=total),
            ha="center",
            va="top",
            fontsize=8,
            color="#7a5b00",
            bbox={"facecolor": "#fff3cd", "edgecolor": "#e0b000", "boxstyle": "round,pad=0.3"},
        )


def _qr(fig, url: str | None, rect) -> None:
    import segno

    if url is None:
        # No public address set: a code for this computer would open nothing
        # on a resident's phone, so the page says why it has none.
        fig.text(
            rect[0] + rect[2] / 2,
            rect[1] + rect[3] / 2,
            "未设置公开网址\n本页不印二维码",
            ha="center",
            va="center",
            fontsize=7,
            color="#59636e",
        )
        return
    matrix = np.array([list(row) for row in segno.make(url, error="m").matrix_iter(border=2)])
    ax = fig.add_axes(rect)
    ax.imshow(matrix, cmap="binary", interpolation="nearest")
    ax.set_axis_off()
    fig.text(
        rect[0] + rect[2] / 2, rect[1] - 0.004, "扫码看在线地图", ha="center", va="top", fontsize=7
    )


def _town_labels(ax, ctx: _Context, avoid_xy: np.ndarray, highlight: str | None = None) -> None:
    from adjustText import adjust_text

    texts = []
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for town in ctx.towns:
        point = ctx.to_metric(town.geometry).representative_point()
        if not (x0 <= point.x <= x1 and y0 <= point.y <= y1):
            continue
        weight = "bold" if town.id == highlight else "normal"
        texts.append(
            ax.text(
                point.x,
                point.y,
                town.properties["name"],
                fontsize=9,
                weight=weight,
                ha="center",
                va="center",
                color="#222",
                bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 1},
            )
        )
    if texts:
        adjust_text(
            texts,
            x=avoid_xy[:, 0] if len(avoid_xy) else None,
            y=avoid_xy[:, 1] if len(avoid_xy) else None,
            ax=ax,
            expand=(1.2, 1.3),
            ensure_inside_axes=True,
        )


def _base_map(ax, ctx: _Context, focus: StoredFeature | None = None) -> None:
    for district in ctx.district:
        _draw_polygon(
            ax,
            ctx.to_metric(district.geometry),
            facecolor=ctx.style.land_colour,
            edgecolor=ctx.style.district_colour,
            linewidth=2,
            zorder=1,
        )
    for town in ctx.towns:
        grey = focus is not None and town.id != focus.id
        _draw_polygon(
            ax,
            ctx.to_metric(town.geometry),
            facecolor="#e4e4e4" if grey else "none",
            edgecolor=ctx.style.town_colour,
            linewidth=1 if not grey else 0.6,
            linestyle="--",
            zorder=2,
        )
    if focus is not None:
        _draw_polygon(
            ax,
            ctx.to_metric(focus.geometry),
            facecolor="none",
            edgecolor=ctx.style.district_colour,
            linewidth=2.2,
            zorder=3,
        )
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


#: Context looks: under the town lines and the sites (zorder 5 and up).
_WATER, _ROAD, _ROAD_CASING, _CONTEXT_TEXT = "#a9cbe8", "#ffffff", "#a39a88", "#4a443b"
_HALO = [patheffects.Stroke(linewidth=2, foreground="white")]


def _draw_context(ax, ctx: _Context, names: bool = True) -> None:
    """Water, roads and landmarks within the axes' view (call after fitting
    it), with names unless ``names`` is False (the district overview)."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    view = shapely.box(x0, y0, x1, y1)

    def label(draw, colour: str, *args, **kwargs) -> None:
        # A white halo under plain text: path effects draw text as outlines,
        # which pdftotext and a reader's search cannot find, so the halo is
        # a copy of its own (its outline only) and the name on top stays text.
        draw(*args, **kwargs, path_effects=_HALO, zorder=3.9, color="white")
        draw(*args, **kwargs, zorder=4, color=colour)

    for kind, name, geometry in ctx.context:
        if not view.intersects(geometry):
            continue
        shown = geometry.intersection(view)
        lines = [g for g in getattr(shown, "geoms", [shown]) if g.geom_type == "LineString"]
        areas = [g for g in getattr(shown, "geoms", [shown]) if g.geom_type == "Polygon"]
        if kind == "water":
            for area in areas:
                _draw_polygon(
                    ax, area, facecolor=_WATER, edgecolor=_WATER, linewidth=0.5, zorder=1.5
                )
            for line in lines:
                ax.plot(*line.xy, color=_WATER, linewidth=1.6, zorder=1.5, solid_capstyle="round")
        elif kind == "road":
            for line in lines:
                ax.plot(
                    *line.xy, color=_ROAD_CASING, linewidth=2.6, zorder=1.6, solid_capstyle="round"
                )
                ax.plot(*line.xy, color=_ROAD, linewidth=1.6, zorder=1.7, solid_capstyle="round")
        elif kind == "landmark" and shown.geom_type == "Point":
            ax.scatter(
                [shown.x],
                [shown.y],
                s=8,
                c=_CONTEXT_TEXT,
                edgecolors="white",
                linewidths=0.4,
                zorder=4,
            )
        if not names or not name:
            continue
        if kind == "landmark" and shown.geom_type == "Point":
            label(
                ax.annotate,
                _CONTEXT_TEXT,
                name,
                (shown.x, shown.y),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=6.5,
                va="center",
                annotation_clip=True,
                clip_on=True,  # a name near the edge is cut, not printed over the page
            )
        elif lines or areas:
            longest = max(lines + [a.exterior for a in areas], key=lambda g: g.length)
            if longest.length < (x1 - x0) * 0.12:
                continue  # too short a stretch in view to carry its name
            # A line carries its name along its middle; a lake, inside it.
            middle = (
                longest.interpolate(0.5, normalized=True)
                if lines
                else max(areas, key=lambda g: g.area).representative_point()
            )
            a = longest.interpolate(0.45, normalized=True)
            b = longest.interpolate(0.55, normalized=True)
            angle = float(np.degrees(np.arctan2(b.y - a.y, b.x - a.x)))
            if angle > 90:
                angle -= 180
            elif angle < -90:
                angle += 180
            label(
                ax.text,
                "#2f6690" if kind == "water" else _CONTEXT_TEXT,
                middle.x,
                middle.y,
                name,
                fontsize=6.5,
                rotation=angle if lines else 0,
                rotation_mode="anchor",
                ha="center",
                va="center",
                style="italic" if kind == "water" else "normal",
                clip_on=True,
            )


def _fit(ax, geometry, margin: float = 0.08) -> None:
    x0, y0, x1, y1 = geometry.bounds
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    ax.set_xlim(x0 - dx, x1 + dx)
    ax.set_ylim(y0 - dy, y1 + dy)


# -- pages ----------------------------------------------------------------------------------


def _overview(pdf: PdfPages, ctx: _Context) -> None:
    fig = plt.figure(figsize=ctx.size)
    fig.suptitle(f"{ctx.catalog.district_zh}拥军服务资源分布图", fontsize=18, y=0.99)
    ax = fig.add_axes([0.03, 0.1, 0.62, 0.82] if _landscape(ctx) else [0.04, 0.1, 0.92, 0.82])
    _base_map(ax, ctx)
    _fit(ax, shapely.union_all([ctx.to_metric(d.geometry) for d in ctx.district]))
    _draw_context(ax, ctx, names=False)  # the district view: lines, no names
    points = []
    for layer_id, sites in ctx.sites.items():
        colour, marker = _layer_look(ctx, layer_id)
        xy = np.array([[p.x, p.y] for p in (ctx.to_metric(s.geometry) for s in sites)]).reshape(
            -1, 2
        )
        points.append(xy)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=28,
            marker=marker,
            c=colour,
            edgecolors="white",
            linewidths=0.6,
            zorder=5,
        )
    _town_labels(ax, ctx, np.vstack(points) if points else np.empty((0, 2)))
    _scale_bar(ax)
    _north_arrow(ax)
    # The district is wider than tall: pull the map up under the title and
    # hang the legend right below it, rather than leaving a gap in between.
    ax.apply_aspect()
    box = ax.get_position()
    top = 0.93
    ax.set_position([box.x0, top - box.height, box.width, box.height])
    _legend(fig, ctx, anchor=(box.x0 + box.width / 2, top - box.height - 0.005), loc="upper center")
    if _landscape(ctx):  # the table beside the map, in the paper's spare width
        _summary_table(fig, ctx, [0.68, 0.06, 0.29, top - 0.06], font_size=9)
    else:
        room = top - box.height - 0.09  # what is left above the footer
        rows = len(ctx.towns) + 2
        if room - 0.03 >= rows * 0.011:  # only when every row gets room for 6.5 pt type
            _summary_table(fig, ctx, [0.08, 0.03, 0.84, room - 0.03], font_size=6.5)
    _footer(fig, ctx)
    pdf.savefig(fig)
    plt.close(fig)


def _landscape(ctx: _Context) -> bool:
    return ctx.size[0] > ctx.size[1]


def _summary_table(fig, ctx: _Context, rect, font_size: float) -> None:
    """Sites per town and layer, the overview's numbers at a glance."""
    layers = [layer for layer in ctx.catalog.facility_layers if layer.id in ctx.sites]
    counts: dict[tuple[str, str], int] = {}
    for layer in layers:
        for site in ctx.sites[layer.id]:
            key = (site.properties.get("town_code"), layer.id)
            counts[key] = counts.get(key, 0) + 1
    body = [
        [town.properties["name"], *[str(counts.get((town.id, layer.id), 0)) for layer in layers]]
        for town in ctx.towns
    ]
    body.append(["合计", *[str(len(ctx.sites[layer.id])) for layer in layers]])
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    header = ["镇街", *[layer.zh for layer in layers]]
    # Columns as wide as their longest text (a layer's name is longer than its counts).
    needs = [
        max(_em(text) for text in [header[c], *(row[c] for row in body)]) + _CELL_PAD
        for c in range(len(header))
    ]
    table = ax.table(
        cellText=body,
        colLabels=header,
        loc="upper center",
        cellLoc="center",
        colWidths=[need / sum(needs) for need in needs],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(font_size)
    # The rows share the room, but grow no taller than their line.
    height = min(1 / (len(body) + 1), (_LINE + _ROW_PAD) * font_size / (rect[3] * ctx.size[1] * 72))
    for (row, _col), cell in table.get_celld().items():
        cell.set_height(height)
        if row == 0 or row == len(body):
            cell.set_facecolor("#eeeeee")


def _table_rows(ctx: _Context, town: StoredFeature) -> list[tuple[StoredFeature, str]]:
    rows = []
    for layer in ctx.catalog.facility_layers:
        for site in sorted(ctx.sites.get(layer.id, []), key=lambda s: s.id):
            if site.properties.get("town_code") == town.id:
                rows.append((site, layer.id))
    return rows


#: A continuation page for fewer rows than this is not printed: the first
#: page's table shrinks its type (down to ``TABLE_FONT_SIZES[-1]``) to hold them.
MIN_CONTINUATION_ROWS = 8
#: Table type sizes tried in turn, points, from the paper's own (A4: 7, A3: 9);
#: 6 pt is the smallest a resident reads.
TABLE_FONT_SIZES = (9.0, 8.0, 7.0, 6.5, 6.0)
#: Line height and the cell's top+bottom and left+right padding, in ems.
_LINE, _ROW_PAD, _CELL_PAD = 1.25, 0.55, 0.8
_COLUMNS = ["编号", "名称", "类型", "地址", "电话", "开放时间"]
#: A run that never breaks: Latin, digits and times ("09:00–17:30"), with
#: closing punctuation kept on its line; otherwise one wide character (and
#: its closing punctuation), or one space.
_TOKEN = re.compile(
    r"[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]+[，。；、）》」]*"
    r"|\s|.[，。；、）》」]*",
    re.DOTALL,
)


def _em(text: str) -> float:
    """Width of ``text`` in ems: CJK and full-width characters are one em,
    the rest a generous 0.6 (Noto Sans' Latin and digits are 0.5–0.6)."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.6 for ch in text)


def _wrap(text: str, width: float) -> str:
    """``text`` in lines of at most ``width`` ems, broken between words,
    times and Chinese characters, never inside a time; a space where a line
    breaks becomes the break. Every other character is kept, in order."""
    lines, line = [], ""
    for token in _TOKEN.findall(text):
        if token.isspace() and token != " " and token in "\n\r":
            lines.append(line)
            line = ""
            continue
        if _em(line + token) <= width or not line.strip():
            line += token
        elif token == " ":
            lines.append(line)
            line = ""
            continue
        else:
            lines.append(line)
            line = token
        while _em(line) > width and len(line) > 1:  # one run wider than the column
            cut = next((i for i in range(len(line) - 1, 0, -1) if _em(line[:i]) <= width), 1)
            lines.append(line[:cut])
            line = line[cut:]
    lines.append(line)
    return "\n".join(lines)


def _hours(value: Any) -> str:
    """Opening hours as a resident reads them (Chinese); a value outside the
    forms offices use is printed as written."""
    if not value:
        return ""
    shown = hours_text(str(value))
    return shown["zh"] if shown else str(value)


def _row_texts(ctx: _Context, number: int, site: StoredFeature, layer_id: str) -> list[str]:
    props = site.properties
    kind = ctx.catalog.layer(layer_id).kinds.get(props.get("kind"))
    planned = "（筹建中）" if props.get("status") == "planned" else ""
    return [
        str(number),
        f"{props.get('name')}{planned}",
        str(kind.zh if kind else props.get("kind") or ""),
        str(props.get("address") or ""),
        str(props.get("phone") or ""),
        _hours(props.get("opening_hours")),
    ]


@dataclass
class _TableLayout:
    """One town's index table: which columns, how wide (ems) and in what type."""

    columns: list[int]  # indexes into _COLUMNS: empty columns are left out
    widths: list[float]  # ems, padding included
    font_size: float

    def cells(self, texts: list[str]) -> list[str]:
        return [
            _wrap(texts[c], width - _CELL_PAD) or "-"
            for c, width in zip(self.columns, self.widths, strict=True)
        ]

    def height(self, cells: list[str]) -> float:
        """A row's height in points: its lines, no more."""
        lines = max(cell.count("\n") + 1 for cell in cells)
        return (lines * _LINE + _ROW_PAD) * self.font_size


def _table_layout(rows_texts: list[list[str]], width_pt: float, font_size: float) -> _TableLayout:
    """Columns sized to their content: each narrow column gets its longest
    text, the wide ones share what is left; columns empty in every row go."""
    columns = [c for c in range(len(_COLUMNS)) if c < 2 or any(texts[c] for texts in rows_texts)]
    natural = {
        c: max([_em(_COLUMNS[c])] + [_em(texts[c]) for texts in rows_texts]) + _CELL_PAD
        for c in columns
    }
    room = width_pt / font_size
    widths: dict[int, float] = {}
    for i, c in enumerate(sorted(columns, key=natural.get)):
        widths[c] = min(natural[c], room / (len(columns) - i))
        room -= widths[c]
    if room > 0:  # everything fits on one line: spread the rest evenly
        for c in columns:
            widths[c] += room / len(columns)
    return _TableLayout(columns, [widths[c] for c in columns], font_size)


@dataclass
class _TablePages:
    layout: _TableLayout  # the map page's table
    more_layout: _TableLayout  # continuation pages' (as wide as the paper)
    chunks: list[list[int]]  # row indexes per page; the first is under the map


def _paginate(ctx: _Context, rows, first: list[float], more: list[float]) -> _TablePages:
    """Split a town's rows between its map page (table ``first``, a figure
    rect) and continuation pages (``more``), in the largest type that leaves
    no continuation page of fewer than ``MIN_CONTINUATION_ROWS`` rows."""
    width, height = ctx.size
    texts = [_row_texts(ctx, n, site, layer) for n, (site, layer) in enumerate(rows, start=1)]

    def fill(layout: _TableLayout, room_pt: float, start: int) -> int:
        used, count = layout.height(layout.cells(_COLUMNS)), 0
        for texts_ in texts[start:]:
            used += layout.height(layout.cells(texts_))
            if used > room_pt:
                break
            count += 1
        return max(count, 1)

    largest = 9.0 if min(ctx.size) > PAGE_SIZES["A4"][0] else 7.0
    for size in [s for s in TABLE_FONT_SIZES if s <= largest]:
        layout = _table_layout(texts, first[2] * width * 72, size)
        fitted = fill(layout, first[3] * height * 72, 0)
        if len(rows) - fitted == 0 or len(rows) - fitted >= MIN_CONTINUATION_ROWS:
            break
    else:  # leave enough rows for a full continuation page
        fitted = max(1, len(rows) - MIN_CONTINUATION_ROWS)
    chunks = [list(range(min(fitted, len(rows))))]
    start = len(chunks[0])
    # A continuation page is as wide as the paper: its own column widths.
    layout_more = _table_layout(texts, more[2] * width * 72, layout.font_size)
    while start < len(rows):
        count = fill(layout_more, more[3] * height * 72, start)
        chunks.append(list(range(start, start + count)))
        start += count
    if len(chunks) > 2 and len(chunks[-1]) < MIN_CONTINUATION_ROWS:
        # The last page's few rows: the page before hands over some of its own.
        moved = MIN_CONTINUATION_ROWS - len(chunks[-1])
        chunks[-1] = chunks[-2][-moved:] + chunks[-1]
        chunks[-2] = chunks[-2][:-moved]
    return _TablePages(layout, layout_more, chunks)


def _index_table(fig, ctx: _Context, rows, numbers: list[int], layout: _TableLayout, rect) -> None:
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    if not numbers:
        ax.text(0.5, 0.9, "本镇街暂无上图设施", ha="center", fontsize=10)
        return
    header = [_COLUMNS[c] for c in layout.columns]
    body = [layout.cells(_row_texts(ctx, n + 1, *rows[n])) for n in numbers]
    total = sum(layout.widths)
    table = ax.table(
        cellText=body,
        colLabels=header,
        loc="upper left",
        cellLoc="left",
        colWidths=[w / total for w in layout.widths],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(layout.font_size)
    rect_pt = rect[3] * ctx.size[1] * 72
    for (row, col), cell in table.get_celld().items():
        cell.PAD = _CELL_PAD / 2 / layout.widths[col]  # half the padding each side
        cell.set_linewidth(0.4)
        if row == 0:
            cell.set_height(layout.height(header) / rect_pt)
            cell.set_facecolor("#eeeeee")
        else:
            cell.set_height(layout.height(body[row - 1]) / rect_pt)


#: Numbers spread clear of each other on one map; a page with more sites than
#: this is no longer a map to read number by number.
MAX_PLACED_NUMBERS = 300


def _place_numbers(ax, points: np.ndarray, marker_size: float = 60.0) -> list:
    """Each site's number beside its marker. adjustText spreads them first;
    then a deterministic rule finishes the job: a number that still touches
    another number or any marker walks out on a spiral until it is clear, and
    a thin line leads back to its marker. Number n is row n of the table."""
    texts = [
        ax.text(x, y, str(number), fontsize=8, weight="bold", ha="left", va="bottom", zorder=8)
        for number, (x, y) in enumerate(points, start=1)
    ]
    if texts and len(texts) <= MAX_PLACED_NUMBERS:
        # adjustText's cost grows with the square of the labels (20,000 sites
        # asked it for 143 GiB): past a page's worth, numbers stay at their markers.
        _spread_numbers(ax, texts, points, marker_size)
    for text in texts:
        # The white halo is a copy underneath: path effects draw text as
        # outlines, and the number itself stays text a reader can search.
        x, y = text.get_position()
        ax.text(
            x,
            y,
            text.get_text(),
            fontsize=8,
            weight="bold",
            ha="left",
            va="bottom",
            zorder=7.9,
            color="white",
            path_effects=[patheffects.Stroke(linewidth=2.5, foreground="white")],
        )
    return texts


def _spread_numbers(ax, texts: list, points: np.ndarray, marker_size: float) -> None:
    from adjustText import adjust_text
    from matplotlib.transforms import Bbox

    adjust_text(
        texts, x=points[:, 0], y=points[:, 1], ax=ax, expand=(1.3, 1.4), ensure_inside_axes=True
    )
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    centres = ax.transData.transform(points)
    radius = math.sqrt(marker_size) / 2 * figure.dpi / 72 + 1  # marker half-width, pixels
    markers = [
        Bbox.from_extents(x - radius, y - radius, x + radius, y + radius) for x, y in centres
    ]
    placed: list[Bbox] = []
    to_data = ax.transData.inverted()
    for text, (cx, cy) in zip(texts, centres, strict=True):
        for step in range(400):
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed + markers):
                break
            angle, reach = step * 0.5, radius + 4 + step * 0.8
            text.set_position(
                to_data.transform((cx + reach * math.cos(angle), cy + reach * math.sin(angle)))
            )
        placed.append(text.get_window_extent(renderer))
        tx, ty = ax.transData.transform(text.get_position())
        if math.hypot(tx - cx, ty - cy) > radius + 8:  # moved away: lead back to the marker
            x0, y0 = to_data.transform((cx, cy))
            x1, y1 = text.get_position()
            ax.plot([x0, x1], [y0, y1], color="#555", linewidth=0.5, zorder=7)


@dataclass
class _TownPage:
    """Where the parts of a town page go (figure fractions): portrait puts the
    table under the map; landscape puts the map left and the table right."""

    map: list[float]
    legend: tuple[float, float]
    qr: list[float]
    table: list[float]
    more: list[float] = dataclasses.field(default_factory=lambda: [0.04, 0.04, 0.92, 0.88])


def _town_page(ctx: _Context) -> _TownPage:
    width, height = ctx.size
    if width > height:
        return _TownPage(
            map=[0.03, 0.10, 0.55, 0.83],
            legend=(0.305, 0.085),
            qr=[0.885, 0.81, 0.08, 0.11],
            table=[0.61, 0.04, 0.365, 0.75],
        )
    return _TownPage(
        map=[0.04, 0.46, 0.92, 0.47],
        legend=(0.5, 0.415),
        qr=[0.82, 0.36, 0.12, 0.08],
        table=[0.04, 0.03, 0.76, 0.36],
    )


def _town_pages(pdf: PdfPages, ctx: _Context, town: StoredFeature) -> None:
    rows = _table_rows(ctx, town)
    look = _town_page(ctx)
    fig = plt.figure(figsize=ctx.size)
    fig.suptitle(f"{town.properties['name']} 拥军服务资源分布图", fontsize=16, y=0.99)
    ax = fig.add_axes(look.map)
    shape = ctx.to_metric(town.geometry)
    _base_map(ax, ctx, focus=town)
    _fit(ax, shape)
    _draw_context(ax, ctx)
    points = []
    for site, layer_id in rows:
        colour, marker = _layer_look(ctx, layer_id)
        point = ctx.to_metric(site.geometry)
        points.append((point.x, point.y))
        planned = site.properties.get("status") == "planned"  # hollow: not open yet
        ax.scatter(
            [point.x],
            [point.y],
            s=60,
            marker=marker,
            c="white" if planned else colour,
            edgecolors=colour if planned else "white",
            linewidths=1.2 if planned else 0.8,
            zorder=6,
        )
    avoid = np.array(points).reshape(-1, 2)
    _place_numbers(ax, avoid)
    _town_labels(ax, ctx, avoid, highlight=town.id)
    _scale_bar(ax)
    _north_arrow(ax)
    if _landscape(ctx):  # the map under the title, the legend right below it
        ax.apply_aspect()
        box = ax.get_position()
        ax.set_position([box.x0, 0.93 - box.height, box.width, box.height])
        _legend(fig, ctx, anchor=(box.x0 + box.width / 2, 0.925 - box.height), loc="upper center")
    else:
        _legend(fig, ctx, anchor=look.legend)
    _qr(fig, ctx.base_url and f"{ctx.base_url}/map#town={town.id}", look.qr)
    pages = _paginate(ctx, rows, look.table, look.more)
    _index_table(fig, ctx, rows, pages.chunks[0] if rows else [], pages.layout, look.table)
    _footer(fig, ctx)
    pdf.savefig(fig)
    plt.close(fig)
    for chunk in pages.chunks[1:]:
        fig = plt.figure(figsize=ctx.size)
        fig.suptitle(f"{town.properties['name']} 设施一览（续）", fontsize=14, y=0.99)
        _index_table(fig, ctx, rows, chunk, pages.more_layout, look.more)
        _footer(fig, ctx)
        pdf.savefig(fig)
        plt.close(fig)


def _write(pages) -> bytes:
    buffer = io.BytesIO()
    with _LiteralPages(
        buffer, metadata={"Title": "张店区拥军服务资源地图", "Creator": "geo-service"}
    ) as pdf:
        pages(pdf)
    return buffer.getvalue()


def atlas_pdf(
    catalog,
    store,
    style,
    *,
    base_url,
    size="A4",
    orientation="portrait",
    layers=None,
    progress: Callable[[float], None] | None = None,
) -> bytes:
    """The overview page, then each town's pages (map, numbered sites, index table).
    ``progress`` hears the share done (0..1) after each town."""
    ctx = _context(catalog, store, style, base_url, size, orientation, layers)

    def pages(pdf):
        _overview(pdf, ctx)
        for done, town in enumerate(ctx.towns, start=1):
            _town_pages(pdf, ctx, town)
            if progress is not None:
                progress(done / (len(ctx.towns) + 1))

    return _write(pages)


def town_pdf(
    catalog, store, style, code: str, *, base_url, size="A4", orientation="portrait", layers=None
) -> bytes:
    ctx = _context(catalog, store, style, base_url, size, orientation, layers)
    town = next((t for t in ctx.towns if t.id == code), None)
    if town is None:
        from geo_service.errors import FeatureNotFound

        raise FeatureNotFound("towns", code)
    return _write(lambda pdf: _town_pages(pdf, ctx, town))


#: A geocoded position at or below this confidence is approximate (an address
#: resolved only to a road or a town's centre): the sheet says so and rounds.
APPROXIMATE_CONFIDENCE = 0.5


def distance_step(confidence: float | None) -> int | None:
    """Metres the sheet rounds distances to: none for a given or well-matched
    position, 100 m for an approximate one, 500 m for a rough one (≤ 0.3)."""
    if confidence is None or confidence > APPROXIMATE_CONFIDENCE:
        return None
    return 500 if confidence <= 0.3 else 100


def _distance_text(metres: float, step: int | None) -> str:
    if step is None:
        return f"{metres:,.0f} 米"
    rounded = round(metres / step) * step
    return f"{step} 米以内" if rounded == 0 else f"约 {rounded:,} 米"


def nearest_numbering(catalog, answers: dict[str, list]) -> list[tuple[int, str, Any]]:
    """The sheet's sites in list order, each with its number on the map and in
    the list: ``(number, layer id, nearest-site result)``."""
    numbered = []
    for layer in catalog.facility_layers:
        for result in answers.get(layer.id, []):
            numbered.append((len(numbered) + 1, layer.id, result))
    return numbered


def nearest_pdf(
    catalog,
    store,
    style,
    index: SiteIndex,
    lon: float,
    lat: float,
    *,
    base_url,
    where: str,
    per_layer: int = 2,
    size="A4",
    confidence: float | None = None,
) -> bytes:
    """One page for one resident, in large type: a small map with numbered
    sites and the list of the nearest sites of each layer under the same
    numbers (the same answer as the nearest-service API). ``confidence`` is
    the geocoder's for an address (None for a position given as such); at or
    below ``APPROXIMATE_CONFIDENCE`` the sheet says the position is
    approximate and rounds its distances (``distance_step``)."""
    ctx = _context(catalog, store, style, base_url, size, "portrait", None)
    answers = {
        layer.id: nearest_sites(index, lon, lat, per_layer, [layer.id])
        for layer in catalog.facility_layers
    }
    numbered = nearest_numbering(catalog, answers)
    step = distance_step(confidence)
    width_pt = ctx.size[0] * 72

    def page(pdf):
        fig = plt.figure(figsize=ctx.size)
        fig.suptitle("离您最近的拥军服务点", fontsize=22, y=0.985, weight="bold")
        fig.text(0.5, 0.918, where, ha="center", fontsize=13)
        if step is not None:
            fig.text(
                0.5,
                0.896,
                f"注意：地址只定位到大致位置（可信度 {confidence:.1f}），"
                f"距离按 {step} 米取整，仅供参考，请以实际为准。",
                ha="center",
                fontsize=10,
                color="#8a1c1c",
            )
        ax = fig.add_axes([0.25, 0.69, 0.5, 0.19])
        here = ctx.to_metric(shapely.Point(lon, lat))
        _base_map(ax, ctx)
        spots = np.array(
            [[p.x, p.y] for p in (ctx.to_metric(r.feature.geometry) for _, _, r in numbered)]
        ).reshape(-1, 2)
        xs = [*spots[:, 0], here.x]
        ys = [*spots[:, 1], here.y]
        pad = max(max(xs) - min(xs), max(ys) - min(ys), 1500) * 0.15
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
        _draw_context(ax, ctx)
        for (_, layer_id, _), (x, y) in zip(numbered, spots, strict=True):
            colour, marker = _layer_look(ctx, layer_id)
            ax.scatter([x], [y], s=60, marker=marker, c=colour, edgecolors="white", zorder=5)
        ax.scatter([here.x], [here.y], s=160, marker="*", c="#0b57d0", edgecolors="white", zorder=6)
        _place_numbers(ax, spots)  # number n is the n-th site of the list below
        _scale_bar(ax)
        _north_arrow(ax)
        # The list, laid out first and drawn after: its gaps shrink (not its
        # type) when ten sites with long hours would run into the footnote.
        detail_em = width_pt * (0.94 - 0.10) / 9  # the detail lines' width, 9 pt ems
        items: list[tuple[float, float, str, dict]] = []  # gap above, x, text, look
        for layer in catalog.facility_layers:
            gap = 0.036 if items else 0.0  # clear of the previous layer's last line
            items.append((gap, 0.06, layer.zh, {"fontsize": 14, "weight": "bold"}))
            if not answers[layer.id]:
                items.append((0.028, 0.08, "附近暂无", {"fontsize": 11}))
            for number, layer_id, r in numbered:
                if layer_id != layer.id:
                    continue
                props = r.feature.properties
                shown = (
                    r.distance_m if step is None else max(step, round(r.distance_m / step) * step)
                )
                minutes = r.walk_minutes * shown / max(r.distance_m, 1)  # as rounded
                items.append((0.028, 0.06, str(number), {"fontsize": 11.5, "weight": "bold"}))
                items.append(
                    (
                        0.0,
                        0.09,
                        f"{props.get('name')}　{_distance_text(r.distance_m, step)}"
                        f"（步行约 {max(1, round(minutes))} 分钟）",
                        {"fontsize": 11.5},
                    )
                )
                parts = [f"地址：{props.get('address') or '-'}"]
                if props.get("phone"):
                    parts.append(f"电话：{props['phone']}")
                parts.append(f"开放时间：{_hours(props.get('opening_hours')) or '-'}")
                detail = _wrap("　".join(parts), detail_em)
                items.append((0.021, 0.10, detail, {"fontsize": 9, "color": "#333"}))
                items.append((0.014 * detail.count("\n"), 0.0, "", {}))  # its extra lines
        top, bottom = 0.665, 0.06
        needed = sum(gap for gap, *_ in items)
        shrink = min(1.0, (top - bottom) / needed) if needed else 1.0
        y = top
        for gap, x, text, look in items:
            y -= gap * shrink
            if text and look["fontsize"] == 9:  # a detail: maybe lines, hung by its first
                fig.text(x, y + 0.0095, text, va="top", **look)
            elif text:
                fig.text(x, y, text, **look)
        fig.text(
            0.06,
            0.03,
            "距离为直线距离；步行时间按直线距离 × 1.3 ÷ 4.5 公里/小时估算。",
            fontsize=8,
            color="#444",
        )
        _footer(fig, ctx, notice_y=0.952)
        pdf.savefig(fig)
        plt.close(fig)

    return _write(page)
