"""The map style office staff edit (``maps/style.toml``), checked against the catalog.

The catalog says what layers and kinds exist and what they are called; the
style says how they look. A style naming a layer or kind the catalog does not
know, or a colour that is not a colour, is refused with every problem named,
so a typo never silently drops a layer from the map.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xyzservices import TileProvider
from xyzservices import providers as registry

from geo_service import resources
from geo_service.errors import StyleError
from geo_service.sources.catalog import Catalog
from geo_service.sources.crs import CoordinateSystem

__all__ = [
    "TILE_PROVIDERS",
    "KindStyle",
    "MapStyle",
    "Tiles",
    "default_style_file",
    "load_style",
]

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def default_style_file() -> Path:
    """The shipped ``maps/style.toml`` (packaged as ``geo_service.maps``)."""
    return resources.style_file()


class Tiles(StrEnum):
    """Basemap tiles. ``none`` draws the district and towns as the basemap and
    makes no request beyond the service; the others are online options, each
    described as data in ``TILE_PROVIDERS``."""

    none = "none"
    osm = "osm"
    tianditu = "tianditu"
    amap = "amap"

    @property
    def crs(self) -> CoordinateSystem:
        """Coordinates the tiles are drawn in: Amap's are GCJ-02, so everything
        drawn on them must be shifted too, or it sits ~500 m off."""
        return CoordinateSystem.gcj02 if self == Tiles.amap else CoordinateSystem.wgs84

    @property
    def providers(self) -> list[TileProvider]:
        """The tile layers drawn, bottom first (none for ``none``)."""
        return TILE_PROVIDERS[self]

    def hosts(self) -> list[str]:
        """Every host the tiles come from, for the page's image policy (the
        ``{s}`` subdomains expanded): the page may load images from these only."""
        hosts: list[str] = []
        for provider in self.providers:
            host = urlsplit(provider.url).hostname or ""
            subdomains = provider.get("subdomains", "")
            for sub in subdomains if "{s}" in host else [""]:
                name = host.replace("{s}", sub)
                if name not in hosts:
                    hosts.append(name)
        return hosts


def _tianditu(layer: str, name: str) -> TileProvider:
    # The national basemap of the Ministry of Natural Resources, in Web
    # Mercator (``_w``); ``tk`` is the deployment's own key (``{tk}``).
    return TileProvider(
        name=f"Tianditu.{name}",
        url=(
            f"https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
            f"&VERSION=1.0.0&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
            "&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={tk}"
        ),
        attribution="© 天地图 Tianditu",
        subdomains="01234567",
        max_zoom=18,
        tk="<insert your tianditu key here>",
    )


#: The tile layers of each basemap, bottom first. OpenStreetMap is taken from
#: xyzservices' registry as it is; Tianditu (streets, then its Chinese labels)
#: and Amap (GCJ-02, over HTTPS with its four tile hosts) are written here, in
#: xyzservices' own form, so every basemap is data read the same way.
TILE_PROVIDERS: dict[Tiles, list[TileProvider]] = {
    Tiles.none: [],
    Tiles.osm: [registry.OpenStreetMap.Mapnik],
    Tiles.tianditu: [_tianditu("vec", "Vector"), _tianditu("cva", "VectorLabels")],
    Tiles.amap: [
        TileProvider(
            name="Amap.Normal",
            url=(
                "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1"
                "&style=8&x={x}&y={y}&z={z}"
            ),
            attribution="© 高德地图 AutoNavi",
            subdomains="1234",
            max_zoom=18,
        )
    ],
}


@dataclass(frozen=True)
class KindStyle:
    colour: str
    glyph: str


@dataclass(frozen=True)
class MapStyle:
    title_zh: str
    title_en: str
    center: tuple[float, float]  # lon, lat (WGS-84)
    zoom: int
    nearest_k: int
    district_colour: str
    town_colour: str
    land_colour: str
    water_colour: str
    #: A layer with more features than this is drawn from vector tiles, not GeoJSON.
    vector_tiles_above: int
    #: layer id -> kind id -> look; every kind of every facility layer is present.
    kinds: dict[str, dict[str, KindStyle]]
    #: layer id -> the layer's own look (legend swatch).
    layers: dict[str, KindStyle]
    #: Plain text before the map's attribution; empty shows none.
    attribution_prefix: str = "Leaflet"

    def config(self, catalog: Catalog) -> dict[str, Any]:
        """What the page script needs: labels from the catalog, looks from here."""
        return {
            "title": {"zh": self.title_zh, "en": self.title_en},
            "center": list(self.center),
            "zoom": self.zoom,
            "nearestK": self.nearest_k,
            "vectorTilesAbove": self.vector_tiles_above,
            "attributionPrefix": self.attribution_prefix,
            "boundaries": {
                "district": self.district_colour,
                "town": self.town_colour,
                "land": self.land_colour,
                "water": self.water_colour,
            },
            "layers": [
                {
                    "id": layer.id,
                    "zh": layer.zh,
                    "en": layer.en,
                    "colour": self.layers[layer.id].colour,
                    "glyph": self.layers[layer.id].glyph,
                    "kinds": [
                        {
                            "id": kind_id,
                            "zh": label.zh,
                            "en": label.en,
                            "colour": self.kinds[layer.id][kind_id].colour,
                            "glyph": self.kinds[layer.id][kind_id].glyph,
                        }
                        for kind_id, label in layer.kinds.items()
                    ],
                }
                for layer in catalog.facility_layers
            ],
            "values": {
                name: {key: {"zh": label.zh, "en": label.en} for key, label in values.items()}
                for name, values in catalog.values.items()
            },
            "properties": {
                name: {"zh": spec.zh, "en": spec.en}
                for layer in catalog.facility_layers
                for name, spec in layer.properties.items()
            },
        }


def _look(raw: Any, where: str, default: KindStyle | None, problems: list[str]) -> KindStyle:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table with colour and glyph")
        return default or KindStyle("#000000", "?")
    colour = raw.get("colour", default.colour if default else None)
    glyph = raw.get("glyph", default.glyph if default else None)
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        problems.append(f"{where}.colour: {colour!r} is not a colour like #c0392b")
        colour = "#000000"
    if not isinstance(glyph, str) or len(glyph) != 1:
        problems.append(f"{where}.glyph: {glyph!r} must be exactly one character")
        glyph = "?"
    unknown = set(raw) - {"colour", "glyph", "kinds"}
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return KindStyle(colour, glyph)


def load_style(path: Path | str, catalog: Catalog) -> MapStyle:
    """Read and check a style file; ``StyleError`` lists every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StyleError(f"map style file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise StyleError(f"{path.name} is not valid TOML: {error}") from None
    problems: list[str] = []
    view = raw.get("map", {})
    bounds = raw.get("boundaries", {})
    center = view.get("center", [118.05, 36.80])
    if (
        not isinstance(center, list)
        or len(center) != 2
        or not all(isinstance(v, int | float) for v in center)
        or not (-180 <= center[0] <= 180 and -90 <= center[1] <= 90)
    ):
        problems.append(f"map.center: {center!r} is not [longitude, latitude]")
        center = [118.05, 36.80]
    zoom, nearest_k = view.get("zoom", 12), view.get("nearest_k", 5)
    if not isinstance(zoom, int) or not 1 <= zoom <= 19:
        problems.append(f"map.zoom: {zoom!r} must be a whole number from 1 to 19")
        zoom = 12
    if not isinstance(nearest_k, int) or not 1 <= nearest_k <= 20:
        problems.append(f"map.nearest_k: {nearest_k!r} must be a whole number from 1 to 20")
        nearest_k = 5
    # A layer above this many features would be megabytes of GeoJSON and tens
    # of thousands of markers; the page draws it from vector tiles instead.
    tiles_above = view.get("vector_tiles_above", 5000)
    if not isinstance(tiles_above, int) or isinstance(tiles_above, bool) or tiles_above < 0:
        problems.append(
            f"map.vector_tiles_above: {tiles_above!r} must be a whole number of features, 0 or more"
        )
        tiles_above = 5000
    prefix = view.get("attribution_prefix", "Leaflet")
    if not isinstance(prefix, str):
        problems.append(f'map.attribution_prefix: {prefix!r} must be text ("" for none)')
        prefix = "Leaflet"
    colours = {}
    for key, fallback in (
        ("district_colour", "#8b1a1a"),
        ("town_colour", "#6b7280"),
        ("land_colour", "#f5f1e8"),
        ("water_colour", "#dbe7f0"),
    ):
        value = bounds.get(key, fallback)
        if not isinstance(value, str) or not _COLOUR.match(value):
            problems.append(f"boundaries.{key}: {value!r} is not a colour like #c0392b")
            value = fallback
        colours[key] = value

    raw_layers = raw.get("layers", {})
    facility = {layer.id: layer for layer in catalog.facility_layers}
    for layer_id in raw_layers:
        if layer_id not in facility:
            problems.append(
                f"layers.{layer_id}: no such facility layer in the catalog "
                f"(known: {', '.join(facility)})"
            )
    layers: dict[str, KindStyle] = {}
    kinds: dict[str, dict[str, KindStyle]] = {}
    for layer_id, layer in facility.items():
        if layer_id not in raw_layers:
            problems.append(f"layers.{layer_id}: missing (every facility layer needs a look)")
        entry = raw_layers.get(layer_id, {"colour": "#555555", "glyph": "●"})
        look = _look(entry, f"layers.{layer_id}", None, problems)
        layers[layer_id] = look
        raw_kinds = entry.get("kinds", {}) if isinstance(entry, dict) else {}
        for kind_id in raw_kinds:
            if kind_id not in layer.kinds:
                problems.append(
                    f"layers.{layer_id}.kinds.{kind_id}: no such kind "
                    f"(known: {', '.join(layer.kinds)})"
                )
        kinds[layer_id] = {
            kind_id: _look(
                raw_kinds.get(kind_id, {}), f"layers.{layer_id}.kinds.{kind_id}", look, problems
            )
            for kind_id in layer.kinds
        }
    problems.extend(_shared_glyphs(layers, kinds))
    if problems:
        raise StyleError(f"{path.name}: " + "; ".join(problems))
    return MapStyle(
        title_zh=str(view.get("title_zh", "张店区拥军服务资源地图")),
        title_en=str(view.get("title_en", "Zhangdian military support resources map")),
        center=(float(center[0]), float(center[1])),
        zoom=zoom,
        nearest_k=nearest_k,
        district_colour=colours["district_colour"],
        town_colour=colours["town_colour"],
        land_colour=colours["land_colour"],
        water_colour=colours["water_colour"],
        vector_tiles_above=tiles_above,
        kinds=kinds,
        layers=layers,
        attribution_prefix=prefix,
    )


def _shared_glyphs(
    layers: dict[str, KindStyle], kinds: dict[str, dict[str, KindStyle]]
) -> list[str]:
    """A glyph drawn for two kinds (or for a layer's swatch and another layer's
    kind) makes markers ambiguous: one problem per shared glyph, naming all."""
    users: dict[str, list[str]] = {}
    for layer_id, layer_kinds in kinds.items():
        for kind_id, look in layer_kinds.items():
            users.setdefault(look.glyph, []).append(f"layers.{layer_id}.kinds.{kind_id}")
    problems = [
        f"glyph {glyph!r} is used by {', '.join(names)}: every kind needs its own glyph"
        for glyph, names in users.items()
        if len(names) > 1
    ]
    for layer_id, look in layers.items():
        others = [
            name for name in users.get(look.glyph, []) if not name.startswith(f"layers.{layer_id}.")
        ]
        if others:
            problems.append(
                f"layers.{layer_id}.glyph {look.glyph!r} is also the glyph of {', '.join(others)}"
            )
    return problems
