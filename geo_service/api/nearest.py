"""``GET /nearest``: the nearest sites that serve a resident, as GeoJSON, nearest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from geo_service.analysis.nearest import WALKING_LIMIT_M, WINDOW_GROUP_RADIUS_M
from geo_service.api.media import MediaType
from geo_service.api.openapi import catalog_values, json_body
from geo_service.api.params import query_params
from geo_service.runtime import Runtime
from geo_service.services.nearest import (
    DEFAULT_LAYERS,
    LIST_PARAMETERS,
    MAX_ADDRESS,
    MAX_DISTANCE_M,
    MAX_K,
    NEAREST_PARAMETERS,
    geocoded_params,
    nearest_geojson,
    nearest_geojson_in_memory,
    parse_nearest_query,
)
from geo_service.services.queries import (
    CRS_NAMES,
)

__all__ = ["router"]

router = APIRouter()

#: The parameters as documented in OpenAPI: description and schema. They are
#: not declared as FastAPI arguments: the handler reads the raw query string,
#: so "nan", "1e999" or "ten" get our own clear 400, and the per-request
#: validation layer (which costs more than the query itself) is skipped.
_PARAMETER_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "lon": (
        "Longitude of the resident (degrees); required unless `address` is given",
        {"type": "number", "minimum": -180, "maximum": 180},
    ),
    "lat": (
        "Latitude of the resident (degrees); required unless `address` is given",
        {"type": "number", "minimum": -90, "maximum": 90},
    ),
    "k": (
        f"Number of sites, 1..{MAX_K} (default 5)",
        {"type": "integer", "minimum": 1, "maximum": MAX_K},
    ),
    "layers": (
        "Facility layers to search, comma-separated (default: "
        + ", ".join(DEFAULT_LAYERS)
        + "; memorials and education only when named here)",
        {"type": "array", "items": catalog_values("facility_layers")},
    ),
    "kind": (
        "Kinds to keep, comma-separated; each must be a kind of one of `layers`",
        {"type": "array", "items": catalog_values("facility_kinds")},
    ),
    "services": (
        "Services the site must ALL offer, comma-separated",
        {"type": "array", "items": catalog_values("services")},
    ),
    "eligible": ("Beneficiary type the site must serve", catalog_values("eligible")),
    "open_now": (
        "true: only sites open now (Asia/Shanghai); unknown hours are left out. If none is "
        "open, the nearest sites with known hours are answered with `next_open` and the "
        "answer says `none_open: true`. Not with `open_at`",
        {"type": "boolean"},
    ),
    "open_at": (
        "Only sites open at this ISO date-time (local time if no offset)",
        {"type": "string", "format": "date-time"},
    ),
    "status": (
        "Statuses to keep, comma-separated (default: open)",
        {"type": "array", "items": catalog_values("status")},
    ),
    "max_distance": (
        f"Only sites within this many metres (0 < d <= {MAX_DISTANCE_M:.0f})",
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DISTANCE_M},
    ),
    "crs": (
        "Coordinate system of lon/lat AND of the output: wgs84, gcj02, bd09",
        {"type": "string", "enum": CRS_NAMES},
    ),
    "address": (
        "Instead of lon/lat: an address or place in 张店区, geocoded offline; the "
        "answer says where it was placed and how confidently",
        {"type": "string", "minLength": 1, "maxLength": MAX_ADDRESS, "pattern": r"\S"},
    ),
}
_LISTS = {name for name, (_, schema) in _PARAMETER_DOCS.items() if schema.get("type") == "array"}
# The document states exactly the parameters the service reads.
assert tuple(_PARAMETER_DOCS) == NEAREST_PARAMETERS and _LISTS == LIST_PARAMETERS


@router.get(
    "/nearest",
    summary="Nearest sites that serve a resident",
    description="The true k nearest places (geodesic distance on WGS-84, ties by id) among "
    "those passing every filter, nearest first, each with distance, bearing, a "
    "walking estimate, its open-now state and navigation links for Amap, Baidu "
    "and Tencent maps. Unknown parameters are rejected.\n\n"
    "* Default layers: " + ", ".join(DEFAULT_LAYERS) + " (what a resident means); "
    "memorials and education only when `layers` names them.\n"
    "* Windows of one institution (same name before the first space, within "
    f"{WINDOW_GROUP_RADIUS_M:g} m or at the same address) are one place: the nearest "
    "window answers, with all the institution's matching windows in `windows` "
    "(null for a single site).\n"
    "* A point outside the district: `outside_district: true`, "
    "`district_boundary_m` and a note in `notes` (Chinese and English).\n"
    f"* `walk_minutes` is null, with `walk_note`, past {WALKING_LIMIT_M:g} m or "
    "outside the district.\n"
    "* `open_now`/`open_at` with nothing open: the nearest sites with known hours "
    "anyway, each with `next_open` (ISO) and `next_open_text` "
    '("明天 08:00 开放"), and `none_open: true`.',
    tags=["Nearest"],
    response_class=Response,
    responses={200: json_body("NearestResult", MediaType.geojson.value)},
    openapi_extra={
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": name in {"lon", "lat"},
                "description": text,
                "schema": schema,
            }
            for name, (text, schema) in _PARAMETER_DOCS.items()
        ]
    },
)
async def nearest(request: Request) -> Response:
    # Answered here, on the event loop, when memory holds all it takes (the
    # usual case: a thread hop costs more than the whole answer). A geocoded
    # address, an index to bring up to date after a write, or sites never
    # fetched yet read the store: those go to a thread.
    runtime = request.app.state.runtime
    params = query_params(request, _LISTS)
    if "address" not in params:
        query = parse_nearest_query(params, runtime.catalog)
        body = nearest_geojson_in_memory(query, runtime.site_indexes)
        if body is not None:
            return Response(body, media_type=MediaType.geojson)
    return await run_in_threadpool(_nearest_from_store, params, runtime)


def _nearest_from_store(params: dict[str, str], runtime: Runtime) -> Response:
    extra = None
    if "address" in params:
        params, extra = geocoded_params(params, runtime.geocoders.get())
    query = parse_nearest_query(params, runtime.catalog)
    body = nearest_geojson(query, runtime.site_indexes, extra)
    return Response(body, media_type=MediaType.geojson)
