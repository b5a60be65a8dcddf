"""Import a file into a layer: the store's towns and sites handed to the
planner (``sources.importing``, or ``town_import`` for boundaries), and the
plan written in one transaction.

Planning reads and checks everything and writes nothing; ``apply_import``
writes the valid features all at once, and refuses when any row has an error
unless asked to skip those rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from geo_service.errors import InvalidParameter
from geo_service.sources.catalog import Catalog
from geo_service.sources.crs import CoordinateSystem
from geo_service.sources.importing import ImportPlan, ImportRefused, plan_rows
from geo_service.sources.tables import DEFAULT_LIMITS, ImportLimits, SourceRow
from geo_service.store import Store, WriteResult

__all__ = ["BULK_IMPORT_ROWS", "apply_import", "plan_import"]

#: Imports of at least this many new sites, and nothing else, are bulk loads.
BULK_IMPORT_ROWS = 5_000
BULK_CHUNK = 20_000


def plan_import(
    path: Path,
    layer_id: str,
    catalog: Catalog,
    store: Store,
    *,
    crs: CoordinateSystem | None = None,
    actor: str = "import",
    today: dt.date | None = None,
    progress: Callable[[Iterable[SourceRow]], Iterable[SourceRow]] | None = None,
    geocoder: Any = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    kind: str | None = None,
) -> ImportPlan:
    """Read and check ``path`` for ``layer_id`` against what the store holds
    now; nothing is written. Town boundaries and context layers (``kind``:
    which of its kinds the file holds) go to their own planners."""
    layer = catalog.layer(layer_id)
    if layer.is_context:
        from geo_service.services.context_import import plan_context_import

        return plan_context_import(
            path, layer, catalog, store, kind=kind, today=today, limits=limits
        )
    if kind is not None:
        raise InvalidParameter("kind", f"--kind is for context layers, not {layer.id}")
    if layer.id == "towns":
        from geo_service.services.town_import import plan_towns_import

        return plan_towns_import(path, catalog, store, actor=actor, today=today, limits=limits)
    return plan_rows(
        path,
        layer.id,
        catalog,
        towns=store.all_features("towns") if layer.is_facility else [],
        stored=store.all_features(layer.id) if layer.is_facility else [],
        retired=store.audited_ids(layer.id) if layer.is_facility else (),
        crs=crs,
        actor=actor,
        today=today,
        progress=progress,
        geocoder=geocoder,
        limits=limits,
    )


def apply_import(
    plan: ImportPlan,
    store: Store,
    *,
    skip_invalid: bool = False,
    actor: str = "import",
    authorize: Callable[[Any, Any], None] | None = None,
    bulk_from: int = BULK_IMPORT_ROWS,
) -> dict[str, WriteResult]:
    """Write the plan's valid features in one transaction (with any town
    changes it carries); refuse if rows have errors and skipping was not asked.
    ``authorize(before, new)`` runs inside that transaction for each feature
    (an editor's towns, against the rows as they are then). A plan of at
    least ``bulk_from`` rows that only inserts new sites goes through the
    store's bulk path (``Store.load_layers``)."""
    # Town boundaries are all or nothing even with --skip-invalid: facilities
    # point at every town, and a partial set would orphan them.
    if plan.errors and (not skip_invalid or plan.layer_id == "towns"):
        raise ImportRefused(plan)
    if plan.replace_kind is not None:
        # The file is the office's whole set of that kind: what it no longer
        # holds goes, the layer's other kinds are written back as they are.
        batch = list(plan.features.values()) + plan.kept
        return store.write_layers(
            {plan.layer_id: batch}, actor=actor, action="import", replace=True, authorize=authorize
        )
    features = list(plan.features.values())
    inserts_only = all(row.action == "insert" for row in plan.rows if row.line in plan.features)
    if len(features) >= bulk_from and inserts_only and not plan.extra_batches and plan.sha256:
        # Thousands of new sites (a county's first file): the bulk path, one
        # audit record "load" for them all instead of one per row. The row
        # report is the plan's either way.
        chunks = (features[i : i + BULK_CHUNK] for i in range(0, len(features), BULK_CHUNK))
        return store.load_layers(
            {plan.layer_id: chunks},
            actor=actor,
            source=plan.source,
            sha256=plan.sha256,
            action="import",
            authorize=authorize,
        )
    batches = {plan.layer_id: features, **plan.extra_batches}
    return store.write_layers(batches, actor=actor, action="import", authorize=authorize)
