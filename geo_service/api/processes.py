"""OGC API - Processes (Part 1: Core): the heavy work as processes and jobs.

``/processes`` lists what can be run, ``POST /processes/{id}/execution``
runs it (synchronously, or with ``Prefer: respond-async`` as a job to poll),
and ``/jobs`` follows, fetches and dismisses jobs. Everything runs through
the one ``JobEngine`` of this server process: bounded, cached, recorded.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from geo_service.api import admin
from geo_service.api.media import MediaType
from geo_service.api.ogc import _base
from geo_service.api.openapi import problem
from geo_service.api.params import load_json_body
from geo_service.errors import InvalidParameter, Unauthorized, UnsupportedMediaType
from geo_service.services.access import Principal
from geo_service.services.processes import PROCESSES, Process, process, unknown_inputs
from geo_service.store.base import JobRecord

__all__ = ["job_created", "router"]

router = APIRouter()

ProcessId = Annotated[
    str,
    Path(
        description="The process, e.g. print-atlas",
        json_schema_extra={"enum": sorted(PROCESSES)},
    ),
]
JobId = Annotated[
    str,
    Path(description="The job's id", json_schema_extra={"pattern": "^[0-9a-f]{32}$"}),
]
_JOB_CONTROL = ["sync-execute", "async-execute", "dismiss"]
_STATUS = {
    "description": "The job's status (statusInfo)",
    "content": {MediaType.json.value: {"schema": {"type": "object"}}},
}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=MediaType.json, headers=headers
    )


def _summary(request: Request, proc: Process) -> dict[str, Any]:
    href = f"{_base(request)}/processes/{proc.id}"
    return {
        "id": proc.id,
        "title": proc.title,
        "description": proc.description,
        "version": "1.0.0",
        "jobControlOptions": _JOB_CONTROL,
        "outputTransmission": ["value", "reference"],
        "links": [
            {"href": href, "rel": "self", "type": MediaType.json.value, "title": proc.title},
            {
                "href": f"{href}/execution",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute",
                "type": MediaType.json.value,
            },
        ],
    }


def _jobs_prefix(request: Request) -> str:
    """Where the jobs are for this request: ``/admin/api`` when it came there."""
    return "/admin/api" if request.url.path.startswith("/admin/api/") else ""


def _status_info(request: Request, record: JobRecord) -> dict[str, Any]:
    href = f"{_base(request)}{_jobs_prefix(request)}/jobs/{record.id}"
    links = [{"href": href, "rel": "self", "type": MediaType.json.value}]
    if record.status == "successful":
        links.append(
            {
                "href": f"{href}/results",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                "type": record.result_media or MediaType.json.value,
            }
        )
    return {
        "type": "process",
        "jobID": record.id,
        "processID": record.process,
        "status": record.status,
        "message": record.message,
        "progress": record.progress,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "updated": record.updated,
        "links": links,
    }


def _principal(request: Request) -> Principal | None:
    """Who asks, if anyone: a bearer token, or (under ``/admin/api``, where
    the cookie is sent) the console's session, with its CSRF token on every
    POST and DELETE; the same rule as the editing API's (``admin.principal``).
    None for nobody: printing and coverage are anyone's to run."""
    if request.headers.get("authorization") or request.cookies.get(admin.SESSION_COOKIE):
        return admin.principal(request)
    return None


def job_created(request: Request, record: JobRecord) -> Response:
    """201 for a job queued with ``Prefer: respond-async``: its status, and
    where to follow it (under ``/admin/api`` when asked there)."""
    return _json(
        _status_info(request, record),
        201,
        {
            "Location": f"{_base(request)}{_jobs_prefix(request)}/jobs/{record.id}",
            "Preference-Applied": "respond-async",
        },
    )


def _may_see(who: Principal | None, record: JobRecord) -> bool:
    """Anyone may follow a job nobody signed for (printing, coverage); a job
    an editor started (an import) is theirs and the admins'."""
    return record.actor is None or (who is not None and (who.is_admin or who.actor == record.actor))


def _job_for(request: Request, job_id: str) -> JobRecord:
    from geo_service.services.jobs import JobNotFound

    record = request.app.state.jobs.job(job_id)
    if not _may_see(_principal(request), record):
        raise JobNotFound(job_id)  # as if absent: a job id says nothing to others
    return record


@router.get(
    "/processes",
    summary="The processes this service runs (OGC API - Processes)",
    operation_id="getProcesses",
    tags=["Processes"],
    response_class=Response,
)
async def processes(request: Request) -> Response:
    body = {
        "processes": [_summary(request, proc) for proc in PROCESSES.values()],
        "links": [
            {"href": f"{_base(request)}/processes", "rel": "self", "type": MediaType.json.value}
        ],
    }
    return _json(body)


@router.get(
    "/processes/{process_id}",
    summary="One process: its inputs and output",
    operation_id="getProcessDescription",
    tags=["Processes"],
    response_class=Response,
    responses={404: problem("No such process")},
)
async def process_description(request: Request, process_id: ProcessId) -> Response:
    proc = process(process_id)
    body = _summary(request, proc)
    body["inputs"] = {
        name: {
            "title": name,
            "schema": schema,
            "minOccurs": 1 if name in proc.required else 0,
            "maxOccurs": 1,
        }
        for name, schema in proc.inputs.items()
    }
    body["outputs"] = {
        "result": {
            "title": "result",
            "schema": {"type": "string", "contentMediaType": proc.media_type}
            if proc.media_type != MediaType.json.value
            else {"type": "object"},
        }
    }
    return _json(body)


