"""Writes in the style of OGC API - Features Part 4 (create, replace, update,
delete), the file import, and the audit trail. Every write needs a bearer
token (or, under ``/admin/api``, the office console's session and its CSRF
token); every change of an existing feature needs ``If-Match``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from geo_service.api import admin
from geo_service.api.media import MediaType
from geo_service.api.ogc import FEATURE_ID_PATTERN, CollectionId, FeatureId, _base
from geo_service.api.openapi import catalog_values, change_links, json_body, problem
from geo_service.api.params import load_json_body
from geo_service.api.processes import job_created
from geo_service.errors import (
    InvalidParameter,
    PreconditionRequired,
    UnsupportedMediaType,
)
from geo_service.services import editing
from geo_service.services.access import Principal, require_admin
from geo_service.store import AuditQuery, Store, StoredFeature

__all__ = ["router"]

router = APIRouter()

AUDIT_MAX_LIMIT = 1000

#: Documented once, used by every write: RFC 9457 problem details (the
#: shared rules of ``openapi.finish`` add 400/401/403/404/413/415).
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("Invalid feature or parameter"),
    401: problem("No token, or a token that is not valid"),
    403: problem("The token may not make this change"),
    404: problem("No such collection or feature"),
    413: problem("Request body too large"),
    415: problem("Unsupported Content-Type"),
}
_FEATURE_SCHEMA = {
    "type": "object",
    "required": ["type", "geometry", "properties"],
    "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        # Absent or empty: made from the name and the position. RFC 7946 allows
        # a number too: it is stored, and answered, as text ("7").
        "id": {
            "anyOf": [
                {"type": ["string", "null"], "pattern": f"^({FEATURE_ID_PATTERN[1:-1]})?$"},
                {"type": "integer", "minimum": 0},
            ]
        },
        "geometry": {"type": "object"},
        "properties": {"type": "object"},
    },
}
#: A new support post in 公园街道, as an editor would send it for `stations`.
_FEATURE_EXAMPLE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [118.0405, 36.8125]},
    "properties": {
        "name": "示例：新拥军服务驿站",
        "kind": "support_post",
        "address": "张店区示例路1号（示例地址）",
        "eligible": ["veteran", "military_family"],
        "status": "planned",
        "position_quality": "approximate",
    },
}
_FEATURE_BODY = {
    "required": True,
    "content": {
        media: {"schema": _FEATURE_SCHEMA, "example": _FEATURE_EXAMPLE}
        for media in (MediaType.geojson.value, MediaType.json.value)
    },
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "required": True, "description": "The new version"}}


_FEATURE_OUT = json_body("Feature", MediaType.geojson.value, headers=_ETAG, links=change_links())
IfMatch = Annotated[
    str,
    Header(
        alias="If-Match",
        description="The ETag of the feature as you read it; required (428 without it, "
        "412 if the feature has changed since)",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    ),
]
#: Declares the bearer token in OpenAPI (``securitySchemes``); the header
#: itself is read by ``admin.principal``, which words every refusal (401).
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="`Authorization: Bearer TOKEN` (see `geo-service tokens add`)",
)


def principal(
    request: Request, _declared: Annotated[object, Security(_bearer)] = None
) -> Principal:
    # A bearer token, or the office console's session cookie with its CSRF token.
    return admin.principal(request)


PrincipalDep = Annotated[Principal, Depends(principal)]


async def _json_body(request: Request, accepted: tuple[str, ...]) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise UnsupportedMediaType(
            f"send the body as {' or '.join(accepted)} (got {media or 'no Content-Type'})"
        )
    # Control characters (NUL included) are refused by the catalog's
    # validation, which names the field; every write path goes through it.
    return load_json_body(await request.body())


def _if_match(value: str | None) -> str:
    if not value or not value.strip():
        raise PreconditionRequired(
            "send If-Match with the ETag you read (GET the feature first), so that "
            "nobody's change is overwritten unseen"
        )
    return value


def _feature_response(
    request: Request,
    feature: StoredFeature,
    status: int = 200,
    location: bool = False,
    warnings: list[str] | None = None,
) -> Response:
    body = feature.geojson()
    href = f"{_base(request)}/collections/{feature.layer_id}/items/{feature.id}"
    body["links"] = [{"href": href, "rel": "self", "type": MediaType.geojson.value}]
    if warnings:
        body["warnings"] = warnings  # a foreign member: GeoJSON readers ignore it
    headers = {"ETag": feature.etag}
    if location:
        headers["Location"] = href
    return Response(
        orjson.dumps(body), status_code=status, media_type=MediaType.geojson, headers=headers
    )


_FEATURE_TYPES = (MediaType.geojson.value, MediaType.json.value)


@router.post(
    "/collections/{collectionId}/items",
    summary="Add a feature",
    operation_id="createFeature",
    description="Needs a token (an editor: inside their towns). Missing `updated_at`, "
    "`sample`, `source`, `town_code` (from the position) and `id` are filled in. "
    "A site named like a sample site of the layer (sample markers such as 示例： "
    "ignored), wherever that lies, is created all the same; the answer's `warnings` "
    "names the sample it probably replaces.",
    tags=["Editing"],
    status_code=201,
    response_class=Response,
    openapi_extra={"requestBody": _FEATURE_BODY},
    responses={
        201: {"description": "Created", **_FEATURE_OUT},
        **_WRITE_ERRORS,
        409: problem("A feature with this id exists"),
    },
)
async def create_item(request: Request, collection_id: CollectionId, who: PrincipalDep) -> Response:
    body = await _json_body(request, _FEATURE_TYPES)
    created = await run_in_threadpool(
        editing.create_feature, request.app.state.runtime, who, collection_id, body
    )
    return _feature_response(
        request, created.feature, 201, location=True, warnings=created.warnings
    )


_CHANGE_ERRORS = {
    **_WRITE_ERRORS,
    412: problem("The feature changed since your If-Match version"),
    428: problem("If-Match is required"),
}


@router.put(
    "/collections/{collectionId}/items/{featureId}",
    summary="Replace a feature",
    operation_id="replaceFeature",
    tags=["Editing"],
    response_class=Response,
    openapi_extra={"requestBody": _FEATURE_BODY},
    responses={200: {"description": "Replaced", **_FEATURE_OUT}, **_CHANGE_ERRORS},
)
async def replace_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    who: PrincipalDep,
    if_match: IfMatch = None,
) -> Response:
    tag = _if_match(if_match)
    body = await _json_body(request, _FEATURE_TYPES)
    replaced = await run_in_threadpool(
        editing.replace_feature,
        request.app.state.runtime,
        who,
        collection_id,
        feature_id,
        body,
        tag,
    )
    return _feature_response(request, replaced)


@router.patch(
    "/collections/{collectionId}/items/{featureId}",
    summary="Change part of a feature (JSON Merge Patch, RFC 7396)",
    operation_id="patchFeature",
    description='Send only what changes, e.g. `{"properties": {"phone": "0533-1234567"}}`; '
    "`null` removes an optional property.",
    tags=["Editing"],
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MediaType.merge_patch.value: {"schema": {"type": "object"}},
                MediaType.json.value: {"schema": {"type": "object"}},
            },
        }
    },
    responses={200: {"description": "Updated", **_FEATURE_OUT}, **_CHANGE_ERRORS},
)
async def patch_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    who: PrincipalDep,
    if_match: IfMatch = None,
) -> Response:
    tag = _if_match(if_match)
    patch = await _json_body(request, (MediaType.merge_patch.value, MediaType.json.value))
    patched = await run_in_threadpool(
        editing.patch_feature,
        request.app.state.runtime,
        who,
        collection_id,
        feature_id,
        patch,
        tag,
    )
    return _feature_response(request, patched)


@router.delete(
    "/collections/{collectionId}/items/{featureId}",
    summary="Delete a feature (it can be restored: `geo-service restore ID`)",
    operation_id="deleteFeature",
    tags=["Editing"],
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted"},
        409: problem("Towns and the district are not deleted one by one"),
        **_CHANGE_ERRORS,
    },
)
def delete_item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    who: PrincipalDep,
    if_match: IfMatch = None,
) -> Response:
    editing.delete_feature(
        request.app.state.runtime, who, collection_id, feature_id, _if_match(if_match)
    )
    return Response(status_code=204)


# -- import -----------------------------------------------------------------------

_FILE_TYPES = editing.IMPORT_TYPES


@router.post(
    "/collections/{collectionId}/import",
    summary="Import a spreadsheet or GIS file (the report comes back row by row)",
    operation_id="importFeatures",
    description="The body is the file itself: CSV (UTF-8 or GBK), XLSX, GeoJSON or "
    "GeoPackage, named by Content-Type. The same checks as `geo-service import`. "
    "Rows with errors refuse the whole file (422, with the report) unless "
    "`skip_invalid=true`; nothing is ever half written. With `Prefer: respond-async` "
    "the answer is 201 at once with `Location: /jobs/{jobId}` (status and progress; "
    "the report at `/jobs/{jobId}/results`).",
    tags=["Editing"],
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in _FILE_TYPES
            },
        }
    },
    responses={
        200: {"description": "The report (and what was written)", **json_body("ImportReport")},
        201: {"description": "Queued as a job (`Prefer: respond-async`)"},
        **_WRITE_ERRORS,
        422: problem("Rows have errors; nothing written (the report is in `report`)"),
    },
)
async def import_items(
    request: Request,
    collection_id: CollectionId,
    who: PrincipalDep,
    crs: Annotated[
        str | None, Query(description="Coordinates in the file: wgs84, gcj02 or bd09")
    ] = None,
    dry_run: Annotated[bool, Query(description="Check only; write nothing")] = False,
    skip_invalid: Annotated[bool, Query(description="Write the valid rows only")] = False,
    filename: Annotated[
        str | None,
        Query(max_length=120, description="The file's name, shown in the report"),
    ] = None,
) -> Response:
    rt = request.app.state.runtime
    layer = rt.catalog.layer(collection_id)
    if not layer.is_facility:
        require_admin(who)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _FILE_TYPES:
        raise UnsupportedMediaType(
            "send the file as one of: " + ", ".join(sorted(set(_FILE_TYPES)))
        )
    raw = await request.body()
    spool = await run_in_threadpool(editing.spool_upload, rt, raw, media, filename)
    inputs = {
        "collection": layer.id,
        "crs": crs,
        "dry_run": dry_run,
        "skip_invalid": skip_invalid,
        "filename": filename,
        "spool": str(spool),
        "who": who.as_inputs(),
    }
    engine = request.app.state.jobs
    if "respond-async" in request.headers.get("prefer", ""):
        # The console follows a long import's progress at /jobs/{id} (under
        # /admin/api for its session) instead of holding the request open.
        record = await engine.queue("import", inputs, actor=who.actor)
        return job_created(request, record)
    # A job like any other: run by a worker process, never on this event loop.
    _record, output = await engine.run("import", inputs, actor=who.actor)
    return Response(output.content, media_type=MediaType.json)


# -- audit ------------------------------------------------------------------------

_DATE = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$"
#: A calendar date or an RFC 3339 date-time (as well as the pattern).
_DATE_FORMATS = {"oneOf": [{"format": "date"}, {"format": "date-time"}]}


@router.get(
    "/audit",
    summary="The audit trail (admin only)",
    operation_id="auditTrail",
    description="Who changed what, when, with the feature before and after. Newest first.",
    tags=["Editing"],
    response_class=Response,
    responses={
        200: json_body("AuditLog", headers={"Cache-Control": {"schema": {"type": "string"}}}),
        400: _WRITE_ERRORS[400],
        401: _WRITE_ERRORS[401],
        403: _WRITE_ERRORS[403],
    },
)
def audit(
    request: Request,
    who: PrincipalDep,
    town: Annotated[
        str | None, Query(pattern=r"^\d{9}$", description="Town code (before or after)")
    ] = None,
    user: Annotated[
        str | None, Query(max_length=64, description="Token name that made the change")
    ] = None,
    collection: Annotated[
        str | None,
        Query(max_length=64, description="Layer id", json_schema_extra=catalog_values("layers")),
    ] = None,
    feature: Annotated[str | None, Query(max_length=128, description="Feature id")] = None,
    since: Annotated[
        str | None,
        Query(
            pattern=_DATE,
            description="From this date/time (UTC)",
            json_schema_extra=_DATE_FORMATS,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            pattern=_DATE,
            description="Up to this date (whole day) or time",
            json_schema_extra=_DATE_FORMATS,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    require_admin(who)
    store: Store = request.app.state.runtime.store
    if collection is not None and collection not in request.app.state.runtime.catalog.layers:
        # A filter naming no layer is a bad parameter (400), not a missing resource.
        raise InvalidParameter(
            "collection",
            "unknown layer; known: " + ", ".join(request.app.state.runtime.catalog.layers),
        )
    if since is not None and len(since) == 10:
        _instant("since", since + "T00:00:00")  # a real calendar date?
    if until is not None and len(until) == 10:
        _instant("until", until + "T00:00:00")
    query = AuditQuery(
        layer_id=collection,
        feature_id=feature,
        town_code=town,
        actor=user,
        since=_instant("since", since),
        until=_instant("until", until),
        limit=limit,
        offset=offset,
    )
    records, total = store.audit_log(query, newest_first=True)
    for record in records:
        for key in ("before", "after"):
            record[key] = orjson.loads(record[key]) if record[key] else None
    body = {"records": records, "numberMatched": total, "numberReturned": len(records)}
    return Response(
        orjson.dumps(body), media_type=MediaType.json, headers={"Cache-Control": "no-store"}
    )


def _instant(name: str, value: str | None) -> str | None:
    """A date stays a date; a time becomes UTC in the stored form, so the two
    compare correctly as text."""
    if value is None or len(value) == 10:
        return value
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        # Year 1 east of Greenwich (or 9999 west of it) has no UTC form.
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError):
        raise InvalidParameter(name, f"{value!r} is not a valid date or time") from None
