"""Mapbox vector tiles of a layer, for layers too large to send as GeoJSON.

Web Mercator (EPSG:3857) tiles ``z/x/y``, 4096 units, 64 units of buffer. The
embedded store encodes them with the maintained ``mapbox-vector-tile``
package; the PostGIS store answers with ``ST_AsMVT`` in the database. Each
feature carries its id and the scalar properties a map needs to draw and
label it (name, kind, status).
"""

from __future__ import annotations

import math

import numpy as np
import pyproj
import shapely

from geo_service.errors import InvalidParameter
from geo_service.store.base import Store

__all__ = ["MAX_ZOOM", "TILE_ATTRIBUTES", "check_tile", "encode_tile", "tile_bounds"]

MAX_ZOOM = 22
EXTENT = 4096
BUFFER = 64
TILE_ATTRIBUTES = ("name", "kind", "status")
_HALF = 20037508.342789244  # Web Mercator half-width, metres
_TO_MERCATOR = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidParameter("z", f"zoom must be 0..{MAX_ZOOM}")
    size = 2**z
    if not (0 <= x < size and 0 <= y < size):
        raise InvalidParameter("x", f"tile {x}/{y} does not exist at zoom {z}")


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


def encode_tile(store: Store, layer_id: str, z: int, x: int, y: int) -> bytes:
    """The tile as bytes (empty when nothing falls in it)."""
    import mapbox_vector_tile

    check_tile(z, x, y)
    metres, degrees = tile_bounds(z, x, y)
    pad = (degrees[2] - degrees[0]) * BUFFER / EXTENT
    box = (
        degrees[0] - pad,
        max(degrees[1] - pad, -85.06),
        degrees[2] + pad,
        min(degrees[3] + pad, 85.06),
    )
    page = store.query(layer_id, bbox=box, limit=1_000_000)
    if not page.features:
        return b""
    features = []
    for feature in page.features:
        geometry = shapely.transform(
            feature.geometry,
            lambda xy: np.column_stack(_TO_MERCATOR.transform(xy[:, 0], xy[:, 1])),
        )
        props = {"id": feature.id}
        for name in TILE_ATTRIBUTES:
            value = feature.properties.get(name)
            if isinstance(value, str | int | float | bool):
                props[name] = value
        features.append({"geometry": geometry, "properties": props})
    return mapbox_vector_tile.encode(
        [{"name": layer_id, "features": features}],
        default_options={"quantize_bounds": metres, "extents": EXTENT, "y_coord_down": False},
    )
