"""Coverage planning over HTTP: per-town table (JSON or CSV), recommended
sites, and the coverage map. The same planning service as the CLI."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from geo_service.analysis.coverage import (
    COMPLIANCE_COLUMNS,
    MAX_RADIUS_M,
    TOWN_COLUMNS,
)
from geo_service.api.media import MediaType
from geo_service.api.openapi import HTML, catalog_values, json_body
from geo_service.api.params import query_params
from geo_service.errors import InvalidParameter
from geo_service.outputs.cells import csv_bytes
from geo_service.services.planning import MAX_P
from geo_service.services.queries import reject_unknown

__all__ = ["router", "town_rows"]

router = APIRouter()


_LISTS = {"layers", "kinds"}


def _parameter(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "description": description, "schema": schema}


#: The question's parameters, as OpenAPI states them.
_QUESTION = [
    _parameter(
        "layers",
        "Facility layers, comma-separated (default: every facility layer)",
        {"type": "array", "items": catalog_values("facility_layers")},
    ),
    _parameter(
        "kinds",
        "Kinds to count, comma-separated; each a kind of one of `layers` (default: all)",
        {"type": "array", "items": catalog_values("facility_kinds")},
    ),
    _parameter(
        "radius",
        f"Reach: 5min, 10min, 15min (default) or metres, 0 < r <= {MAX_RADIUS_M:.0f}",
        {
            "anyOf": [
                {"type": "string", "enum": ["5min", "10min", "15min"]},
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RADIUS_M},
            ]
        },
    ),
]
_P = _parameter(
    "p", f"How many new sites, 1..{MAX_P}", {"type": "integer", "minimum": 1, "maximum": MAX_P}
)


def _inputs(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    params = query_params(request, _LISTS)
    reject_unknown(params, allowed)
    return params


def _lang(inputs: dict[str, str]) -> str:
    """The ``lang`` of a coverage question, taken out of its inputs (it picks
    the wording, not the answer): zh (default) or en, anything else a 400."""
    lang = inputs.pop("lang", "zh")
    if lang not in {"zh", "en"}:
        raise InvalidParameter("lang", "must be zh or en")
    return lang


async def _report(request: Request, inputs: dict[str, str]) -> dict[str, Any]:
    """The coverage report, computed by a job worker (bounded, cached)."""
    _record, output = await request.app.state.jobs.run("coverage-report", inputs)
    return orjson.loads(output.content)


async def _recommendation(request: Request, inputs: dict[str, str]) -> dict[str, Any]:
    _record, output = await request.app.state.jobs.run("site-recommendation", inputs)
    return orjson.loads(output.content)


def town_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The per-town table as header + rows (Chinese and English headers)."""
    header = [f"{zh} {key}" for key, zh in TOWN_COLUMNS] + [
        f"{zh} has_{item}" for item, zh in COMPLIANCE_COLUMNS
    ]
    header.append("其中示例站点 sample_sites")
    rows = [
        [town[key] for key, _zh in TOWN_COLUMNS]
        + [town[f"has_{item}"] for item, _ in COMPLIANCE_COLUMNS]
        + [town["sample_sites"]]
        for town in report["towns"]
    ]
    return header, rows


@router.get(
    "/coverage",
    summary="Coverage and compliance per town",
    description="Per town: facilities, share of people and of area within `radius` "
    "(5min, 10min, 15min or metres; walking = straight line × 1.3), people-weighted "
    "distances to the nearest facility, and the 2022 opinion's items. Parameters: "
    "`layers`, `kinds` (comma-separated; default every facility layer), `radius`, "
    "`f=json|csv`.",
    tags=["Coverage planning"],
    response_class=Response,
    responses={
        200: {
            "content": {
                **json_body("CoverageReport")["content"],
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    openapi_extra={
        "parameters": [
            *_QUESTION,
            _parameter("f", "json (default) or csv", {"type": "string", "enum": ["json", "csv"]}),
        ]
    },
)
async def coverage(request: Request) -> Response:
    inputs = _inputs(request, ("layers", "kinds", "radius", "f"))
    fmt = inputs.pop("f", "json")
    if fmt not in {"json", "csv"}:
        raise InvalidParameter("f", "must be json or csv")
    report = await _report(request, inputs)
    if fmt == "csv":
        header, rows = town_rows(report)
        return Response(
            csv_bytes(header, rows),  # town names are store text: kept from running as formulas
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="coverage.csv"'},
        )
    body = {k: v for k, v in report.items() if k not in {"uncovered", "sites"}}
    return Response(orjson.dumps(body), media_type=MediaType.json)


@router.get(
    "/coverage/sites",
    summary="Where p new sites should go (MCLP)",
    description="The p sites covering the most people not yet within `radius` of a "
    "facility, every existing facility kept (maximal covering location problem, "
    "PySAL spopt + CBC), with each site's gain, coverage before and after, solve "
    "time, and a greedy choice for comparison. Parameters: `p` 1..10, `radius`, "
    "`layers`, `kinds`.",
    tags=["Coverage planning"],
    response_class=Response,
    responses={200: json_body("CoverageSites")},
    openapi_extra={"parameters": [_P, *_QUESTION]},
)
async def coverage_sites(request: Request) -> Response:
    inputs = _inputs(request, ("layers", "kinds", "radius", "p"))
    inputs.setdefault("p", "2")
    return Response(orjson.dumps(await _recommendation(request, inputs)), media_type=MediaType.json)


@router.get(
    "/coverage/map",
    summary="Coverage map: covered share per town, uncovered cells, existing and suggested sites",
    description="An HTML page (Leaflet, no network): the coverage of `/coverage`, and with "
    "`p` the sites of `/coverage/sites`.",
    tags=["Coverage planning"],
    response_class=HTMLResponse,
    responses={200: {"content": HTML}},
    openapi_extra={
        "parameters": [
            *_QUESTION,
            _P,
            _parameter(
                "lang",
                "The page's language: zh (default) or en",
                {"type": "string", "enum": ["zh", "en"]},
            ),
        ]
    },
)
async def coverage_page(request: Request) -> HTMLResponse:
    from geo_service.web.coverage_map import coverage_map

    inputs = _inputs(request, ("layers", "kinds", "radius", "p", "lang"))
    lang = _lang(inputs)
    p = inputs.pop("p", None)
    report = await _report(request, inputs)
    recommendation = await _recommendation(request, {**inputs, "p": p}) if p is not None else None

    def render() -> str:
        towns = request.app.state.runtime.store.all_features("towns")
        return coverage_map(report, towns, recommendation, lang)

    return HTMLResponse(await run_in_threadpool(render))
