"""Edits of single features through the API: the same checks as an import.

A request body becomes a ``ValidFeature`` here (the catalog's validation,
plus what the service fills in itself); ``Store.change`` then writes it in
one transaction with its audit record. Who may write is ``access``'s concern.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import Conflict, FieldProblem, Forbidden, InvalidFeature, InvalidParameter
from geo_service.runtime import Runtime
from geo_service.services.access import Principal, authorize_change, require_admin
from geo_service.services.import_reasons import reasons_zh
from geo_service.services.importing import apply_import, plan_import
from geo_service.services.samples import probable_samples
from geo_service.sources.catalog import Catalog, Layer, ValidFeature, printable
from geo_service.sources.crs import CoordinateSystem
from geo_service.sources.importing import (
    ImportPlan,
    ImportRefused,
    feature_id_for,
    town_of_position,
)
from geo_service.sources.samples import SampleSite, same_place_warning
from geo_service.sources.towns import Towns
from geo_service.store import StoredFeature

__all__ = [
    "IMPORT_TYPES",
    "Created",
    "create_feature",
    "delete_feature",
    "import_file",
    "import_report",
    "import_spooled",
    "merge_patch",
    "patch_feature",
    "prepare_feature",
    "replace_feature",
    "spool_upload",
]


def prepare_feature(
    catalog: Catalog,
    layer: Layer,
    body: Any,
    towns: Towns,
    *,
    feature_id: str | None = None,
    today: dt.date | None = None,
) -> ValidFeature:
    """A GeoJSON Feature from a client, validated against the catalog.

    The service fills in, for facilities: ``updated_at`` (today: the date of
    the last edit), ``sample`` (false: an edit is real data), a default
    ``source``, the id when none is given (stable for a name at a place, so a
    repeated POST is refused as a duplicate rather than stored twice) and
    ``town_code`` by the town rule (``town_of_position``): the position
    decides, a declared town being kept only within the tolerance of the
    approximate boundaries; a point outside the district is refused, for
    admins too. Whether the writer may write in that town is for
    ``authorize_change`` to say, inside the write transaction.
    """
    if not isinstance(body, dict) or body.get("type") != "Feature":
        raise InvalidFeature(None, [FieldProblem("type", "must be a GeoJSON Feature object")])
    props = body.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidFeature(None, [FieldProblem("properties", "must be an object")])
    props = dict(props)
    given_id = body.get("id")
    if feature_id is not None:
        for claimed in (given_id, props.get("id")):
            if claimed not in (None, "") and str(claimed) != feature_id:
                raise InvalidFeature(
                    feature_id,
                    [FieldProblem("id", f"the body names {claimed!r} but the URL {feature_id!r}")],
                )
        props["id"] = feature_id
    elif props.get("id") in (None, "") and given_id not in (None, ""):
        props["id"] = given_id
    today_text = (today or dt.date.today()).isoformat()
    point = _point(body.get("geometry"))
    if layer.is_facility:
        props["updated_at"] = today_text
        props.setdefault("sample", False)
        if props.get("source") in (None, ""):
            props["source"] = f"entered through the editing API on {today_text}"
        if point is not None and props.get("id") in (None, "") and props.get("name"):
            props["id"] = feature_id_for(layer, str(props["name"]), point.x, point.y)
        declared = _declared_town(props.get("town_code"))
        if point is not None and (declared is None or declared in towns.index.codes):
            # An unknown or malformed code is left for the catalog to refuse.
            choice = town_of_position(
                towns.index,
                point.x,
                point.y,
                declared,
                approximate=towns.approximate,
                tolerance_m=catalog.limits.town_tolerance_m,
            )
            if choice.code is None:
                shown = printable(str(props["id"])) if props.get("id") else None
                raise InvalidFeature(
                    shown, [FieldProblem("geometry", choice.outside(point.x, point.y))]
                )
            props["town_code"] = choice.code
    candidate = {**body, "id": props.get("id"), "properties": props}
    return catalog.validate_feature(layer.id, candidate, town_codes=set(towns.index.codes))


def _declared_town(value: Any) -> str | None:
    """A declared ``town_code`` as text (JSON may send it as a number), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(value)  # never a town code: refused by the catalog


