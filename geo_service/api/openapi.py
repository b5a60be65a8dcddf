"""The OpenAPI description: the shared response schemas, and the rules every
operation follows, applied once to the document FastAPI generates.

Routes declare what is particular to them (their parameters, their success
body). What is true of every operation is added here, so that no operation
can forget it: problem+json for every error status the service can answer
(400 for any operation with parameters, 404 where the path names something,
401/403 where a token is needed, 413/415 where a body is read), and no
FastAPI 422, which this service never sends (validation errors leave as 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from geo_service.api.guard import is_heavy
from geo_service.api.media import MediaType
from geo_service.api.problems import problem_response, status_for
from geo_service.errors import InvalidParameter
from geo_service.services.queries import MAX_LIST_VALUES
from geo_service.sources.catalog import Catalog

__all__ = [
    "BINARY",
    "HTML",
    "MAX_ZOOM",
    "QueryContract",
    "allowed_methods",
    "catalog_values",
    "change_links",
    "install_openapi",
    "json_body",
    "operations",
    "problem",
    "ref",
]

#: Highest vector-tile zoom the store serves (``Store.tile`` refuses more).
MAX_ZOOM = 22


def catalog_values(name: str) -> dict[str, str]:
    """A string schema whose allowed values come from the layer catalog, which
    the office may extend: resolved when the document is built (``finish``).
    ``name``: layers, facility_layers, kinds, facility_kinds, or a value list
    of the catalog (services, eligible, status, position_quality)."""
    return {"x-catalog": name}


def _catalog_enum(catalog: Catalog, name: str) -> list[str]:
    facility = catalog.facility_layers
    if name == "layers":
        return list(catalog.layers)
    if name == "facility_layers":
        return [layer.id for layer in facility]
    if name in {"kinds", "facility_kinds"}:
        layers = catalog.layers.values() if name == "kinds" else facility
        return list(dict.fromkeys(kind for layer in layers for kind in layer.kinds))
    return list(catalog.values[name])


def _resolve(node: Any, catalog: Catalog) -> Any:
    if isinstance(node, dict):
        if "x-catalog" in node:
            rest = {key: value for key, value in node.items() if key != "x-catalog"}
            values = _catalog_enum(catalog, node["x-catalog"])
            return {**rest, "type": "string", "enum": values}
        return {key: _resolve(value, catalog) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, catalog) for value in node]
    return node


def _query_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is present or absent, never JSON null: FastAPI's
    ``anyOf: [X, null]`` for an optional argument becomes X, with the keywords
    a route added (``json_schema_extra``) taking precedence."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(name: str, media: str = MediaType.json.value, **extra: Any) -> dict[str, Any]:
    """A response whose body is the named component schema."""
    return {"content": {media: {"schema": ref(name)}}, **extra}


def change_links() -> dict[str, Any]:
    """OpenAPI links from an answer that names a feature and its version to
    the changes of that version: read, then change with If-Match."""
    feature = {
        "path.collectionId": "$request.path.collectionId",
        "path.featureId": "$response.body#/id",
    }
    return {
        "getFeature": {"operationId": "getFeature", "parameters": feature},
        **{
            operation: {
                "operationId": operation,
                "parameters": {**feature, "header.If-Match": "$response.header.ETag"},
            }
            for operation in ("replaceFeature", "patchFeature", "deleteFeature")
        },
    }


def problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {MediaType.problem.value: {"schema": ref("Problem")}},
    }


HTML = {"text/html": {"schema": {"type": "string"}}}
BINARY = {"type": "string", "format": "binary"}

_STRING_OR_NULL = {"type": ["string", "null"]}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_POSITION = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}

#: Shared schemas. They state what every answer of that kind carries; members
#: beyond these are allowed (a feature keeps its layer's extra properties).
SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "parameter": {"type": "string", "description": "The query parameter at fault"},
            "errors": {
                "type": "array",
                "description": "Every bad field of a feature",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "report": {"$ref": "#/components/schemas/ImportReport"},
        },
    },
    "Link": {
        "type": "object",
        "required": ["href", "rel"],
        "properties": {
            "href": {"type": "string"},
            "rel": {"type": "string"},
            "type": {"type": "string"},
            "title": {"type": "string"},
        },
    },
    "Geometry": {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {
            "type": {
                "type": "string",
                "enum": [
                    "Point",
                    "MultiPoint",
                    "LineString",
                    "MultiLineString",
                    "Polygon",
                    "MultiPolygon",
                ],
            },
            "coordinates": {"type": "array"},
        },
    },
    "Feature": {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"anyOf": [ref("Geometry"), {"type": "null"}]},
            "properties": {"type": "object"},
            "links": {"type": "array", "items": ref("Link")},
            "coordinate_system": {"type": "string", "enum": ["gcj02", "bd09"]},
            # Only on a create: the sample sites the new one probably replaces.
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "FeatureCollection": {
        "type": "object",
        "required": ["type", "features"],
        "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": ref("Feature")},
            "numberMatched": {"type": "integer", "minimum": 0},
            "numberReturned": {"type": "integer", "minimum": 0},
            "links": {"type": "array", "items": ref("Link")},
            "coordinate_system": {"type": "string", "enum": ["gcj02", "bd09"]},
        },
    },
    "LandingPage": {
        "type": "object",
        "required": ["title", "links"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
            "links": {"type": "array", "items": ref("Link")},
        },
    },
    "Conformance": {
        "type": "object",
        "required": ["conformsTo"],
        "properties": {"conformsTo": {"type": "array", "items": {"type": "string"}}},
    },
    "Queryables": {
        "description": "A JSON Schema (2020-12) of the properties a CQL2 filter may name",
        "type": "object",
        "required": ["$schema", "$id", "type", "properties"],
        "properties": {
            "$schema": {"type": "string"},
            "$id": {"type": "string"},
            "type": {"type": "string", "enum": ["object"]},
            "title": {"type": "string"},
            "properties": {"type": "object", "additionalProperties": {"type": "object"}},
            "additionalProperties": {"type": "boolean"},
        },
    },
    "Collection": {
        "type": "object",
        "required": ["id", "title", "links", "numberOfFeatures", "kinds"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "itemType": {"type": "string"},
            "crs": {"type": "array", "items": {"type": "string"}},
            "storageCrs": {"type": "string"},
            "geometryType": {"type": "string"},
            "kinds": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["zh", "en"],
                    "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
                },
            },
            "numberOfFeatures": {"type": "integer", "minimum": 0},
            "sampleFeatures": {"type": "integer", "minimum": 0},
            "sampleNote": {
                "type": "object",
                "required": ["zh", "en"],
                "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
            },
            "links": {"type": "array", "items": ref("Link")},
            "extent": {
                "type": "object",
                "properties": {
                    "spatial": {
                        "type": "object",
                        "required": ["bbox"],
                        "properties": {
                            "bbox": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "items": {"type": "number"},
                                    "minItems": 4,
                                    "maxItems": 4,
                                },
                            },
                            "crs": {"type": "string"},
                        },
                    }
                },
            },
        },
    },
    "Collections": {
        "type": "object",
        "required": ["collections", "links"],
        "properties": {
            "collections": {"type": "array", "items": ref("Collection")},
            "links": {"type": "array", "items": ref("Link")},
        },
    },
    "Note": {
        "type": "object",
        "description": "A note for the resident, in Chinese and English",
        "required": ["zh", "en"],
        "properties": {
            "code": {"type": "string"},
            "zh": {"type": "string"},
            "en": {"type": "string"},
        },
    },
    "NearestResult": {
        "allOf": [ref("FeatureCollection")],
        "type": "object",
        "required": ["query", "numberReturned", "walking_assumption", "distance"],
        "properties": {
            "query": {"type": "object", "required": ["point", "crs", "k", "layers"]},
            "walking_assumption": {"type": "string"},
            "walking_limit_m": {"type": "number"},
            "distance": {"type": "string"},
            "outside_district": {"type": "boolean"},
            "district_boundary_m": {"type": ["number", "null"], "minimum": 0},
            "none_open": {"type": "boolean"},
            "notes": {"type": "array", "items": ref("Note")},
            "geocoded": ref("Feature"),
            "features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["properties"],
                    "properties": {
                        "properties": {
                            "type": "object",
                            "required": [
                                "layer",
                                "distance_m",
                                "bearing_deg",
                                "walk_minutes",
                                "open_now",
                                "hours_known",
                                "navigation",
                            ],
                            "properties": {
                                "layer": {"type": "string"},
                                "distance_m": {"type": "number", "minimum": 0},
                                "bearing_deg": {"type": "number"},
                                "walk_minutes": {"type": ["number", "null"], "minimum": 0},
                                "walk_note": ref("Note"),
                                "open_now": {"type": ["boolean", "null"]},
                                "hours_known": {"type": "boolean"},
                                "windows": {
                                    "type": ["array", "null"],
                                    "items": {
                                        "type": "object",
                                        "required": ["id", "distance_m", "open_now"],
                                    },
                                },
                                "next_open": {"type": ["string", "null"]},
                                "next_open_text": ref("Note"),
                                "navigation": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        }
                    },
                },
            },
        },
    },
    "GeocodeResult": {
        "allOf": [ref("FeatureCollection")],
        "type": "object",
        "required": ["query", "numberReturned"],
        "properties": {"query": {"type": "string"}},
    },
    "ReverseResult": {
        "type": "object",
        "required": ["point", "crs", "town", "nearest_place"],
        "properties": {
            "point": _POSITION,
            "crs": {"type": "string", "enum": ["wgs84", "gcj02", "bd09"]},
            "town": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["code", "name"],
                        "properties": {"code": {"type": "string"}, "name": _STRING_OR_NULL},
                    },
                ]
            },
            "nearest_place": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["name", "distance_m", "lon", "lat"],
                        "properties": {
                            "name": {"type": "string"},
                            "distance_m": {"type": "number", "minimum": 0},
                            "lon": {"type": "number"},
                            "lat": {"type": "number"},
                            "source": _STRING_OR_NULL,
                        },
                    },
                ]
            },
        },
    },
    "CoverageReport": {
        "type": "object",
        "required": ["radius_m", "cell_m", "facilities", "distance", "towns"],
        "properties": {
            "radius_m": {"type": "number", "exclusiveMinimum": 0},
            "layers": {"type": ["array", "null"], "items": {"type": "string"}},
            "kinds": {"type": ["array", "null"], "items": {"type": "string"}},
            "cell_m": {"type": "number"},
            "facilities": {"type": "integer", "minimum": 0},
            "distance": {"type": "string"},
            "distance_zh": {"type": "string"},
            "not_open": {
                "type": "object",
                "description": "Sites of the chosen layers and kinds not counted, by status "
                "(planned, suspended): only open sites count",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "population_source": {
                "type": ["string", "null"],
                "description": "The office's population file the people come from; null: "
                "each town's total spread evenly over its cells, so a town's covered share "
                "of people equals its covered share of area",
            },
            "population_outside": {"type": "integer", "minimum": 0},
            "sample_sites": {
                "type": "object",
                "description": "Sample sites counted by the coverage and by the compliance check",
                "properties": {
                    "coverage": {"type": "integer", "minimum": 0},
                    "compliance": {"type": "integer", "minimum": 0},
                },
            },
            "sample_note": {
                "type": ["string", "null"],
                "description": "Said (Chinese first) whenever sample sites are counted",
            },
            "towns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "town_code",
                        "town_name",
                        "population_covered_share",
                        "area_covered_share",
                    ],
                    "properties": {
                        "town_code": {"type": "string"},
                        "town_name": {"type": "string"},
                        "population_covered_share": {"type": "number", "minimum": 0, "maximum": 1},
                        "area_covered_share": {"type": "number", "minimum": 0, "maximum": 1},
                        "median_distance_m": _NUMBER_OR_NULL,
                        "p90_distance_m": _NUMBER_OR_NULL,
                        "max_distance_m": _NUMBER_OR_NULL,
                    },
                },
            },
            "progress_by_unit": {},
        },
    },
    "CoverageSites": {
        "type": "object",
        "required": ["radius_m", "p", "sites", "greedy", "covered_before", "covered_after"],
        "properties": {
            "radius_m": {"type": "number"},
            "p": {"type": "integer", "minimum": 1},
            "covered_before": {"type": "number"},
            "covered_after": {"type": "number"},
            "sites": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["lon", "lat", "town_code", "gain"],
                    "properties": {
                        "lon": {"type": "number"},
                        "lat": {"type": "number"},
                        "town_code": {"type": "string"},
                        "town_name": {"type": "string"},
                        "gain": {"type": "number"},
                    },
                },
            },
            "greedy": {"type": "object", "required": ["sites"]},
            "notes": {"type": "array", "items": {"type": "string"}},
            "notes_zh": {"type": "array", "items": {"type": "string"}},
        },
    },
    "OpenState": {
        "type": "object",
        "required": ["at", "sites", "opens", "hours"],
        "properties": {
            "at": {"type": "string"},
            "sites": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": ["open", "closed", "unknown"]},
            },
            "opens": {"type": "object", "additionalProperties": {"type": "string"}},
            "hours": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["zh", "en"],
                    "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
                },
            },
        },
    },
    "ImportReport": {
        "type": "object",
        "required": ["collection", "counts", "rows", "written"],
        "properties": {
            "collection": {"type": "string"},
            "source": _STRING_OR_NULL,
            "crs": _STRING_OR_NULL,
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "notes": {"type": "array", "items": {"type": "string"}},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["line", "status", "reasons"],
                    "properties": {
                        "line": {"type": "integer"},
                        "status": {"type": "string"},
                        "id": _STRING_OR_NULL,
                        "name": _STRING_OR_NULL,
                        "action": _STRING_OR_NULL,
                        "reasons": {"type": "array", "items": {"type": "string"}},
                        "reasons_zh": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "written": {"type": ["object", "null"]},
        },
    },
    "AuditLog": {
        "type": "object",
        "required": ["records", "numberMatched", "numberReturned"],
        "properties": {
            "records": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["before", "after"],
                    "properties": {
                        "before": {"type": ["object", "null"]},
                        "after": {"type": ["object", "null"]},
                    },
                },
            },
            "numberMatched": {"type": "integer", "minimum": 0},
            "numberReturned": {"type": "integer", "minimum": 0},
        },
    },
    "SiteHistory": {
        "type": "object",
        "required": ["collection", "id", "deleted", "etag", "versions"],
        "properties": {
            "collection": {"type": "string"},
            "id": {"type": "string"},
            "name": _STRING_OR_NULL,
            "town_code": _STRING_OR_NULL,
            "town_name": _STRING_OR_NULL,
            "deleted": {"type": "boolean"},
            "etag": _STRING_OR_NULL,
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "at", "actor", "action", "changes", "restorable"],
                    "properties": {
                        "version": {"type": "integer", "minimum": 1},
                        "at": {"type": "string"},
                        "actor": {"type": "string"},
                        "action": {"type": "string"},
                        "town_code": _STRING_OR_NULL,
                        "previous_town_code": _STRING_OR_NULL,
                        "changes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "before", "after"],
                                "properties": {"field": {"type": "string"}},
                            },
                        },
                        "moved_m": _NUMBER_OR_NULL,
                        "restorable": {"type": "boolean"},
                    },
                },
            },
        },
    },
    "SupervisionReport": {
        "type": "object",
        "required": ["as_of", "as_of_utc", "items", "towns", "units", "samples", "since"],
        "properties": {
            "as_of": {"type": "string"},
            "as_of_utc": {"type": "string"},
            "time_zone": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object"}},
            "towns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["town_code", "counts", "meets", "all_met", "sample_sites_counted"],
                    "properties": {
                        "town_code": {"type": "string"},
                        "town_name": _STRING_OR_NULL,
                        "counts": {"type": "object"},
                        "meets": {"type": "object"},
                        "items_met": {"type": "integer", "minimum": 0},
                        "all_met": {"type": "boolean"},
                        "sample_counts": {"type": "object"},
                        "sample_sites_counted": {"type": "integer", "minimum": 0},
                    },
                },
            },
            "units": {"type": "array", "items": {"type": "object"}},
            "samples": {
                "type": "object",
                "required": ["sites", "counted_for_items", "by_town", "note"],
                "properties": {
                    "sites": {"type": "integer", "minimum": 0},
                    "counted_for_items": {"type": "integer", "minimum": 0},
                    "by_town": {"type": "object"},
                    "note": {"type": "string"},
                },
            },
            "since": {"type": ["object", "null"]},
            "changes": {"type": ["object", "null"]},
        },
    },
}

_ERRORS = {
    400: "Invalid parameter (named in `parameter`) or body; any URL with NUL (%00)",
    401: "No token, or a token that is not valid",
    403: "The token may not do this",
    404: "No such collection, feature or town",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    429: "Too many heavy requests from this client; `Retry-After` says when to ask again",
    503: "The job queue is full, or a job was cut off; `Retry-After` (when given) says when",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}}
_METHODS = {"get", "put", "post", "delete", "patch"}
#: Comma-separated parameters that their routes declare as plain strings.
_LIST_PARAMETERS = {
    ("/open-state", "layers"): {
        "type": "array",
        "items": {"x-catalog": "facility_layers"},
    },
}
#: Success bodies of routes whose modules describe no schema of their own.
_SUCCESS_SCHEMAS = {("/open-state", MediaType.json.value): ref("OpenState")}
_BINARY_MEDIA = {"application/pdf", "application/vnd.mapbox-vector-tile"}
#: Pages people open from shared links, which carry query parameters of their
#: own (WeChat adds ``from=singlemessage``): anything besides the declared
#: parameters is accepted and ignored there, and the document says so.
_FREE_FORM_PAGES = {"/", "/map"}
_FREE_FORM = {
    "name": "link",
    "in": "query",
    "required": False,
    "description": "Anything else a shared link carries is ignored",
    "style": "form",
    "explode": True,
    "schema": {"type": "object"},
}


def _tile_parameters(operation: dict[str, Any]) -> None:
    """Zoom and tile ranges of ``Store.tile``, which answers 400 outside them."""
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if name == "z":
            parameter["schema"] = {"type": "integer", "minimum": 0, "maximum": MAX_ZOOM}
        elif name in {"x", "y"}:
            parameter["schema"] = {"type": "integer", "minimum": 0, "maximum": 2**MAX_ZOOM - 1}
            parameter.setdefault("description", f"Tile {name} at zoom z: 0..2^z-1 (400 outside)")


ITEMS_PATH = "/collections/{collectionId}/items"
_ITEM_VALUE_SCHEMAS = {
    "town_code": {"type": "string", "pattern": "^[0-9]{9}$"},
    "integer": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "boolean": {"type": "string", "enum": ["true", "false"]},
}


def _item_filters(parameters: list[dict[str, Any]], catalog: Catalog) -> None:
    """``/items`` filters on every filterable property of the catalog, each a
    comma-separated list of alternatives; a property the chosen layer lacks is
    a 400 (``ogc._property_filters``)."""
    values: dict[str, dict[str, Any]] = {}
    layers_of: dict[str, list[str]] = {}
    for layer in catalog.layers.values():
        for name in sorted(layer.filterable):
            spec = layer.properties[name]
            layers_of.setdefault(name, []).append(layer.id)
            if spec.type == "kind":
                schema = {"type": "string", "enum": _catalog_enum(catalog, "kinds")}
            elif spec.type in {"enum", "list"}:
                schema = {"type": "string", "enum": list(catalog.values[spec.values or ""])}
            else:
                schema = _ITEM_VALUE_SCHEMAS.get(spec.type, {"type": "string", "minLength": 1})
            values.setdefault(name, schema)
    declared = {p["name"]: p for p in parameters}
    for name, schema in values.items():
        parameter = declared.get(name)
        if parameter is None:
            parameter = {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"Keep features whose `{name}` is one of these "
                f"(layers: {', '.join(layers_of[name])})",
            }
            parameters.append(parameter)
        parameter["schema"] = {"type": "array", "items": schema, "minItems": 1}


def _concrete(path: str) -> str:
    """A path template as a request would spell it, for the guard's path rules."""
    return re.sub(r"\{[^}]+\}", "x", path)


