"""The resident web map page, built with folium.

folium draws the Leaflet map, its tile layer and the page skeleton; the
project's ``static/app.js`` adds everything a resident uses (layers fetched as
GeoJSON, clustering, popups, search, locate, the nearest panel). Two forms:

- **served** (``/`` and ``/map``): scripts linked under ``static/``, layer data
  fetched from the API (as vector tiles for a layer above the style's
  ``vector_tiles_above``), nearest answered by ``/nearest``;
- **standalone** (``geo-service map --out``): scripts, styles and layer data
  inlined in one file that opens from disk with no server, every layer as
  GeoJSON (no server, no tiles); nearest is then computed in the page
  (straight line on a sphere, stated as such), and so is "open now": the file
  carries each opening-hours value's states for ``OFFLINE_HORIZON`` after the
  export, evaluated here by the same library as the service.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from functools import lru_cache
from html import escape
from typing import Any

import folium
import opening_hours
from branca.element import Element, MacroElement
from jinja2 import Template

from geo_service.analysis.nearest import DETOUR_FACTOR, LOCAL_TIME, WALKING_SPEED_KMH, SiteIndex
from geo_service.errors import InvalidParameter
from geo_service.outputs.geojson import feature_collection
from geo_service.sources.catalog import Catalog
from geo_service.sources.geocoding import gazetteer_landmarks
from geo_service.sources.hours import hours_text
from geo_service.sources.style import MapStyle, Tiles
from geo_service.store import Store
from geo_service.store.tiles import DETAIL_ZOOM
from geo_service.web.assets import SCRIPTS, STYLESHEETS
from geo_service.web.markup import finish_page, json_script

__all__ = [
    "OFFLINE_HORIZON",
    "build_page",
    "hours_changes",
    "open_states",
    "page_data",
    "site_times",
]


def _add_tiles(fmap: folium.Map, tiles: Tiles, tianditu_key: str | None) -> None:
    for provider in tiles.providers:
        if provider.requires_token():
            if not tianditu_key:
                raise InvalidParameter(
                    "tiles", "tianditu tiles need a key: set GEO_SERVICE_TIANDITU_KEY"
                )
            provider = provider(tk=tianditu_key)
        folium.TileLayer(
            provider.build_url(fill_subdomain=False),
            attr=provider.attribution,
            name=provider.name,
            subdomains=provider.get("subdomains", "abc"),
            max_zoom=provider.get("max_zoom", 18),
        ).add_to(fmap)


class _App(MacroElement):
    """Starts the page script once folium has created the map."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoServiceMap.start({{ this._parent.get_name() }},
            JSON.parse(document.getElementById("gs-config").textContent),
            {{ "JSON.parse(document.getElementById('gs-data').textContent)"
               if this.embedded else "null" }});
        {% endmacro %}
        """
    )

    def __init__(self, embedded: bool):
        super().__init__()
        self._name = "GeoServiceApp"
        self.embedded = embedded


def build_page(
    catalog: Catalog,
    style: MapStyle,
    *,
    tiles: Tiles = Tiles.none,
    tianditu_key: str | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    """The page as HTML. With ``data`` (from ``page_data``) it is standalone:
    every script, stylesheet and layer is inlined; without, it is served."""
    standalone = data is not None
    lon, lat = style.center
    fmap = folium.Map(
        location=[lat, lon],
        zoom_start=style.zoom,
        tiles=None,
        control_scale=False,  # the page adds a metric-only one (no miles or feet)
        zoom_control=False,  # the page adds it where the top bar does not cover it
    )
    # folium's defaults point at CDNs (jQuery, Bootstrap, Font Awesome...);
    # the page needs none of them, and Leaflet comes from an installed package.
    fmap.default_js, fmap.default_css = [], []
    _add_tiles(fmap, tiles, tianditu_key)
    root = fmap.get_root()
    root.title = escape(style.title_zh)  # branca writes the title as it is
    # No favicon request: browsers would otherwise ask for /favicon.ico.
    root.header.add_child(Element('<link rel="icon" href="data:,">'))
    for sheet in STYLESHEETS:
        root.header.add_child(
            Element(f"<style>{sheet.inlined()}</style>")
            if standalone
            else Element(f'<link rel="stylesheet" href="{sheet.url}">')
        )
    for script in SCRIPTS:
        root.header.add_child(
            Element(f"<script>{script.inlined()}</script>")
            if standalone
            else Element(f'<script src="{script.url}"></script>')
        )
    config = style.config(catalog) | {
        "mode": "standalone" if standalone else "served",
        "tiles": tiles.value,
        "crs": tiles.crs.value,
        # Below it, a tiled layer's dot may stand for several sites (store.tiles).
        "tileDetailZoom": DETAIL_ZOOM,
        "walking": {"detour": DETOUR_FACTOR, "speedKmh": WALKING_SPEED_KMH},
        "district": {"zh": catalog.district_zh, "en": catalog.district_en},
        # Real named places to find one's way by, drawn only when there are
        # no tiles and the office has imported no context layers.
        "gazetteer": [
            {"name": place.name, "lon": place.lon, "lat": place.lat}
            for place in gazetteer_landmarks(catalog.directory / "gazetteer.csv")
        ]
        if tiles == Tiles.none
        else [],
    }
    # Data reaches the page only as JSON; app.js builds the DOM from it as text.
    root.html.add_child(Element(json_script("gs-config", config)))
    if standalone:
        root.html.add_child(Element(json_script("gs-data", data)))
    fmap.add_child(_App(embedded=standalone))
    return finish_page(
        zoomable(root.render()),
        connect=not standalone,
        images=" ".join(f"https://{host}" for host in tiles.hosts()),
    )


#: folium's viewport forbids pinch-zoom (``user-scalable=no, maximum-scale=1``).
_FOLIUM_VIEWPORT = re.compile(r'<meta name="viewport" content="[^"]*"\s*/?>')


def zoomable(page: str) -> str:
    """The page with a viewport that lets a resident zoom it (WCAG 1.4.4):
    folium's, which forbids pinch-zoom, replaced."""
    page, found = _FOLIUM_VIEWPORT.subn(
        '<meta name="viewport" content="width=device-width, initial-scale=1">', page, count=1
    )
    if not found:
        raise ValueError("the page has no viewport <meta> to replace (has folium changed?)")
    return page


