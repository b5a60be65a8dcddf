"""Stored features to RFC 7946 GeoJSON, in WGS-84 or converted to GCJ-02 / BD-09.

WGS-84 may also be written latitude first, as the EPSG:4326 URI of OGC API -
Features Part 2 asks (``CrsReference.lat_first``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import mapping

from geo_service.sources.crs import CoordinateSystem, CrsReference, convert
from geo_service.store import StoredFeature

__all__ = ["collection_bytes", "feature_collection", "feature_fragments", "feature_to_geojson"]

# 1e-7 degrees is about 1 cm: more digits are noise, fewer lose survey quality.
_DIGITS = 7


Crs = CoordinateSystem | CrsReference


def _reference(crs: Crs) -> CrsReference:
    return crs if isinstance(crs, CrsReference) else CrsReference(CoordinateSystem(crs))


def _converted_geometries(features: Sequence[StoredFeature], crs: Crs) -> list:
    ref = _reference(crs)
    geometries = np.array([f.geometry for f in features], dtype=object)
    if (ref.system != CoordinateSystem.wgs84 or ref.lat_first) and len(geometries):

        def _to_target(xy: np.ndarray) -> np.ndarray:
            lon, lat = convert(xy[:, 0], xy[:, 1], CoordinateSystem.wgs84, ref.system)
            pairs = [lat, lon] if ref.lat_first else [lon, lat]
            return np.round(np.column_stack(pairs), _DIGITS)

        geometries = shapely.transform(geometries, _to_target)
    return list(geometries)


def feature_to_geojson(
    feature: StoredFeature, crs: Crs = CoordinateSystem.wgs84, geometry: Any = None
) -> dict[str, Any]:
    if geometry is None and _reference(crs) == CrsReference():
        return feature.geojson()
    if geometry is None:
        geometry = _converted_geometries([feature], crs)[0]
    return {
        "type": "Feature",
        "id": feature.id,
        "geometry": mapping(geometry),
        "properties": feature.properties,
    }


def feature_collection(
    features: Sequence[StoredFeature],
    crs: Crs = CoordinateSystem.wgs84,
    **members: Any,
) -> dict[str, Any]:
    """A FeatureCollection; ``members`` are added at the top level (numberMatched,
    links...). A non-WGS-84 answer says so in ``coordinate_system``, because
    RFC 7946 readers otherwise assume WGS-84."""
    geometries = _converted_geometries(features, crs)
    collection: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [
            feature_to_geojson(f, crs, g) for f, g in zip(features, geometries, strict=True)
        ],
    }
    system = _reference(crs).system
    if system != CoordinateSystem.wgs84:
        collection["coordinate_system"] = system.value
    collection.update(members)
    return collection


def feature_fragments(
    features: Sequence[StoredFeature], crs: Crs = CoordinateSystem.wgs84
) -> list[bytes]:
    """Each feature's GeoJSON text, exactly as ``feature_collection`` writes
    it inside the ``features`` array: pages assembled from these fragments
    (``collection_bytes``) equal the collection serialised whole."""
    return [orjson.dumps(f) for f in feature_collection(features, crs)["features"]]


_COLLECTION_HEAD = b'{"type":"FeatureCollection","features":['


def collection_bytes(
    fragments: Sequence[bytes], crs: Crs = CoordinateSystem.wgs84, **members: Any
) -> bytes:
    """``orjson.dumps(feature_collection(features, crs, **members))`` from the
    features' fragments (``feature_fragments``), byte for byte, without
    serialising any feature again."""
    tail: dict[str, Any] = {}
    system = _reference(crs).system
    if system != CoordinateSystem.wgs84:
        tail["coordinate_system"] = system.value
    tail.update(members)
    if not tail:
        return b"".join((_COLLECTION_HEAD, b",".join(fragments), b"]}"))
    # The members' object without its opening brace follows the array.
    return b"".join((_COLLECTION_HEAD, b",".join(fragments), b"],", orjson.dumps(tail)[1:]))
