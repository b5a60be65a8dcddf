"""Printed maps over HTTP: ``/print/atlas.pdf``, ``/print/towns/{code}.pdf``,
``/print/nearest.pdf``, with the same options as ``geo-service print``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from geo_service.api.openapi import BINARY, catalog_values
from geo_service.api.params import query_params
from geo_service.errors import InvalidParameter
from geo_service.services import printing
from geo_service.services.printing import ORIENTATIONS, SIZES, PrintOptions
from geo_service.services.queries import list_param, parse_lonlat, reject_unknown

__all__ = ["router"]

router = APIRouter()

_SIZES = sorted({*SIZES, *(s.lower() for s in SIZES)})


def _parameter(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_SIZE = _parameter("size", "Paper: A4 (default) or A3", {"type": "string", "enum": _SIZES})
_OPTIONS = [
    _SIZE,
    _parameter(
        "orientation",
        "portrait (default) or landscape",
        {"type": "string", "enum": list(ORIENTATIONS)},
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


def _options(request: Request) -> PrintOptions:
    params = query_params(request, {"layers"})
    reject_unknown(params, ("size", "orientation", "layers"))
    return PrintOptions.checked(
        request.app.state.runtime,
        params.get("size"),
        params.get("orientation"),
        list_param(params.get("layers"), "layers"),
    )


def _base_url(request: Request) -> str:
    return printing.base_url(request.app.state.runtime, str(request.base_url).rstrip("/"))


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
    content = printing.atlas(
        request.app.state.runtime, _options(request), base_url=_base_url(request)
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
    content = printing.town(
        request.app.state.runtime, code, _options(request), base_url=_base_url(request)
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
    params = query_params(request)
    reject_unknown(params, ("lon", "lat", "address", "size"))
    if "address" in params:
        if params.get("lon") or params.get("lat"):
            raise InvalidParameter("address", "give either address or lon/lat, not both")
        where = {"address": params["address"]}
    else:
        lon, lat = parse_lonlat(params, required_hint=" (or give address)")
        where = {"lon": lon, "lat": lat}
    content = printing.nearest_sheet(
        request.app.state.runtime,
        **where,
        size=params.get("size", "A4"),
        base_url=_base_url(request),
    )
    return _pdf(content, "nearest.pdf")
