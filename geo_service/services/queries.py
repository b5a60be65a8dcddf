"""Query parameters as text (an HTTP query string, CLI options) parsed and
checked once, raising domain errors that name the parameter. No web code:
the API and the CLI both read their questions through these."""

from __future__ import annotations

import math
from collections.abc import Iterable

from geo_service.errors import InvalidParameter
from geo_service.sources.catalog import Catalog, Layer
from geo_service.sources.crs import (
    CHINA_LAT,
    CHINA_LON,
    OGC_CRS_URIS,
    CoordinateSystem,
    CrsReference,
    convert,
)
from geo_service.store import BBox
from geo_service.store.filtering import Filter, parse_filter

__all__ = [
    "CRS_NAMES",
    "MAX_LIST_VALUES",
    "OGC_CRS_NAMES",
    "list_param",
    "parse_bbox",
    "parse_cql2",
    "parse_lonlat",
    "parse_number",
    "reject_unknown",
    "split_list",
]

#: The most values one list parameter (``layers=a,b``, ``kind=x&kind=y``) may
#: carry. Every list names layers, kinds, services or towns, of which there
#: are a few dozen at most; thousands of values are an attack on the filter
#: loops, never a resident's question.
MAX_LIST_VALUES = 50
#: What ``CoordinateSystem.parse`` accepts (case and '-'/'_' aside), for the
#: OpenAPI description of every ``crs`` parameter.
CRS_NAMES = ["wgs84", "gcj02", "bd09", "epsg:4326", "4326", "amap", "baidu"]
#: What ``CrsReference.parse`` accepts: the OGC API - Features Part 2 URIs
#: (CRS84 longitude first, EPSG:4326 latitude first) and the names above but
#: the axis-ambiguous ``epsg:4326`` / ``4326``.
OGC_CRS_NAMES = [*OGC_CRS_URIS, *(n for n in CRS_NAMES if n not in {"epsg:4326", "4326"})]


def split_list(
    raw: str | None, parameter: str | None = None, max_values: int | None = None
) -> list[str]:
    """``a,b, c`` -> ``["a", "b", "c"]``; empty parts dropped. With
    ``max_values``, more values than that are an ``InvalidParameter``."""
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    if max_values is not None and len(values) > max_values:
        raise InvalidParameter(
            parameter or "list", f"at most {max_values} values, got {len(values)}"
        )
    return values


def list_param(raw: str | None, parameter: str, max_values: int = MAX_LIST_VALUES) -> list[str]:
    """A comma-separated API parameter: absent or empty is no values; an empty
    entry (``a,,b``, ``a,``) is a 400, as is a list longer than ``max_values``."""
    if raw is None or not raw.strip():
        return []
    values = [v.strip() for v in raw.split(",")]
    if len(values) > max_values:
        raise InvalidParameter(parameter, f"at most {max_values} values, got {len(values)}")
    if not all(values):
        raise InvalidParameter(parameter, "has an empty value between commas")
    return values


def reject_unknown(params: dict[str, str], known: Iterable[str]) -> None:
    """A mistyped parameter is a 400 naming it, never silently ignored."""
    known = list(known)
    for name in params:
        if name not in known:
            raise InvalidParameter(name, "unknown parameter; known: " + ", ".join(known))


def parse_lonlat(params: dict[str, str], required_hint: str = "") -> tuple[float, float]:
    """``lon`` and ``lat``: present, finite, and on the globe (any coordinate system)."""
    for name in ("lon", "lat"):
        if params.get(name) in (None, ""):
            raise InvalidParameter(name, "is required" + required_hint)
    lon = parse_number("lon", params["lon"])
    lat = parse_number("lat", params["lat"])
    if not -180 <= lon <= 180:
        raise InvalidParameter("lon", f"longitude {lon} is outside -180..180")
    if not -90 <= lat <= 90:
        raise InvalidParameter("lat", f"latitude {lat} is outside -90..90")
    return lon, lat


