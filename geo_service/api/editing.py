"""Writes in the style of OGC API - Features Part 4 (create, replace, update,
delete), the file import, and the audit trail. Every write needs a bearer
token; every change of an existing feature needs ``If-Match``."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from geo_service.api.media import MediaType
from geo_service.api.ogc import FEATURE_ID_PATTERN, CollectionId, FeatureId, _base
from geo_service.api.openapi import catalog_values, change_links, json_body, problem
from geo_service.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    PreconditionRequired,
    UnsupportedMediaType,
)
from geo_service.runtime import TownsCache
from geo_service.services.access import Principal, authenticate, authorize_change, require_admin
from geo_service.services.editing import merge_patch, prepare_feature, stored_as_geojson
from geo_service.services.importing import ImportPlan, apply_import, plan_import
from geo_service.sources.catalog import Layer
from geo_service.sources.crs import CoordinateSystem
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
        # Absent or empty: made from the name and the position.
        "id": {"type": ["string", "null"], "pattern": f"^({FEATURE_ID_PATTERN[1:-1]})?$"},
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
#: itself is read by ``authenticate``, which words every refusal (401).
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="`Authorization: Bearer TOKEN` (see `geo-service tokens add`)",
)


def principal(
    request: Request, _declared: Annotated[object, Security(_bearer)] = None
) -> Principal:
    return authenticate(request.app.state.runtime.store, request.headers.get("authorization"))


PrincipalDep = Annotated[Principal, Depends(principal)]


def _towns(request: Request) -> TownsCache:
    return request.app.state.runtime.towns  # built once in the app's lifespan


async def _json_body(request: Request, accepted: tuple[str, ...]) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise UnsupportedMediaType(
            f"send the body as {' or '.join(accepted)} (got {media or 'no Content-Type'})"
        )
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidParameter("body", f"not valid JSON ({error.msg})") from None
    if _has_nul(body):
        # No store keeps U+0000 in text (PostgreSQL refuses it outright).
        raise InvalidParameter("body", "text must not contain the NUL character (U+0000)")
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _if_match(value: str | None) -> str:
    if not value or not value.strip():
        raise PreconditionRequired(
            "send If-Match with the ETag you read (GET the feature first), so that "
            "nobody's change is overwritten unseen"
        )
    return value


def _authorizer(request: Request, who: Principal, layer: Layer):
    names = _towns(request).get().names

    def check(before: StoredFeature | None, after) -> None:
        authorize_change(who, layer, before, after, names)

    return check


def _feature_response(
    request: Request, feature: StoredFeature, status: int = 200, location: bool = False
) -> Response:
    body = stored_as_geojson(feature)
    href = f"{_base(request)}/collections/{feature.layer_id}/items/{feature.id}"
    body["links"] = [{"href": href, "rel": "self", "type": MediaType.geojson.value}]
    headers = {"ETag": feature.etag}
    if location:
        headers["Location"] = href
    return Response(
        orjson.dumps(body), status_code=status, media_type=MediaType.geojson, headers=headers
    )


_FEATURE_TYPES = (MediaType.geojson.value, MediaType.json.value)


@router.post(
    "/collections/{collection_id}/items",
    summary="Add a feature",
    operation_id="createFeature",
    description="Needs a token (an editor: inside their towns). Missing `updated_at`, "
    "`sample`, `source`, `town_code` (from the position) and `id` are filled in.",
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
    store: Store = request.app.state.runtime.store
    layer = request.app.state.runtime.catalog.layer(collection_id)
    body = await _json_body(request, _FEATURE_TYPES)
    feature = prepare_feature(request.app.state.runtime.catalog, layer, body, _towns(request).get())
    change = store.change(
        layer.id,
        feature.id,
        feature,
        actor=who.name,
        action="create",
        create=True,
        authorize=_authorizer(request, who, layer),
    )
    assert change.after is not None
    return _feature_response(request, change.after, 201, location=True)


async def _replace(
    request: Request,
    layer: Layer,
    feature_id: str,
    body: Any,
    who: Principal,
    if_match: str,
    action: str,
) -> Response:
    store: Store = request.app.state.runtime.store
    feature = prepare_feature(
        request.app.state.runtime.catalog, layer, body, _towns(request).get(), feature_id=feature_id
    )
    change = store.change(
        layer.id,
        feature_id,
        feature,
        actor=who.name,
        action=action,
        if_match=if_match,
        authorize=_authorizer(request, who, layer),
    )
    assert change.after is not None
    return _feature_response(request, change.after)


_CHANGE_ERRORS = {
    **_WRITE_ERRORS,
    412: problem("The feature changed since your If-Match version"),
    428: problem("If-Match is required"),
}


@router.put(
    "/collections/{collection_id}/items/{feature_id}",
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
    layer = request.app.state.runtime.catalog.layer(collection_id)
    tag = _if_match(if_match)
    body = await _json_body(request, _FEATURE_TYPES)
    return await _replace(request, layer, feature_id, body, who, tag, "replace")


@router.patch(
    "/collections/{collection_id}/items/{feature_id}",
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
    store: Store = request.app.state.runtime.store
    layer = request.app.state.runtime.catalog.layer(collection_id)
    tag = _if_match(if_match)
    patch = await _json_body(request, (MediaType.merge_patch.value, MediaType.json.value))
    if not isinstance(patch, dict):
        raise InvalidParameter("body", "a merge patch must be a JSON object")
    current = store.get(layer.id, feature_id)
    # Patched onto the version read now; the store re-checks If-Match when it
    # writes, so a change landing in between still answers 412.
    merged = merge_patch(stored_as_geojson(current), patch)
    return await _replace(request, layer, feature_id, merged, who, tag, "patch")


@router.delete(
    "/collections/{collection_id}/items/{feature_id}",
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
    store: Store = request.app.state.runtime.store
    layer = request.app.state.runtime.catalog.layer(collection_id)
    tag = _if_match(if_match)
    if not layer.is_facility:
        # Facilities point at their town: a town (or the district) goes away
        # only when a new set of boundaries is imported, checked as a whole.
        raise Conflict(
            f"{layer.id} features are not deleted one by one; import a new set of "
            "boundaries instead (geo-service import FILE --layer towns)"
        )
    store.change(
        layer.id,
        feature_id,
        None,
        actor=who.name,
        action="delete",
        if_match=tag,
        authorize=_authorizer(request, who, layer),
    )
    return Response(status_code=204)


# -- import -----------------------------------------------------------------------

_FILE_TYPES = {
    "text/csv": ".csv",
    "text/plain": ".csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    MediaType.geojson.value: ".geojson",
    MediaType.json.value: ".geojson",
    "application/geopackage+sqlite3": ".gpkg",
}


def import_report(plan: ImportPlan, written: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "collection": plan.layer_id,
        "source": plan.source,
        "crs": plan.crs.value if plan.crs else None,
        "counts": plan.counts(),
        "notes": plan.notes,
        "rows": [
            {
                "line": row.line,
                "status": row.status.value,
                "id": row.id,
                "name": row.name,
                "action": row.action or None,
                "reasons": row.reasons,
                "geocoded": row.geocoded,
            }
            for row in plan.rows
        ],
        "written": written,
    }


def _limit_to_towns(
    plan: ImportPlan, who: Principal, layer: Layer, store: Store, names: dict[str, str]
) -> None:
    """An editor's import: the rows the same rule as a single edit refuses
    (``authorize_change``) become errors, row by row."""
    if who.is_admin:
        return
    rows = {row.line: row for row in plan.rows}
    for line, feature in list(plan.features.items()):
        try:
            stored = store.get(plan.layer_id, feature.id)
        except LookupError:
            stored = None
        try:
            authorize_change(who, layer, stored, feature, names)
        except Forbidden as refused:
            rows[line].fail(refused.detail)
            rows[line].action = ""
            del plan.features[line]


@router.post(
    "/collections/{collection_id}/import",
    summary="Import a spreadsheet or GIS file (the report comes back row by row)",
    operation_id="importFeatures",
    description="The body is the file itself: CSV (UTF-8 or GBK), XLSX, GeoJSON or "
    "GeoPackage, named by Content-Type. The same checks as `geo-service import`. "
    "Rows with errors refuse the whole file (422, with the report) unless "
    "`skip_invalid=true`; nothing is ever half written.",
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
    store: Store = request.app.state.runtime.store
    catalog = request.app.state.runtime.catalog
    layer = catalog.layer(collection_id)
    if not layer.is_facility:
        require_admin(who)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _FILE_TYPES:
        raise UnsupportedMediaType(
            "send the file as one of: " + ", ".join(sorted(set(_FILE_TYPES)))
        )
    coordinate_system = CoordinateSystem.parse(crs, "crs") if crs else None
    stem = re.sub(r"[^\w.-]+", "_", FilePath(filename or "upload").stem)[:80] or "upload"
    raw = await request.body()
    with tempfile.TemporaryDirectory(prefix="gs-import-") as folder:
        path = FilePath(folder) / f"{stem}{_FILE_TYPES[media]}"
        path.write_bytes(raw)
        plan = plan_import(
            path,
            layer.id,
            catalog,
            store,
            crs=coordinate_system,
            actor=who.name,
            geocoder=request.app.state.runtime.geocoders.get() if layer.is_facility else None,
        )
    _limit_to_towns(plan, who, layer, store, _towns(request).get().names)
    if dry_run:
        return Response(orjson.dumps(import_report(plan, None)), media_type=MediaType.json)
    results = apply_import(plan, store, skip_invalid=skip_invalid, actor=who.name)
    written = {
        layer_id: {
            "inserted": len(result.inserted),
            "updated": len(result.updated),
            "unchanged": len(result.unchanged),
        }
        for layer_id, result in results.items()
    }
    return Response(orjson.dumps(import_report(plan, written)), media_type=MediaType.json)


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
