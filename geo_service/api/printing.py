"""Printed maps over HTTP: ``/print/atlas.pdf``, ``/print/towns/{code}.pdf``,
``/print/nearest.pdf``, with the same options as ``geo-service print``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.params import parse_lonlat, reject_unknown, split_list
from geo_service.errors import InvalidParameter

__all__ = ["router"]

router = APIRouter()


def _options(request: Request, allowed: set[str]) -> dict:
    params = dict(request.query_params)
    reject_unknown(params, sorted(allowed))
    size = _size(params)
    orientation = params.get("orientation", "portrait").lower()
    if orientation not in {"portrait", "landscape"}:
        raise InvalidParameter("orientation", "must be portrait or landscape")
    layers = split_list(params.get("layers")) or None
    known = {layer.id for layer in request.app.state.catalog.facility_layers}
    for layer in layers or []:
        if layer not in known:
            raise InvalidParameter("layers", f"unknown facility layer {layer!r}")
    return {"size": size, "orientation": orientation, "layers": layers}


def _size(params: dict[str, str]) -> str:
    size = params.get("size", "A4").upper()
    if size not in {"A4", "A3"}:
        raise InvalidParameter("size", "must be A4 or A3")
    return size


def _base_url(request: Request) -> str:
    settings = request.app.state.settings
    return settings.public_url or str(request.base_url).rstrip("/")


def _pdf(content: bytes, name: str) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get("/print/atlas.pdf", summary="District atlas (PDF)", tags=["Printed maps"])
def atlas(request: Request) -> Response:
    from geo_service.printing import atlas_pdf

    options = _options(request, {"size", "orientation", "layers"})
    state = request.app.state
    content = atlas_pdf(
        state.catalog, state.store, state.style, base_url=_base_url(request), **options
    )
    return _pdf(content, "zhangdian-atlas.pdf")


@router.get("/print/towns/{code}.pdf", summary="One town's pages (PDF)", tags=["Printed maps"])
def town(request: Request, code: str) -> Response:
    from geo_service.printing import town_pdf

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
)
def nearest_sheet(request: Request) -> Response:
    from geo_service.api.geocode import geocode_address
    from geo_service.printing import nearest_pdf

    params = dict(request.query_params)
    reject_unknown(params, sorted({"lon", "lat", "address", "size"}))
    size = _size(params)
    state = request.app.state
    if params.get("address"):
        found = geocode_address(state.geocoders.get(), params["address"], 1)
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
