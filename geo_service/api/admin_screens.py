"""The console's History, Supervision and Planning & printing screens: the
pages (a signed-in person, else the sign-in page), and the one route of
theirs the public API lacks, the coverage workbook.

The screens' data comes from the history, supervision and processes routers
mounted again under ``/admin/api`` (``api/app.py``), where the session cookie
(Path=/admin) reaches them; there ``admin.principal`` makes the session the
person who asks, with the CSRF token on every POST and DELETE.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from geo_service.analysis.coverage import COMPLIANCE_COLUMNS
from geo_service.api.admin import console_screen, principal
from geo_service.api.coverage import _inputs, _lang, _recommendation, _report
from geo_service.api.media import MediaType
from geo_service.outputs.coverage_workbook import write_workbook
from geo_service.services import console as console_service
from geo_service.web.console_screens import history_page, planning_page, supervision_page

__all__ = ["router"]

router = APIRouter(prefix="/admin", include_in_schema=False)

Lang = Annotated[str | None, Query()]


def _screen(
    request: Request, render: Callable[..., str], lang: str | None, **extra: Any
) -> Response:
    """A screen with the towns and today's date in its data (``admin.console_screen``)."""
    runtime = request.app.state.runtime
    return console_screen(
        request,
        render,
        lang,
        towns=console_service.console_towns(runtime),
        today=console_service.today(),
        **extra,
    )


@router.get("/history")
def history(
    request: Request,
    lang: Lang = None,
    layer: Annotated[str | None, Query(max_length=64)] = None,
    id: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """One site's timeline (``?layer=&id=``); the script asks for it and
    restores versions through ``/admin/api``, where the service checks the
    person's towns. Without a site the page says where to pick one."""
    catalog = request.app.state.runtime.catalog
    return _screen(
        request,
        history_page,
        lang,
        site={"layer": layer or "", "id": id or ""},
        layers=console_service.console_layers(catalog),
    )


@router.get("/supervision")
def supervision(request: Request, lang: Lang = None) -> Response:
    """Supervision (督办) as of a date, compared with another."""
    return _screen(request, supervision_page, lang)


@router.get("/planning")
def planning(request: Request, lang: Lang = None) -> Response:
    """Coverage report and recommended sites, printed maps: all as jobs."""
    catalog = request.app.state.runtime.catalog
    layers = [{"id": layer.id, "zh": layer.zh, "en": layer.en} for layer in catalog.facility_layers]
    items = [{"item": item, "name": zh} for item, zh in COMPLIANCE_COLUMNS]
    return _screen(request, planning_page, lang, layers=layers, items=items)


@router.get("/api/coverage.xlsx")
async def coverage_workbook(request: Request) -> Response:
    """The coverage workbook (镇街覆盖与达标, 责任单位进度, 选址建议) for the
    question the Planning screen asked (``layers``, ``kinds``, ``radius``,
    ``p``): the same jobs as the screen ran, so normally from the cache."""
    await run_in_threadpool(principal, request)  # a console route: signed in
    inputs = _inputs(request, ("layers", "kinds", "radius", "p", "lang"))
    # The console's language (?lang=en on its screens): the workbook's too.
    lang = _lang(inputs)
    p = inputs.pop("p", None)
    report = await _report(request, inputs)
    recommendation = await _recommendation(request, {**inputs, "p": p}) if p else None

    def render() -> bytes:
        out = io.BytesIO()
        write_workbook(out, report, recommendation, lang)
        return out.getvalue()

    return Response(
        await run_in_threadpool(render),
        media_type=MediaType.xlsx,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": 'attachment; filename="coverage.xlsx"',
        },
    )
