"""``/collections/{id}/tiles/{z}/{x}/{y}.mvt``: Mapbox vector tiles of a layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.ogc import CollectionId
from geo_service.store.tiles import CELL, DETAIL_ZOOM

__all__ = ["router"]

router = APIRouter()
MVT = "application/vnd.mapbox-vector-tile"


@router.get(
    "/collections/{collectionId}/tiles/{z}/{x}/{y}.mvt",
    summary="A vector tile of the layer (Web Mercator z/x/y)",
    description=f"For layers too large to send as GeoJSON. From zoom {DETAIL_ZOOM} each site "
    f"is a feature with its id, name, kind and status. Below zoom {DETAIL_ZOOM} a point layer "
    f"is thinned: one feature per {CELL}-unit cell and kind (the lowest id) with `count`, the "
    "sites of that kind in the cell, and no names. An empty tile is an empty body (200).",
    tags=["Vector tiles"],
    response_class=Response,
    responses={200: {"content": {MVT: {}}}},
)
def tile(request: Request, collection_id: CollectionId, z: int, x: int, y: int) -> Response:
    content = request.app.state.runtime.store.tile(collection_id, z, x, y)
    return Response(content, media_type=MVT, headers={"Cache-Control": "public, max-age=60"})
