"""Mapbox vector tiles of a layer, for layers too large to send as GeoJSON.

Web Mercator (EPSG:3857) tiles ``z/x/y``, 4096 units, 64 units of buffer. The
embedded store encodes them here; the PostGIS store answers with ``ST_AsMVT``
in the database, by the same rules, so both serve the same tiles:

- From ``DETAIL_ZOOM`` on, a point layer's tile holds every site in it, with
  its id and the scalar properties a map needs to draw and label it
  (``TILE_ATTRIBUTES``: name, kind, status).
- Below ``DETAIL_ZOOM`` a point layer is thinned: one dot per cell of
  ``CELL`` x ``CELL`` tile units and kind, the site with the lowest id (so a
  tile is the same on every request and on both stores), with ``count``, the
  number of sites of that kind in the cell. Those tiles carry no names: a
  dot may stand for several sites, and names were most of a dense low-zoom
  tile's bytes.

Cells are aligned with the tile and the buffer is one cell wide, so a cell
in a tile's buffer is a whole cell of its neighbour, thinned to the same dot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyproj
import shapely

from geo_service.errors import InvalidParameter
from geo_service.store.base import Store

__all__ = [
    "BUFFER",
    "CELL",
    "DETAIL_ZOOM",
    "EXTENT",
    "MAX_ZOOM",
    "TILE_ATTRIBUTES",
    "check_tile",
    "encode_points",
    "encode_tile",
    "query_box",
    "tile_attributes",
    "tile_bounds",
]

MAX_ZOOM = 22
EXTENT = 4096
BUFFER = 64
TILE_ATTRIBUTES = ("name", "kind", "status")
#: The first zoom whose point tiles hold every site and its name.
DETAIL_ZOOM = 14
#: Thinning cell, tile units: 4 px of a 256-px map tile, less than a dot's
#: radius, so thinning hides no dot that would not have been covered anyway.
CELL = 64
_HALF = 20037508.342789244  # Web Mercator half-width, metres
_TO_MERCATOR = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidParameter("z", f"zoom must be 0..{MAX_ZOOM}")
    size = 2**z
    if not (0 <= x < size and 0 <= y < size):
        raise InvalidParameter("x", f"tile {x}/{y} does not exist at zoom {z}")


def tile_attributes(z: int) -> tuple[str, ...]:
    """The properties a tile at zoom ``z`` carries besides the id (and, when
    thinned, the count)."""
    if z >= DETAIL_ZOOM:
        return TILE_ATTRIBUTES
    return tuple(name for name in TILE_ATTRIBUTES if name != "name")


def tile_bounds(z: int, x: int, y: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(west, south, east, north) in Web Mercator metres and in WGS-84 degrees."""
    span = 2 * _HALF / 2**z
    west, north = -_HALF + x * span, _HALF - y * span
    east, south = west + span, north - span

    def lat(v: float) -> float:
        return math.degrees(math.atan(math.sinh(v / 6378137.0)))

    degrees = (
        math.degrees(west / 6378137.0),
        lat(south),
        math.degrees(east / 6378137.0),
        lat(north),
    )
    return (west, south, east, north), degrees