def parse_number(name: str, raw: str) -> float:
    """A finite float, or ``InvalidParameter`` naming ``name``."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(name, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidParameter(name, f"{raw!r} is not a finite number")
    return value


def parse_cql2(
    raw: str | None,
    lang: str | None,
    filter_crs: str | None,
    layer: Layer,
    catalog: Catalog,
) -> Filter | None:
    """The ``filter``, ``filter-lang`` and ``filter-crs`` parameters of OGC
    API - Features Part 3 as one filter checked against ``layer`` (None when
    there is no ``filter``; ``filter-lang`` or ``filter-crs`` alone are a 400)."""
    if raw is None:
        for name, value in (("filter-lang", lang), ("filter-crs", filter_crs)):
            if value is not None:
                raise InvalidParameter(name, "given without a filter")
        return None
    crs = CrsReference.parse(filter_crs, "filter-crs")
    return parse_filter(raw, lang, layer, catalog, crs)


def parse_bbox(
    raw: str | None, bbox_crs: CoordinateSystem | CrsReference = CoordinateSystem.wgs84
) -> BBox | None:
    """``west,south,east,north`` (a 6-number 3D box drops its heights) in WGS-84.

    A latitude-first ``bbox_crs`` (the EPSG:4326 URI) reads
    ``south,west,north,east`` instead, as OGC API - Features Part 2 orders it.

    Longitudes must lie within ±180 and latitudes within ±90; a box whose west
    edge is east of its east edge, or south above north, is rejected: no site
    of this service crosses the antimeridian.
    """
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) not in (4, 6):
        raise InvalidParameter(
            "bbox", "needs 4 numbers: west,south,east,north (south,west,north,east in EPSG:4326)"
        )
    numbers = [parse_number("bbox", p) for p in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if not isinstance(bbox_crs, CrsReference):
        bbox_crs = CrsReference(CoordinateSystem(bbox_crs))
    if bbox_crs.lat_first:
        south, west, north, east = numbers
    else:
        west, south, east, north = numbers
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidParameter("bbox", "longitudes must lie within -180..180")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise InvalidParameter("bbox", "latitudes must lie within -90..90")
    if west > east:
        raise InvalidParameter("bbox", f"west ({west}) is east of east ({east})")
    if south > north:
        raise InvalidParameter("bbox", f"south ({south}) is north of north ({north})")
    if bbox_crs.system != CoordinateSystem.wgs84:
        west, south, east, north = _box_to_wgs84((west, south, east, north), bbox_crs.system)
    return (west, south, east, north)


#: Where the GCJ-02 and BD-09 offsets apply (the "inside China" rectangle of
#: ``sources.crs``), widened by more than the largest offset (about 0.02°).
_OFFSET_LON = (CHINA_LON[0] - 0.1, CHINA_LON[1] + 0.1)
_OFFSET_LAT = (CHINA_LAT[0] - 0.1, CHINA_LAT[1] + 0.1)


def _box_to_wgs84(box: BBox, source: CoordinateSystem) -> BBox:
    """A GCJ-02 or BD-09 box in WGS-84. Only an edge inside the region where
    the offsets apply moves (by at most a few hundred metres); an edge outside
    it stays where it is. Converting the world's corners instead sends them
    across the antimeridian (BD-09 turns every position a little about the
    origin), and a whole-world box came back a sliver that held nothing."""
    west, south, east, north = box
    in_lon = [min(max(v, _OFFSET_LON[0]), _OFFSET_LON[1]) for v in (west, east, west, east)]
    in_lat = [min(max(v, _OFFSET_LAT[0]), _OFFSET_LAT[1]) for v in (south, south, north, north)]
    lons, lats = convert(in_lon, in_lat, source, CoordinateSystem.wgs84)

    def edge(value: float, valid: tuple[float, float], moved: float) -> float:
        return float(moved) if valid[0] < value < valid[1] else value

    new_west = edge(west, _OFFSET_LON, min(lons[0], lons[2]))
    new_east = edge(east, _OFFSET_LON, max(lons[1], lons[3]))
    new_south = edge(south, _OFFSET_LAT, min(lats[0], lats[1]))
    new_north = edge(north, _OFFSET_LAT, max(lats[2], lats[3]))
    # A box narrower than the offsets, straddling the region's edge, may cross.
    return (
        min(new_west, new_east),
        min(new_south, new_north),
        max(new_west, new_east),
        max(new_south, new_north),
    )
