"""The console's Spreadsheets (表格导入) and Sample-to-real (示例转正) screens
over HTTP: the two pages, and the thin routes the sample screen calls.

The Spreadsheets screen imports through the editing API's own route
(``/admin/api/collections/{id}/import``, the same service as the public
API) and follows the job at ``/admin/api/jobs/{id}``; it needs nothing of
its own here but its page. The sample routes act for the signed-in person
(``admin.principal``: the session, with its CSRF token on every change);
the rules are ``services.samples``'.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from geo_service.api import admin
from geo_service.api.media import MediaType
from geo_service.api.params import load_json_body
from geo_service.errors import InvalidParameter, UnsupportedMediaType
from geo_service.services import console as console_service
from geo_service.services import samples
from geo_service.web.console_sheets import samples_page, spreadsheets_page

__all__ = ["router"]

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/spreadsheets")
def spreadsheets(request: Request, lang: Annotated[str | None, Query()] = None) -> Response:
    """表格导入: pick a layer, drop a file, read the dry run, then import."""
    rt = request.app.state.runtime
    layers = [
        {"id": layer.id, "zh": layer.zh, "en": layer.en}
        for layer in rt.catalog.layers.values()
        if layer.is_facility  # town boundaries are imported by an admin's command
    ]
    return admin.console_screen(
        request, spreadsheets_page, lang, layers=layers, max_bytes=rt.settings.max_import_bytes
    )


@router.get("/samples")
def samples_screen(request: Request, lang: Annotated[str | None, Query()] = None) -> Response:
    """示例转正: each town's sample sites, retired together, restored one by one."""
    towns = console_service.console_towns(request.app.state.runtime)
    return admin.console_screen(request, samples_page, lang, towns=towns)


def _json(body: Any) -> Response:
    return Response(
        orjson.dumps(body), media_type=MediaType.json, headers={"Cache-Control": "no-store"}
    )


async def _fields(request: Request, *names: str) -> list[str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MediaType.json.value:
        raise UnsupportedMediaType("send application/json")
    body = load_json_body(await request.body())
    values = []
    for name in names:
        value = body.get(name) if isinstance(body, dict) else None
        if not isinstance(value, str) or not value or len(value) > 128:
            raise InvalidParameter(name, "is required (text)")
        values.append(value)
    return values


@router.get("/api/samples")
def samples_data(request: Request) -> Response:
    """The sample sites the person keeps, by town and layer, and the ones retired."""
    rt = request.app.state.runtime
    return _json(samples.samples_overview(rt, admin.principal(request)))


@router.post("/api/samples/retire")
async def retire(request: Request) -> Response:
    """``{"layer": ..., "town": ...}``: retire that town's samples of the layer."""
    layer, town = await _fields(request, "layer", "town")
    rt = request.app.state.runtime
    who = await run_in_threadpool(admin.principal, request)
    retired = await run_in_threadpool(samples.retire_samples, rt, who, layer, town)
    return _json({"retired": retired})


@router.post("/api/samples/restore")
async def restore(request: Request) -> Response:
    """``{"layer": ..., "id": ...}``: bring one retired sample back."""
    layer, feature_id = await _fields(request, "layer", "id")
    rt = request.app.state.runtime
    who = await run_in_threadpool(admin.principal, request)
    site = await run_in_threadpool(samples.restore_sample, rt, who, layer, feature_id)
    return _json({"restored": site.id, "etag": site.etag})
