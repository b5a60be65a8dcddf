"""Edits of single features through the API: the same checks as an import.

A request body becomes a ``ValidFeature`` here (the catalog's validation,
plus what the service fills in itself); ``Store.change`` then writes it in
one transaction with its audit record. Who may write is ``access``'s concern.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import FieldProblem, InvalidFeature
from geo_service.services.importing import feature_id_for
from geo_service.sources.catalog import Catalog, Layer, ValidFeature
from geo_service.sources.towns import Towns
from geo_service.store import StoredFeature

__all__ = ["merge_patch", "prepare_feature", "stored_as_geojson"]


def prepare_feature(
    catalog: Catalog,
    layer: Layer,
    body: Any,
    towns: Towns,
    *,
    feature_id: str | None = None,
    today: dt.date | None = None,
) -> ValidFeature:
    """A GeoJSON Feature from a client, validated against the catalog.

    The service fills in, for facilities: ``updated_at`` (today: the date of
    the last edit), ``sample`` (false: an edit is real data), a default
    ``source``, the id when none is given (stable for a name at a place, so a
    repeated POST is refused as a duplicate rather than stored twice) and
    ``town_code`` from the position when it is missing. A declared town must
    agree with the position unless the boundaries are approximate.
    """
    if not isinstance(body, dict) or body.get("type") != "Feature":
        raise InvalidFeature(None, [FieldProblem("type", "must be a GeoJSON Feature object")])
    props = body.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidFeature(None, [FieldProblem("properties", "must be an object")])
    props = dict(props)
    given_id = body.get("id")
    if feature_id is not None:
        for claimed in (given_id, props.get("id")):
            if claimed not in (None, "") and str(claimed) != feature_id:
                raise InvalidFeature(
                    feature_id,
                    [FieldProblem("id", f"the body names {claimed!r} but the URL {feature_id!r}")],
                )
        props["id"] = feature_id
    elif props.get("id") in (None, "") and given_id not in (None, ""):
        props["id"] = given_id
    today_text = (today or dt.date.today()).isoformat()
    point = _point(body.get("geometry"))
    if layer.is_facility:
        props["updated_at"] = today_text
        props.setdefault("sample", False)
        if props.get("source") in (None, ""):
            props["source"] = f"entered through the editing API on {today_text}"
        if point is not None and props.get("id") in (None, "") and props.get("name"):
            props["id"] = feature_id_for(layer, str(props["name"]), point.x, point.y)
        if point is not None:
            located = towns.index.locate(point.x, point.y)
            declared = props.get("town_code")
            if declared in (None, ""):
                if located is None:
                    raise InvalidFeature(
                        props.get("id"),
                        [FieldProblem("geometry", "lies outside every town of the district")],
                    )
                props["town_code"] = located
            elif located is not None and declared != located and not towns.approximate:
                raise InvalidFeature(
                    props.get("id"),
                    [
                        FieldProblem(
                            "town_code",
                            f"declared {declared} but the position lies in "
                            f"{towns.names.get(located, located)} ({located})",
                        )
                    ],
                )
    candidate = {**body, "id": props.get("id"), "properties": props}
    return catalog.validate_feature(layer.id, candidate, town_codes=set(towns.index.codes))


def _point(geometry: Any) -> BaseGeometry | None:
    """The geometry as a valid shapely point, or None (validation reports why)."""
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return None
    coords = geometry.get("coordinates")
    if (
        not isinstance(coords, list)
        or len(coords) < 2
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords[:2])
    ):
        return None
    lon, lat = float(coords[0]), float(coords[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return None
    return shapely.Point(lon, lat)


def stored_as_geojson(feature: StoredFeature) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": feature.id,
        "geometry": shapely.geometry.mapping(feature.geometry),
        "properties": dict(feature.properties),
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge key by key, ``null`` removes,
    anything else (arrays included) replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
