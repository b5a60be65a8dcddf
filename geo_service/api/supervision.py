"""Supervision (督办) over HTTP: the 2022 opinion's items per town, progress
per responsible unit, and what changed between two dates, as JSON or as the
office's workbook. Needs a token: an editor sees only their towns' rows."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from geo_service.api.editing import PrincipalDep
from geo_service.api.media import MediaType
from geo_service.api.openapi import BINARY, json_body
from geo_service.outputs.supervision_workbook import supervision_workbook
from geo_service.services.supervision import supervision_report

__all__ = ["router"]

router = APIRouter()

_DATE = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$"
_DATE_FORMATS = {"oneOf": [{"format": "date"}, {"format": "date-time"}]}
AsOf = Annotated[
    str | None,
    Query(
        pattern=_DATE,
        description="The state at the end of this day, Beijing time (UTC+8), or at this "
        "instant (default: now)",
        json_schema_extra=_DATE_FORMATS,
    ),
]
Since = Annotated[
    str | None,
    Query(
        pattern=_DATE,
        description="Compare with the state at the end of this day (or instant): "
        "`changes` says what differs per town, item and unit",
        json_schema_extra=_DATE_FORMATS,
    ),
]
_NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/supervision",
    summary="Supervision (督办): each town's items of the 2022 opinion, progress per unit",
    operation_id="supervision",
    description="Rebuilt from the audit trail as of `as_of`; with `since`, also as of that "
    "date and what changed in between. Says how many sample sites are counted, per town. "
    "An editor's token sees its towns only.",
    tags=["Supervision"],
    response_class=Response,
    responses={200: json_body("SupervisionReport")},
)
def supervision(
    request: Request, who: PrincipalDep, as_of: AsOf = None, since: Since = None
) -> Response:
    report = supervision_report(request.app.state.runtime, who, as_of, since)
    return Response(orjson.dumps(report), media_type=MediaType.json, headers=_NO_STORE)


@router.get(
    "/supervision.xlsx",
    summary="The supervision workbook (镇街达标, 责任单位进度, 变化)",
    operation_id="supervisionWorkbook",
    description="The same views as `/supervision`, a sheet each, Chinese headers.",
    tags=["Supervision"],
    response_class=Response,
    responses={200: {"content": {MediaType.xlsx.value: {"schema": BINARY}}}},
)
def supervision_xlsx(
    request: Request, who: PrincipalDep, as_of: AsOf = None, since: Since = None
) -> Response:
    report = supervision_report(request.app.state.runtime, who, as_of, since)
    name = f"supervision-{report['as_of'][:10]}.xlsx"
    return Response(
        supervision_workbook(report),
        media_type=MediaType.xlsx,
        headers={**_NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )
