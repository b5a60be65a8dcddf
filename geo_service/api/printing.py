"""Printed maps over HTTP: ``/print/atlas.pdf``, ``/print/towns/{code}.pdf``,
``/print/nearest.pdf``, with the same options as ``geo-service print``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from geo_service.api.openapi import BINARY, catalog_values
from geo_service.api.params import list_param, parse_lonlat, query_params, reject_unknown
from geo_service.errors import InvalidParameter

__all__ = ["router"]

router = APIRouter()

_SIZES = {"A4", "A3", "a4", "a3"}
_ORIENTATIONS = {"portrait", "landscape"}


def _parameter(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_SIZE = _parameter("size", "Paper: A4 (default) or A3", {"type": "string", "enum": sorted(_SIZES)})
_OPTIONS = [
    _SIZE,
    _parameter(
        "orientation",
        "portrait (default) or landscape",
        {"type": "string", "enum": sorted(_ORIENTATIONS)},
    ),
    _parameter(
        "layers",
        "Facility layers to show, comma-separated (default: all)",
        {"type": "array", "items": catalog_values("facility_layers")},
    ),
]
_PDF = {
    200: {
        "description": "The PDF (vector, Chinese font embedded)",
        "content": {"application/pdf": {"schema": BINARY}},
        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
    },
    503: {"description": "No CJK font on the server: nothing the client can fix"},
}


def _options(request: Request, allowed: set[str]) -> dict:
    params = query_params(request, {"layers"})
    reject_unknown(params, sorted(allowed))
    size = _size(params)
    orientation = params.get("orientation", "portrait")
    if orientation not in _ORIENTATIONS:
        raise InvalidParameter("orientation", "must be portrait or landscape")
    layers = list_param(params.get("layers"), "layers") or None
    known = {layer.id for layer in request.app.state.catalog.facility_layers}
    for layer in layers or []:
        if layer not in known:
            raise InvalidParameter("layers", f"unknown facility layer {layer!r}")
    return {"size": size, "orientation": orientation, "layers": layers}


def _size(params: dict[str, str]) -> str:
    size = params.get("size", "A4")
    if size not in _SIZES:
        raise InvalidParameter("size", "must be A4 or A3")
    return size.upper()


def _base_url(request: Request) -> str:
    settings = request.app.state.settings
    return settings.public_url or str(request.base_url).rstrip("/")


def _pdf(content: bytes, name: str) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get(
    "/print/atlas.pdf",
    summary="District atlas (PDF)",
    tags=["Printed maps"],
    response_class=Response,
    responses=_PDF,
    openapi_extra={"parameters": _OPTIONS},
)
def atlas(request: Request) -> Response:
    from geo_service.outputs.printing import atlas_pdf

    options = _options(request, {"size", "orientation", "layers"})
    state = request.app.state
    content = atlas_pdf(
        state.catalog, state.store, state.style, base_url=_base_url(request), **options
    )
    return _pdf(content, "zhangdian-atlas.pdf")


@router.get(
    "/print/towns/{code}.pdf",
    summary="One town's pages (PDF)",
    tags=["Printed maps"],
    response_class=Response,
    responses=_PDF,
    openapi_extra={"parameters": _OPTIONS},
)
def town(
    request: Request,
    code: Annotated[
        str,
        Path(
            description="The town's 9-digit code (see /collections/towns/items)",
            json_schema_extra={"pattern": "^[0-9]{9}$"},
        ),
    ],
) -> Response:
    from geo_service.outputs.printing import town_pdf

    options = _options(request, {"size", "orientation", "layers"})
    state = request.app.state
    content = town_pdf(
        state.catalog, state.store, state.style, code, base_url=_base_url(request), **options
    )
    return _pdf(content, f"town-{code}.pdf")


@router.get(
    "/print/nearest.pdf",
    summary="A resident's nearest-services sheet (PDF)",
    description="`lon`/`lat` (WGS-84) or `address`; the nearest two sites of each layer.",
    tags=["Printed maps"],
    response_class=Response,
    responses=_PDF,
    openapi_extra={
        "parameters": [
            _parameter(
                "lon",
                "Longitude (degrees); required unless `address` is given",
                {"type": "number", "minimum": -180, "maximum": 180},
            ),
            _parameter(
                "lat",
                "Latitude (degrees); required unless `address` is given",
                {"type": "number", "minimum": -90, "maximum": 90},
            ),
            _parameter(
                "address",
                "Instead of lon/lat: an address or place in 张店区 (offline gazetteer)",
                {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
            ),
            _SIZE,
        ]
    },
)
def nearest_sheet(request: Request) -> Response:
    from geo_service.api.geocode import geocode_address
    from geo_service.outputs.printing import nearest_pdf

    params = query_params(request)
    reject_unknown(params, sorted({"lon", "lat", "address", "size"}))
    size = _size(params)
    state = request.app.state
    if "address" in params:
        if params.get("lon") or params.get("lat"):
            raise InvalidParameter("address", "give either address or lon/lat, not both")
        found = geocode_address(state.geocoders.get(), params["address"], 1, parameter="address")
        if not found:
            raise InvalidParameter("address", "not found in the offline gazetteer of 张店区")
        lon, lat, where = found[0].lon, found[0].lat, f"{params['address']}（{found[0].matched}）"
    else:
        lon, lat = parse_lonlat(params, required_hint=" (or give address)")
        where = f"{lon:.5f}, {lat:.5f}"
    content = nearest_pdf(
        state.catalog,
        state.store,
        state.style,
        state.site_indexes.get(),
        lon,
        lat,
        base_url=_base_url(request),
        where=where,
        size=size,
    )
    return _pdf(content, "nearest.pdf")
