"""The import template over HTTP: ``GET /collections/{collectionId}/template.xlsx``.

Public: it holds the catalog's labels and the towns' names, no site data."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.media import MediaType
from geo_service.api.ogc import CollectionId
from geo_service.api.openapi import BINARY
from geo_service.services.import_template import import_template

__all__ = ["router"]

router = APIRouter()


@router.get(
    "/collections/{collectionId}/template.xlsx",
    summary="The import template of a facility layer (XLSX)",
    operation_id="getImportTemplate",
    description="An XLSX with the Chinese headers the import reads, drop-downs for "
    "kind, town, status and position quality, and a 说明 sheet explaining each column "
    "and the ways to write opening hours. Fill it in and POST it to "
    "`/collections/{collectionId}/import`. Boundary layers (towns, district) have none: 404.",
    tags=["Editing"],
    response_class=Response,
    responses={
        200: {
            "description": "The template",
            "content": {MediaType.xlsx.value: {"schema": BINARY}},
            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
        },
    },
)
def template(request: Request, collection_id: CollectionId) -> Response:
    # Plain def: building a workbook is blocking work, so FastAPI runs it in a thread.
    rt = request.app.state.runtime
    content = import_template(rt, collection_id)
    layer = rt.catalog.layer(collection_id)
    # An ASCII name for every client, the Chinese one (RFC 6266) for those that read it.
    chinese = quote(f"{layer.zh}导入模板.xlsx")
    disposition = f"attachment; filename=\"{layer.id}-template.xlsx\"; filename*=UTF-8''{chinese}"
    headers = {"Content-Disposition": disposition}
    return Response(content, media_type=MediaType.xlsx, headers=headers)