def finish(spec: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """Apply the service-wide rules to the generated document (in place)."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(SCHEMAS)
    layer_ids = list(catalog.layers)
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                responses.pop("422")
            if path in _FREE_FORM_PAGES and method == "get":
                operation.setdefault("parameters", []).append(_FREE_FORM)
            parameters = operation.get("parameters", [])
            if path == ITEMS_PATH and method == "get":
                _item_filters(parameters, catalog)
            for parameter in parameters:
                schema = _query_schema(parameter.get("schema", {}))
                if (path, parameter["name"]) in _LIST_PARAMETERS:
                    schema = {**schema, **_LIST_PARAMETERS[path, parameter["name"]]}
                schema = _resolve(schema, catalog)
                if schema.get("type") == "array" and parameter["in"] == "query":
                    # Every list parameter of this service is comma-separated
                    # and bounded (``params.MAX_LIST_VALUES``).
                    parameter["style"], parameter["explode"] = "form", False
                    schema.setdefault("maxItems", MAX_LIST_VALUES)
                if parameter["name"] == "collectionId" and parameter["in"] == "path":
                    examples = {"examples": schema["examples"]} if "examples" in schema else {}
                    schema = {"type": "string", "enum": layer_ids, **examples}
                if parameter["in"] == "query":
                    # Blank values are refused (``query_contract``).
                    if schema.get("type") == "string" and "enum" not in schema:
                        schema["minLength"] = max(schema.get("minLength", 0), 1)
                    if schema.get("type") == "array":
                        schema["minItems"] = max(schema.get("minItems", 0), 1)
                if parameter["name"] == "If-Match":
                    # Required by the service (428 without it), not by FastAPI,
                    # which would answer 400 before the handler could say why.
                    parameter["required"] = True
                parameter["schema"] = schema
            if "/tiles/" in path:
                _tile_parameters(operation)
            wanted = set()
            # Any URL may be refused with 400: the guard refuses NUL anywhere.
            wanted.add(400)
            if any(p["in"] == "path" for p in parameters):
                wanted.add(404)
            if operation.get("security"):
                wanted |= {401, 403}
            if "requestBody" in operation:
                wanted |= {413, 415}
            if is_heavy(_concrete(path)):
                # Run as a job: a per-client limit (429) and a bounded queue (503).
                wanted |= {429, 503}
            for status in sorted(wanted):
                responses.setdefault(str(status), problem(_ERRORS[status]))
                if status in {429, 503}:
                    responses[str(status)].setdefault("headers", _RETRY_AFTER)
            for status, response in responses.items():
                if status[0] == "2":
                    for media, content in response.get("content", {}).items():
                        if not content.get("schema"):
                            if (path, media) in _SUCCESS_SCHEMAS:
                                content["schema"] = _SUCCESS_SCHEMAS[path, media]
                            elif media in _BINARY_MEDIA:
                                content["schema"] = BINARY
                if status[0] in "45":
                    # Every error is a problem document, whatever the route said.
                    response["content"] = problem("")["content"]
    return spec


@dataclass(frozen=True)
class _QueryRule:
    names: frozenset[str]
    lists: dict[str, int]  # list parameter -> most values
    free_form: bool  # a page whose links may carry anything (and ignores it)


def _query_rules(spec: dict[str, Any]) -> dict[tuple[str, str], _QueryRule]:
    rules = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            free = any(p["schema"].get("type") == "object" for p in query)
            rules[path, method] = _QueryRule(
                frozenset(p["name"] for p in query if p["schema"].get("type") != "object"),
                {
                    p["name"]: p["schema"].get("maxItems", MAX_LIST_VALUES)
                    for p in query
                    if p["schema"].get("type") == "array"
                },
                free,
            )
    return rules


class _Operations:
    """The document's operations, found by request path without the router:
    literal paths in a dict, templated ones as patterns (a ``{name}`` is one
    path segment, as the router matches it)."""

    def __init__(self, spec: dict[str, Any]):
        rules = _query_rules(spec)
        self.literal: dict[str, dict[str, _QueryRule | None]] = {}
        self.templated: list[tuple[re.Pattern[str], dict[str, _QueryRule | None]]] = []
        for template, item in spec.get("paths", {}).items():
            methods: dict[str, _QueryRule | None] = {
                m.upper(): rules.get((template, m)) for m in item if m in _METHODS
            }
            if "GET" in methods:
                methods["HEAD"] = methods["GET"]
            if "{" not in template:
                self.literal[template] = methods
                continue
            parts = re.split(r"(\{[^}]+\})", template)
            regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            self.templated.append((re.compile(f"^{regex}$"), methods))

    def at(self, path: str) -> list[dict[str, _QueryRule | None]]:
        """Every operation table whose path matches, the literal one first."""
        found = [self.literal[path]] if path in self.literal else []
        found.extend(methods for pattern, methods in self.templated if pattern.match(path))
        return found

    def rule(self, path: str, method: str) -> _QueryRule | None:
        for methods in self.at(path):
            if method in methods:
                return methods[method]
        return None


def operations(app: FastAPI) -> _Operations:
    """The app's operations, compiled from its document once (at startup:
    ``api/app.py`` asks for them in a thread before the first request)."""
    table = getattr(app.state, "operations", None)
    if table is None:
        table = app.state.operations = _Operations(app.openapi())
    return table


def _contract_breach(rule: _QueryRule, query: bytes) -> InvalidParameter | None:
    # Read as Starlette reads it (``QueryParams``), so names mean the same here.
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    counts: dict[str, int] = {}
    for name, value in pairs:
        if name not in rule.names:
            if rule.free_form:
                continue
            known = ", ".join(sorted(rule.names)) or "none"
            what = "unknown parameter" if name else "a parameter without a name"
            return InvalidParameter(name, f"{what}; known: {known}")
        if not value.strip():
            # A blank value is a mistake to point out, as a mistyped name is:
            # the default comes from leaving the parameter out.
            return InvalidParameter(name, "needs a value (leave it out for the default)")
        if name in rule.lists:
            counts[name] = counts.get(name, 0) + len(value.split(","))
    for name, count in counts.items():
        most = rule.lists[name]
        if count > most:
            return InvalidParameter(name, f"at most {most} values, got {count}")
    return None


class QueryContract:
    """Hold every request to its operation's query parameters as the OpenAPI
    document states them: an undeclared name is a 400 (a mistyped filter must
    never answer as if it were not there), a blank value too, and no list is
    longer than its ``maxItems``. One rule for every route, those of all
    modules alike; the routes then check values as before.

    Plain ASGI in front of the router, from a table compiled from the
    document: a per-request FastAPI dependency cost more than a whole bare
    request (a thread hop each), and a request without a query string costs
    nothing here."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        query = scope.get("query_string")
        if query and scope["type"] == "http":
            path = scope.get("path", "")
            rule = operations(scope["app"]).rule(path, scope["method"])
            error = None if rule is None else _contract_breach(rule, query)
            if error is not None:
                response = problem_response(
                    status_for(error),
                    error.detail,
                    title=error.title,
                    instance=path,
                    parameter=error.parameter,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document declares for the operations at ``path``
    (HEAD with GET), for the ``Allow`` header of a 405."""
    found: set[str] = set()
    for methods in operations(app).at(path):
        found |= set(methods)
    return sorted(found)


def install_openapi(app: FastAPI, catalog_loader: Callable[[], Catalog]) -> None:
    """Serve the finished document at /openapi.json (built once, on first ask)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = finish(spec, catalog_loader())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
