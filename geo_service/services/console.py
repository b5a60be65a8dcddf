"""What the office console's pages read: the catalog as a form schema, the
towns, and the sites a person keeps (an editor's towns only; an admin's all).

The console writes through the same editing service as the API; this module
only reads, scoped by the principal, so a town editor's page never receives
another town's sites.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from geo_service.errors import Forbidden
from geo_service.runtime import Runtime
from geo_service.services.access import Principal
from geo_service.sources.catalog import Catalog

__all__ = ["console_layers", "console_towns", "sites_for"]


def console_layers(catalog: Catalog) -> list[dict[str, Any]]:
    """Each layer with its kinds and its properties in form order: name,
    type, Chinese and English labels, whether required, and for value lists
    ``[key, zh, en]`` triples (the page builds its form from these)."""
    layers = []
    for layer in catalog.layers.values():
        properties = []
        for name, spec in layer.properties.items():
            values = catalog.values.get(spec.values or "", {})
            properties.append(
                {
                    "name": name,
                    "type": spec.type,
                    "zh": spec.zh,
                    "en": spec.en,
                    "required": spec.required,
                    "values": [[key, label.zh, label.en] for key, label in values.items()],
                }
            )
        layers.append(
            {
                "id": layer.id,
                "zh": layer.zh,
                "en": layer.en,
                "geometry": layer.geometry,
                "kinds": {key: {"zh": k.zh, "en": k.en} for key, k in layer.kinds.items()},
                "properties": properties,
            }
        )
    return layers


def console_towns(runtime: Runtime) -> list[dict[str, str]]:
    """Every town, code and name, in code order."""
    return [
        {"code": town.id, "name": str(town.properties.get("name") or town.id)}
        for town in sorted(runtime.store.all_features("towns"), key=lambda t: t.id)
    ]


def sites_for(runtime: Runtime, principal: Principal, layer_id: str) -> dict[str, Any]:
    """The layer's sites ``principal`` keeps, as GeoJSON with each feature's
    ETag (the page sends it back with ``If-Match``)."""
    layer = runtime.catalog.layer(layer_id)
    if not layer.is_facility and not principal.is_admin:
        raise Forbidden(f"only an admin keeps {layer.id}")
    features = []
    for site in runtime.store.all_features(layer.id):
        if not principal.is_admin and site.properties.get("town_code") not in principal.towns:
            continue
        features.append({**site.geojson(), "etag": site.etag})
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}


def today() -> str:
    """The date a new site's ``updated_at`` defaults to (the office's day, UTC+8)."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date().isoformat()
