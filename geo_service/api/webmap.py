"""The resident web map: the page, its static files, and the open-now states it shows."""

from __future__ import annotations

import datetime as dt

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from geo_service.analysis.nearest import LOCAL_TIME
from geo_service.api.media import MediaType
from geo_service.errors import InvalidParameter
from geo_service.services.queries import reject_unknown, split_list
from geo_service.web.assets import ASSET_DIRS
from geo_service.web.page import site_times

__all__ = ["mount_static", "router"]

router = APIRouter()


@router.get(
    "/map",
    summary="The web map (张店区拥军服务资源地图)",
    tags=["Web map"],
    response_class=HTMLResponse,
)
def web_map(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.map_page)


@router.get(
    "/open-state",
    summary="Open, closed or unknown now, for every facility site",
    description="Evaluated from each site's `opening_hours` in Asia/Shanghai time; "
    "keys are `layer/id`. The web map's open-now badges come from here. `opens` says when "
    "a closed site opens next (local time, within a week); `hours` gives each distinct "
    "`opening_hours` value as a resident reads it, in Chinese and English. `layers` keeps "
    "only those layers (the map leaves out the ones it draws from vector tiles, which may "
    "hold millions of sites); `id` with one layer answers for one site (a tiled site's popup).",
    tags=["Web map"],
    response_class=Response,
    responses={200: {"content": {MediaType.json.value: {}}}},
)
def open_state(
    request: Request,
    layers: str | None = Query(None, description="Facility layers, comma-separated"),
    id: str | None = Query(None, description="One site's id; needs exactly one layer"),
) -> Response:
    reject_unknown(dict(request.query_params), ["layers", "id"])
    facility = [layer.id for layer in request.app.state.runtime.catalog.facility_layers]
    wanted = split_list(layers)
    for layer_id in wanted:
        if layer_id not in facility:
            raise InvalidParameter(
                "layers", f"no facility layer {layer_id!r}; known: " + ", ".join(facility)
            )
    if id is not None and len(wanted) != 1:
        raise InvalidParameter("id", "name the site's one layer in layers=")
    now = dt.datetime.now(LOCAL_TIME)
    index = request.app.state.runtime.site_indexes.get()
    times = site_times(index, now, layers=set(wanted) or None, feature_id=id)
    body = {"at": now.isoformat(timespec="minutes"), **times}
    return Response(orjson.dumps(body), media_type=MediaType.json)


def mount_static(app: FastAPI) -> None:
    """Leaflet, its clustering plugin (from installed packages) and the app's own files."""
    for folder, directory in ASSET_DIRS.items():
        app.mount(f"/static/{folder}", StaticFiles(directory=directory), name=f"static-{folder}")
