"""A site's history from the audit trail, and putting a site back to one of
its versions.

Every change the store makes is an audit record holding the feature before
and after (``Store.change``), so a site's timeline is its records, newest
first, each with the fields that changed. A *version* is named by the number
(``seq``) of the audit record that produced it; restoring to it writes that
version again through ``Store.restore_version``, so the restore is itself a
change: checked for the principal's towns and the ``If-Match`` ETag, and
audited (action ``revert``, or ``restore`` for a deleted site).
"""

from __future__ import annotations

from typing import Any

import orjson
import pyproj
import shapely

from geo_service.errors import FeatureNotFound, Forbidden, PreconditionRequired
from geo_service.runtime import Runtime
from geo_service.services.access import Principal, authorize_change
from geo_service.sources.catalog import Layer, ValidFeature
from geo_service.store import StoredFeature

__all__ = ["field_changes", "restore_version", "site_history"]

_GEOD = pyproj.Geod(ellps="WGS84")


def field_changes(
    layer: Layer, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], float | None]:
    """The properties that differ between two GeoJSON versions (``before`` ->
    ``after``, None for a value that is absent), in catalog order, and how
    far the geometry moved in metres (geodesic, between representative
    points; None when either side has no geometry or it did not change).
    A creation lists every field it set; a deletion every field it removed."""
    old = (before or {}).get("properties") or {}
    new = (after or {}).get("properties") or {}
    names = [name for name in layer.properties if name in old or name in new]
    names += sorted((set(old) | set(new)) - set(names))
    changes = [
        {"field": name, "before": old.get(name), "after": new.get(name)}
        for name in names
        if old.get(name) != new.get(name)
    ]
    moved = None
    if before and after and before.get("geometry") and after.get("geometry"):
        a = shapely.geometry.shape(before["geometry"])
        b = shapely.geometry.shape(after["geometry"])
        if not a.equals_exact(b, 0):
            pa, pb = a.representative_point(), b.representative_point()
            _, _, metres = _GEOD.inv(pa.x, pa.y, pb.x, pb.y)
            moved = round(float(metres), 1)
            changes.append(
                {"field": "geometry", "before": before["geometry"], "after": after["geometry"]}
            )
    return changes, moved


def _records(rt: Runtime, layer_id: str, feature_id: str) -> list[dict[str, Any]]:
    # feature_records: a site a bulk load brought has its load as first version.
    return rt.store.feature_records(layer_id, feature_id)[::-1]


def _check_may_read(who: Principal, layer: Layer, town_code: Any, feature_id: str) -> None:
    """An editor reads the history of their towns' facilities only (the
    site's town now, or when it was deleted); an admin reads every history."""
    if who.is_admin:
        return
    if not layer.is_facility:
        raise Forbidden(f"only an admin may read the history of {layer.id}")
    if town_code not in who.towns:
        raise Forbidden(f"{feature_id} is in {town_code}, outside the towns this token may read")


def site_history(rt: Runtime, who: Principal, layer_id: str, feature_id: str) -> dict[str, Any]:
    """One site's timeline, newest first: per change its version (the audit
    record's ``seq``), when (UTC), who, the action, the town, and the fields
    that changed (before -> after; a move in metres). ``FeatureNotFound``
    when the trail has never seen the site; ``Forbidden`` outside an editor's towns.

    The newest version is the site as it is now (``current`` is false once
    the site is deleted, when its last record is the deletion)."""
    layer = rt.catalog.layer(layer_id)
    records = _records(rt, layer.id, feature_id)
    if not records:
        raise FeatureNotFound(layer.id, feature_id)
    latest = records[0]
    _check_may_read(who, layer, latest["town_code"], feature_id)
    try:
        live = rt.store.get(layer.id, feature_id)
    except FeatureNotFound:
        live = None
    timeline = []
    for record in records:
        before = orjson.loads(record["before"]) if record["before"] else None
        after = orjson.loads(record["after"]) if record["after"] else None
        changes, moved = field_changes(layer, before, after)
        timeline.append(
            {
                "version": int(record["seq"]),
                "at": record["at"],
                "actor": record["actor"],
                "action": record["action"],
                "town_code": record["town_code"],
                "previous_town_code": record["previous_town_code"],
                "changes": changes,
                "moved_m": moved,
                # A deletion holds no site to go back to.
                "restorable": after is not None,
            }
        )
    names = rt.towns.get().names
    subject = live.properties if live else (orjson.loads(latest["before"]) or {})["properties"]
    return {
        "collection": layer.id,
        "id": feature_id,
        "name": subject.get("name"),
        "town_code": latest["town_code"],
        "town_name": names.get(latest["town_code"]),
        "deleted": live is None,
        "etag": live.etag if live else None,
        "versions": timeline,
    }


def restore_version(
    rt: Runtime,
    who: Principal,
    layer_id: str,
    feature_id: str,
    version: int,
    if_match: str | None,
) -> tuple[StoredFeature, bool]:
    """Put a site back to ``version`` (an audit record's ``seq``), exactly as
    that change left it. An existing site needs ``if_match`` (its current
    ETag, ``*`` for any); a deleted one comes back without. An editor only
    within their towns, before and after. Returns the site as stored now and
    whether anything was written (False: it already was that version)."""
    layer = rt.catalog.layer(layer_id)
    records = _records(rt, layer.id, feature_id)
    if not records:
        raise FeatureNotFound(layer.id, feature_id)
    _check_may_read(who, layer, records[0]["town_code"], feature_id)
    if records[0]["after"] is not None and if_match is None:
        raise PreconditionRequired(
            "send If-Match with the site's current ETag (read its history or the site "
            "first), so that nobody's change is overwritten unseen"
        )
    names = rt.towns.get().names

    def check(before: StoredFeature | None, after: ValidFeature | None) -> None:
        authorize_change(who, layer, before, after, names)

    change = rt.store.restore_version(
        layer.id,
        feature_id,
        version,
        actor=who.actor,  # "user:NAME" for a console person, as every other change
        if_match=if_match,
        authorize=check,
    )
    assert change.after is not None
    return change.after, change.audit_seq is not None
