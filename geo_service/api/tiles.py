"""``/collections/{id}/tiles/{z}/{x}/{y}.mvt``: Mapbox vector tiles of a layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.ogc import CollectionId

__all__ = ["router"]

router = APIRouter()
MVT = "application/vnd.mapbox-vector-tile"


@router.get(
    "/collections/{collectionId}/tiles/{z}/{x}/{y}.mvt",
    summary="A vector tile of the layer (Web Mercator z/x/y)",
    description="For layers too large to send as GeoJSON. Each feature has its id, name, "
    "kind and status. An empty tile is an empty body (200).",
    tags=["Vector tiles"],
    response_class=Response,
    responses={200: {"content": {MVT: {}}}},
)
def tile(request: Request, collection_id: CollectionId, z: int, x: int, y: int) -> Response:
    content = request.app.state.runtime.store.tile(collection_id, z, x, y)
    return Response(content, media_type=MVT, headers={"Cache-Control": "public, max-age=60"})