#: How far ahead of its export the offline file knows when sites are open.
OFFLINE_HORIZON = dt.timedelta(days=60)

_STATES = {
    opening_hours.State.OPEN: "open",
    opening_hours.State.CLOSED: "closed",
    opening_hours.State.UNKNOWN: "unknown",
}


def page_data(
    catalog: Catalog, store: Store, index: SiteIndex, tiles: Tiles = Tiles.none
) -> dict[str, Any]:
    """Everything a standalone page embeds: every layer (in the tiles'
    coordinate system), its hours as a resident reads them and, so the page
    can tell what is open when it is opened, each hours value's states from
    the export (local time, to the minute) until ``OFFLINE_HORIZON`` later."""
    crs = tiles.crs
    now = dt.datetime.now(LOCAL_TIME)
    start = now.replace(tzinfo=None, second=0, microsecond=0)
    until = start + OFFLINE_HORIZON
    layers = {
        layer.id: feature_collection(list(store.all_features(layer.id)), crs)
        for layer in catalog.layers.values()
    }
    values = index.hours_values()
    return {
        "layers": layers,
        "exportedAt": now.isoformat(timespec="minutes"),
        # Only the hours' wording: the states come from hoursChanges below.
        "hours": {v: shown for v in sorted(values) if (shown := hours_text(v)) is not None},
        "horizon": {
            "from": start.isoformat(timespec="minutes"),
            "until": until.isoformat(timespec="minutes"),
        },
        "hoursChanges": hours_changes(values, start, until),
    }