def query_box(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """WGS-84 box holding the tile, its buffer and half a unit more (a point
    rounds onto the buffer's edge from there)."""
    _, degrees = tile_bounds(z, x, y)
    # A unit of latitude is never shorter than one of longitude in Web
    # Mercator, so the longitude pad is enough both ways.
    pad = (degrees[2] - degrees[0]) * (BUFFER + 1) / EXTENT
    return (
        degrees[0] - pad,
        max(degrees[1] - pad, -85.06),
        degrees[2] + pad,
        min(degrees[3] + pad, 85.06),
    )


def encode_points(
    layer_id: str,
    z: int,
    x: int,
    y: int,
    ids: Sequence[str],
    lon: np.ndarray,
    lat: np.ndarray,
    attributes: dict[str, Sequence[Any]],
) -> bytes:
    """A point layer's tile from its sites' columns, in any order.

    ``attributes`` maps each of ``tile_attributes(z)`` to a value per site
    (None: not in the tile). Positions are quantised as ``ST_AsMVTGeom`` does:
    rounded to the unit, kept within the buffer, y down.
    """
    from mapbox_vector_tile.Mapbox import vector_tile_pb2

    if not len(ids):
        return b""
    metres, _ = tile_bounds(z, x, y)
    west, _south, _east, north = metres
    scale = EXTENT / (metres[2] - metres[0])
    mx, my = _TO_MERCATOR.transform(np.asarray(lon, float), np.asarray(lat, float))
    qx = np.rint((mx - west) * scale)
    qy = np.rint((north - my) * scale)
    keep = (qx >= -BUFFER) & (qx <= EXTENT + BUFFER) & (qy >= -BUFFER) & (qy <= EXTENT + BUFFER)
    rows = np.flatnonzero(keep)
    counts = None
    if z < DETAIL_ZOOM and len(rows):
        # One dot per (cell, kind): rows in id order, the first of each group.
        rows = rows[np.argsort(np.array(ids)[rows], kind="stable")]
        kinds = attributes.get("kind") or [None] * len(ids)
        # NUL for a missing kind: no stored text can hold one.
        _, kind_code = np.unique(
            np.array(["\0" if kinds[row] is None else kinds[row] for row in rows.tolist()]),
            return_inverse=True,
        )
        cells = (EXTENT + 2 * BUFFER) // CELL + 2
        cx = np.floor_divide(qx[rows], CELL).astype(np.int64) + 1
        cy = np.floor_divide(qy[rows], CELL).astype(np.int64) + 1
        key = (cx * cells + cy) * (int(kind_code.max()) + 1) + kind_code
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        rows = rows[first]
    if not len(rows):
        return b""
    tile = vector_tile_pb2.tile()
    layer = tile.layers.add()
    layer.version, layer.name, layer.extent = 2, layer_id, EXTENT
    names = ["id", *attributes]
    layer.keys.extend(names if counts is None else [*names, "count"])
    values: dict[tuple[type, Any], int] = {}

    def value_index(value: Any) -> int:
        index = values.get((type(value), value))
        if index is None:
            index = values[(type(value), value)] = len(values)
            _set_value(layer.values.add(), value)
        return index

    columns = [ids, *attributes.values()]
    xs, ys = qx.astype(np.int64), qy.astype(np.int64)
    zx, zy = (xs << 1) ^ (xs >> 63), (ys << 1) ^ (ys >> 63)  # zigzag
    for n, row in enumerate(rows.tolist()):
        feature = layer.features.add()
        feature.type = vector_tile_pb2.tile.Point
        tags = []
        for k, column in enumerate(columns):
            value = column[row]
            if value is not None:
                tags += (k, value_index(value))
        if counts is not None:
            tags += (len(columns), value_index(int(counts[n])))
        feature.tags.extend(tags)
        feature.geometry.extend((9, int(zx[row]), int(zy[row])))  # MoveTo(1) x y
    return tile.SerializeToString()


def _set_value(message: Any, value: Any) -> None:
    if isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int):
        if value >= 0:
            message.uint_value = value
        else:
            message.sint_value = value
    elif isinstance(value, float):
        message.double_value = value
    else:
        message.string_value = str(value)


def encode_tile(store: Store, layer_id: str, z: int, x: int, y: int) -> bytes:
    """The tile as bytes (empty when nothing falls in it), from any store."""
    import mapbox_vector_tile

    check_tile(z, x, y)
    layer = store.catalog.layer(layer_id)
    page = store.query(layer_id, bbox=query_box(z, x, y), limit=10_000_000)
    if not page.features:
        return b""
    attributes = tile_attributes(z)

    def scalar(value: Any) -> Any:
        return value if isinstance(value, str | int | float | bool) else None

    if layer.geometry == "Point":
        features = page.features
        return encode_points(
            layer_id,
            z,
            x,
            y,
            [f.id for f in features],
            np.array([f.geometry.x for f in features]),
            np.array([f.geometry.y for f in features]),
            {a: [scalar(f.properties.get(a)) for f in features] for a in attributes},
        )
    metres, _ = tile_bounds(z, x, y)
    features = []
    for feature in page.features:
        geometry = shapely.transform(
            feature.geometry,
            lambda xy: np.column_stack(_TO_MERCATOR.transform(xy[:, 0], xy[:, 1])),
        )
        props = {"id": feature.id}
        for name in attributes:
            value = scalar(feature.properties.get(name))
            if value is not None:
                props[name] = value
        features.append({"geometry": geometry, "properties": props})
    return mapbox_vector_tile.encode(
        [{"name": layer_id, "features": features}],
        default_options={"quantize_bounds": metres, "extents": EXTENT, "y_coord_down": False},
    )