@router.post(
    "/processes/{process_id}/execution",
    summary="Run a process: at once, or as a job with `Prefer: respond-async`",
    operation_id="execute",
    description='The body is `{"inputs": {...}}` (see the process description); '
    "`response` is `raw` (the result itself, the default) or `document` "
    "(JSON naming the result). With `Prefer: respond-async` the answer is 201 "
    "with `Location: /jobs/{jobId}`. The same inputs on unchanged data answer "
    "from the cache at once. 503 with `Retry-After` when the queue is full.",
    tags=["Processes"],
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MediaType.json.value: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "inputs": {"type": "object"},
                            "outputs": {"type": "object"},
                            "response": {"type": "string", "enum": ["raw", "document"]},
                        },
                    },
                    "example": {"inputs": {"size": "A4", "orientation": "portrait"}},
                }
            },
        }
    },
    responses={
        200: {"description": "The result (sync)"},
        201: {"description": "The job was created (async)", **_STATUS},
        401: problem("This process needs a token"),
        404: problem("No such process"),
        503: problem("The job queue is full; Retry-After says when to ask again"),
    },
)
async def execute(request: Request, process_id: ProcessId) -> Response:
    proc = process(process_id)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MediaType.json.value:
        raise UnsupportedMediaType("send the execute request as application/json")
    body = load_json_body(await request.body())
    if not isinstance(body, dict) or not isinstance(body.get("inputs", {}), dict):
        raise InvalidParameter("inputs", 'give {"inputs": {...}}')
    response_mode = body.get("response", "raw")
    if response_mode not in {"raw", "document"}:
        raise InvalidParameter("response", "must be raw or document")
    inputs = dict(body.get("inputs") or {})
    unknown_inputs(proc, inputs, trusted=False)
    who = await run_in_threadpool(_principal, request)
    actor = None
    if proc.needs_principal:
        if who is None:
            raise Unauthorized("this process needs a token: Authorization: Bearer TOKEN")
        inputs["who"] = who.as_inputs()
        actor = who.actor
    engine = request.app.state.jobs
    if "respond-async" in request.headers.get("prefer", ""):
        record = await engine.queue(process_id, inputs, actor=actor)
        return job_created(request, record)
    record, output = await engine.run(process_id, inputs, actor=actor)
    if response_mode == "document":
        if output.media_type == MediaType.json.value:
            result: Any = orjson.loads(output.content)
        else:
            result = {
                "href": f"{_base(request)}/jobs/{record.id}/results",
                "type": output.media_type,
            }
        return _json({"result": result}, headers={"Location": f"{_base(request)}/jobs/{record.id}"})
    return Response(
        output.content,
        media_type=output.media_type,
        headers={"Location": f"{_base(request)}/jobs/{record.id}"},
    )


@router.get(
    "/jobs",
    summary="Jobs, newest first",
    operation_id="getJobs",
    description="Jobs of processes anyone may run; with an admin token every job, with "
    "an editor's token theirs too. `limit` 1..1000 (default 100), `offset`.",
    tags=["Processes"],
    response_class=Response,
)
def jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size, 1..1000")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Jobs to skip")] = 0,
) -> Response:
    who = _principal(request)
    engine = request.app.state.jobs
    records = [r for r in engine.rt.store.jobs(limit, offset) if _may_see(who, r)]
    body = {
        "jobs": [_status_info(request, engine.job(r.id)) for r in records],
        "links": [{"href": f"{_base(request)}/jobs", "rel": "self", "type": MediaType.json.value}],
    }
    return _json(body, headers={"Cache-Control": "no-store"})


@router.get(
    "/jobs/{job_id}",
    summary="A job's status and progress",
    operation_id="getStatus",
    tags=["Processes"],
    response_class=Response,
    responses={200: _STATUS, 404: problem("No such job")},
)
def job_status(request: Request, job_id: JobId) -> Response:
    return _json(
        _status_info(request, _job_for(request, job_id)), headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/jobs/{job_id}/results",
    summary="A job's result: the PDF or JSON itself; a failed job's error",
    operation_id="getResult",
    description="404 while the job is still running or after it was dismissed.",
    tags=["Processes"],
    response_class=Response,
    responses={404: problem("No such job, or no result (yet, or any more)")},
)
def job_results(request: Request, job_id: JobId) -> Response:
    from geo_service.errors import NotFound

    record = _job_for(request, job_id)
    if record.status in {"accepted", "running"}:
        raise NotFound(f"job {job_id} is {record.status} ({record.progress}%): no result yet")
    if record.status == "dismissed":
        raise NotFound(f"job {job_id} was dismissed: it has no result")
    output = request.app.state.jobs.result(job_id)
    return Response(output.content, media_type=output.media_type)


@router.delete(
    "/jobs/{job_id}",
    summary="Dismiss a job: stop it, or forget its result",
    operation_id="dismiss",
    tags=["Processes"],
    response_class=Response,
    responses={200: _STATUS, 404: problem("No such job")},
)
def dismiss(request: Request, job_id: JobId) -> Response:
    _job_for(request, job_id)
    record = request.app.state.jobs.dismiss(job_id)
    return _json(_status_info(request, record))
