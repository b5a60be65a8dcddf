"""Printed maps over HTTP: ``/print/atlas.pdf``, ``/print/towns/{code}.pdf``,
``/print/nearest.pdf``, with the same options as ``geo-service print``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from geo_service.api.openapi import BINARY, catalog_values
from geo_service.api.params import query_params
from geo_service.services.printing import ORIENTATIONS, SIZES
from geo_service.services.queries import parse_lonlat, reject_unknown

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


def _inputs(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as the process's inputs."""
    params = query_params(request, {"layers"})
    reject_unknown(params, allowed)
    return params


async def _printed(request: Request, process_id: str, inputs: dict, name: str) -> Response:
    """Printed by a job worker (bounded, cached): the event loop only waits."""
    _record, output = await request.app.state.jobs.run(process_id, inputs)
    return _pdf(output.content, name)


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
async def atlas(request: Request) -> Response:
    inputs = _inputs(request, ("size", "orientation", "layers"))
    return await _printed(request, "print-atlas", inputs, "zhangdian-atlas.pdf")


@router.get(
    "/print/towns/{code}.pdf",
    summary="One town's pages (PDF)",
    tags=["Printed maps"],
    response_class=Response,
    responses=_PDF,
    openapi_extra={"parameters": _OPTIONS},
)
async def town(
    request: Request,
    code: Annotated[
        str,
        Path(
            description="The town's 9-digit code (see /collections/towns/items)",
            json_schema_extra={"pattern": "^[0-9]{9}$"},
        ),
    ],
) -> Response:
    inputs = {"code": code, **_inputs(request, ("size", "orientation", "layers"))}
    return await _printed(request, "print-town", inputs, f"town-{code}.pdf")


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
async def nearest_sheet(request: Request) -> Response:
    inputs = _inputs(request, ("lon", "lat", "address", "size"))
    if "address" not in inputs:
        lon, lat = parse_lonlat(inputs, required_hint=" (or give address)")
        inputs.update(lon=lon, lat=lat)
    return await _printed(request, "print-nearest", inputs, "nearest.pdf")