def hours_changes(
    values: Iterable[str], start: dt.datetime, until: dt.datetime
) -> dict[str, list[list[Any]]]:
    """Each ``opening_hours`` value's states from ``start`` to ``until`` (naive
    local times) as ``[[minute, state], ...]``: minutes after ``start``, the
    first at 0, one entry per change of state (open, closed or unknown).
    Values the library cannot read or evaluate are left out: the page
    calls their sites' state unknown, as the service does.

    >>> friday_noon = dt.datetime(2026, 11, 27, 12)
    >>> hours_changes(["Mo-Fr 08:00-17:00"], friday_noon, friday_noon + dt.timedelta(days=3))
    {'Mo-Fr 08:00-17:00': [[0, 'open'], [300, 'closed'], [4080, 'open']]}
    """
    out: dict[str, list[list[Any]]] = {}
    for value in sorted(set(values)):
        parsed = _parsed_hours(value)
        if parsed is None:
            continue
        changes: list[list[Any]] = []
        try:
            for begin, _end, state, _comment in parsed.intervals(start, until):
                minute = max(0, round((begin - start).total_seconds() / 60))
                name = _STATES.get(state, "unknown")
                if changes and changes[-1][1] == name:
                    continue
                if changes and changes[-1][0] == minute:
                    changes[-1][1] = name
                else:
                    changes.append([minute, name])
        except (ValueError, OverflowError, RuntimeError):
            continue
        out[value] = changes
    return out


def _picked(index: SiteIndex, layers: set[str] | None, feature_id: str | None) -> list[int]:
    """The index rows of every site, or of ``layers``, or the one ``feature_id``."""
    if feature_id is not None:  # found by id, not by a walk over every site
        found = (index.row_of(layer, feature_id) for layer in sorted(layers or index.layers))
        return [row for row in found if row is not None]
    return [row for row in index.rows() if layers is None or index.layer_id(row) in layers]


def _key(index: SiteIndex, row: int) -> str:
    return f"{index.layer_id(row)}/{index.feature_id(row)}"


def open_states(
    index: SiteIndex,
    when: dt.datetime,
    layers: set[str] | None = None,
    feature_id: str | None = None,
) -> dict[str, str]:
    """``layer/id`` -> open, closed or unknown at ``when``, for every site, or
    only those of ``layers`` (and with ``feature_id``, that one site)."""
    return {
        _key(index, row): index.open_state(row, when).value
        for row in _picked(index, layers, feature_id)
    }


#: A closed site's next opening is told only within this horizon.
NEXT_OPENING_WITHIN = dt.timedelta(days=7)


def site_times(
    index: SiteIndex,
    when: dt.datetime,
    layers: set[str] | None = None,
    feature_id: str | None = None,
) -> dict[str, Any]:
    """What the page says about time, for the sites ``open_states`` picks:

    - ``sites``: ``layer/id`` -> open, closed or unknown at ``when``;
    - ``opens``: for a closed site that opens again within a week, when
      (local time, ``YYYY-MM-DDTHH:MM``);
    - ``hours``: each distinct ``opening_hours`` value -> ``{"zh", "en"}`` as a
      resident reads it (values ``hours_text`` cannot render are left out: the
      page shows them as written).
    """
    rows = _picked(index, layers, feature_id)
    sites = {_key(index, row): index.open_state(row, when).value for row in rows}
    local = when.astimezone(LOCAL_TIME).replace(tzinfo=None)
    opens: dict[str, str] = {}
    hours: dict[str, dict[str, str]] = {}
    for row in rows:
        key = _key(index, row)
        value = index.opening_hours(row)
        if not value:
            continue
        if value not in hours and (shown := hours_text(value)) is not None:
            hours[value] = shown
        if sites[key] == "closed" and (opening := next_opening(value, local)) is not None:
            opens[key] = opening.isoformat(timespec="minutes")
    return {"sites": sites, "opens": opens, "hours": hours}


def next_opening(value: str, local: dt.datetime) -> dt.datetime | None:
    """When a site closed at ``local`` (naive local time) opens next, within
    ``NEXT_OPENING_WITHIN``; None when it does not or its hours say nothing."""
    parsed = _parsed_hours(value)
    if parsed is None:
        return None
    at = local.replace(second=0, microsecond=0)
    limit = local + NEXT_OPENING_WITHIN
    while (at := parsed.next_change(at)) is not None and at <= limit:
        state = parsed.state(at)[0]
        if state == opening_hours.State.OPEN:
            return at
        if state != opening_hours.State.CLOSED:
            return None
    return None


@lru_cache(maxsize=1024)
def _parsed_hours(value: str) -> Any:
    try:
        return opening_hours.OpeningHours(value)
    except (SyntaxError, ValueError):
        return None