def _point(geometry: Any) -> BaseGeometry | None:
    """The geometry as a valid shapely point, or None (validation reports why)."""
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        return None
    coords = geometry.get("coordinates")
    if (
        not isinstance(coords, list)
        or len(coords) < 2
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords[:2])
    ):
        return None
    lon, lat = float(coords[0]), float(coords[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return None
    return shapely.Point(lon, lat)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge key by key, ``null`` removes,
    anything else (arrays included) replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- imports ------------------------------------------------------------------------

#: The file types an import takes, by media type, with the suffix the readers go by.
IMPORT_TYPES = {
    "text/csv": ".csv",
    "text/plain": ".csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/geo+json": ".geojson",
    "application/json": ".geojson",
    "application/geopackage+sqlite3": ".gpkg",
}


def spool_upload(rt: Runtime, content: bytes, media: str, filename: str | None) -> Path:
    """Keep an uploaded file where the job that imports it will read it. The
    name keeps the client's stem (shown in the report) but never its folders."""
    stem = re.sub(r"[^\w.-]+", "_", Path(filename or "upload").stem)[:80] or "upload"
    folder = Path(rt.settings.spool_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}" / f"{stem}{IMPORT_TYPES[media]}"
    path.parent.mkdir()
    path.write_bytes(content)
    return path


def import_report(plan: ImportPlan, written: dict[str, Any] | None) -> dict[str, Any]:
    """The row-by-row report, as JSON data (the API, the console and jobs)."""
    return {
        "collection": plan.layer_id,
        "source": plan.source,
        "crs": plan.crs.value if plan.crs else None,
        "counts": plan.counts(),
        # Rows per property filled with a default (each row also says so).
        "defaults": plan.default_counts(),
        "notes": plan.notes,
        "summary": plan.summary(),
        "rows": [
            {
                "line": row.line,
                "status": row.status.value,
                "id": row.id,
                "name": row.name,
                "action": row.action or None,
                "reasons": row.reasons,
                # The same reasons for the office console, in Chinese.
                "reasons_zh": reasons_zh(row.reasons),
                "geocoded": row.geocoded,
                "defaults": row.defaults,
                "same_as_samples": row.same_as_samples,
            }
            for row in plan.rows
        ],
        "written": written,
    }


def _refuse_outside_towns(plan: ImportPlan, who: Principal, rt: Runtime) -> None:
    """An editor's rows that the single-edit rule refuses become errors, row by
    row, in the report (the same rule runs again inside the write transaction)."""
    if who.is_admin:
        return
    layer = rt.catalog.layer(plan.layer_id)
    names = rt.towns.get().names
    rows = {row.line: row for row in plan.rows}
    for line, feature in list(plan.features.items()):
        try:
            stored = rt.store.get(plan.layer_id, feature.id)
        except LookupError:
            stored = None
        try:
            authorize_change(who, layer, stored, feature, names)
        except Forbidden as refused:
            rows[line].fail(refused.detail)
            rows[line].action = ""
            del plan.features[line]


def import_file(
    rt: Runtime,
    who: Principal,
    layer_id: str,
    path: Path,
    *,
    crs: CoordinateSystem | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Check a file row by row and, unless ``dry_run``, write it all or nothing.

    An editor imports facilities of their towns only: rows elsewhere are
    errors in the report, and the towns are checked again inside the write
    transaction against the rows as they are then (a site moved meanwhile).
    ``ImportRefused`` (rows with errors) carries the report as ``report``."""
    layer = rt.catalog.layer(layer_id)
    if not layer.is_facility:
        require_admin(who)

    def counted(rows):
        rows = list(rows)
        for number, row in enumerate(rows, start=1):
            if progress is not None and number % 200 == 0:
                progress(0.9 * number / len(rows))
            yield row

    plan = plan_import(
        path,
        layer.id,
        rt.catalog,
        rt.store,
        crs=crs,
        actor=who.actor,
        progress=counted,
        geocoder=rt.geocoders.get() if layer.is_facility else None,
        limits=rt.settings.import_limits(),
    )
    _refuse_outside_towns(plan, who, rt)
    if dry_run:
        return import_report(plan, None)
    names = rt.towns.get().names

    def check(before: StoredFeature | None, after: ValidFeature | None) -> None:
        authorize_change(who, rt.catalog.layer(layer_id), before, after, names)

    try:
        results = apply_import(
            plan,
            rt.store,
            skip_invalid=skip_invalid,
            actor=who.actor,
            authorize=None if who.is_admin else check,
        )
    except ImportRefused as refused:
        refused.report = import_report(plan, None)
        raise
    written = {
        layer_id: {
            "inserted": len(result.inserted),
            "updated": len(result.updated),
            "unchanged": len(result.unchanged),
        }
        for layer_id, result in results.items()
    }
    return import_report(plan, written)


def import_spooled(
    rt: Runtime, inputs: dict[str, Any], progress: Callable[[float], None]
) -> dict[str, Any]:
    """The ``import`` process: a spooled upload imported for the principal who
    sent it; the upload is removed afterwards, whatever happened."""
    path = Path(inputs["spool"])
    who = Principal.from_inputs(inputs["who"])
    try:
        return import_file(
            rt,
            who,
            inputs["collection"],
            path,
            crs=CoordinateSystem(inputs["crs"]) if inputs.get("crs") else None,
            dry_run=inputs["dry_run"],
            skip_invalid=inputs["skip_invalid"],
            progress=progress,
        )
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# -- single edits -------------------------------------------------------------------


def _authorizer(rt: Runtime, who: Principal, layer: Layer):
    names = rt.towns.get().names

    def check(before: StoredFeature | None, after: ValidFeature | None) -> None:
        authorize_change(who, layer, before, after, names)

    return check


@dataclass
class Created:
    """A feature just created, and what the writer should know about it."""

    feature: StoredFeature
    #: Sample sites it is probably the same place as (a warning, not a refusal).
    same_as_samples: list[SampleSite] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [same_place_warning(sample) for sample in self.same_as_samples]


def create_feature(rt: Runtime, who: Principal, layer_id: str, body: Any) -> Created:
    """A new feature from a client's GeoJSON; ``Conflict`` if its id exists.
    The answer names the sample sites it probably replaces."""
    layer = rt.catalog.layer(layer_id)
    feature = prepare_feature(rt.catalog, layer, body, rt.towns.get())
    change = rt.store.change(
        layer.id,
        feature.id,
        feature,
        actor=who.actor,
        action="create",
        create=True,
        authorize=_authorizer(rt, who, layer),
    )
    assert change.after is not None
    return Created(change.after, probable_samples(rt.store, layer, feature))


def replace_feature(
    rt: Runtime,
    who: Principal,
    layer_id: str,
    feature_id: str,
    body: Any,
    if_match: str,
    *,
    action: str = "replace",
) -> StoredFeature:
    """The feature as the client sends it whole, if it is still at ``if_match``."""
    layer = rt.catalog.layer(layer_id)
    feature = prepare_feature(rt.catalog, layer, body, rt.towns.get(), feature_id=feature_id)
    change = rt.store.change(
        layer.id,
        feature_id,
        feature,
        actor=who.actor,
        action=action,
        if_match=if_match,
        authorize=_authorizer(rt, who, layer),
    )
    assert change.after is not None
    return change.after


def patch_feature(
    rt: Runtime, who: Principal, layer_id: str, feature_id: str, patch: Any, if_match: str
) -> StoredFeature:
    """A JSON Merge Patch applied to the stored feature, if still at ``if_match``."""
    if not isinstance(patch, dict):
        raise InvalidParameter("body", "a merge patch must be a JSON object")
    current = rt.store.get(layer_id, feature_id)
    # Patched onto the version read now; the store re-checks If-Match when it
    # writes, so a change landing in between is still refused.
    merged = merge_patch(current.geojson(), patch)
    return replace_feature(rt, who, layer_id, feature_id, merged, if_match, action="patch")


def delete_feature(
    rt: Runtime, who: Principal, layer_id: str, feature_id: str, if_match: str
) -> None:
    """Soft-delete a facility (restorable from the audit trail)."""
    layer = rt.catalog.layer(layer_id)
    if not layer.is_facility:
        # Facilities point at their town: a town (or the district) goes away
        # only when a new set of boundaries is imported, checked as a whole.
        raise Conflict(
            f"{layer.id} features are not deleted one by one; import a new set of "
            "boundaries instead (geo-service import FILE --layer towns)"
        )
    rt.store.change(
        layer.id,
        feature_id,
        None,
        actor=who.actor,
        action="delete",
        if_match=if_match,
        authorize=_authorizer(rt, who, layer),
    )
