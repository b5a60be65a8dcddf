"""Replace the approximate town boundaries with official ones, and move every
facility to the town its position now falls in (each change reported)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from shapely.geometry import mapping as to_geojson

from geo_service.errors import InvalidFeature, InvalidParameter
from geo_service.sources.catalog import Catalog, ValidFeature, printable
from geo_service.sources.tables import DEFAULT_LIMITS, ImportLimits, read_table
from geo_service.sources.towns import TownIndex
from geo_service.store import Store

__all__ = ["plan_towns_import"]


def plan_towns_import(
    path: Path,
    catalog: Catalog,
    store: Store,
    *,
    actor: str = "import",
    today: dt.date | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
):
    from geo_service.sources.importing import (
        ImportPlan,
        RowReport,
        RowStatus,
        file_label,
        fold_cell,
        load_header_aliases,
        normalise_header,
        town_of_position,
    )

    aliases = load_header_aliases(catalog.directory / "import_headers.toml")
    table = read_table(path, set(aliases), normalise_header, limits)
    mapping = {h: aliases.get(normalise_header(h)) for h in table.headers}
    code_column = next((h for h, p in mapping.items() if p in {"town", "id"}), None)
    name_column = next((h for h, p in mapping.items() if p == "name"), None)
    if code_column is None or name_column is None:
        raise InvalidParameter(
            "file",
            f"{table.name}: a town file needs a 9-digit code column (镇街代码, town_code, id) "
            f"and a name column (名称, name); it has {', '.join(table.headers)}",
        )
    today_text = (today or dt.date.today()).isoformat()
    source_name = file_label(table.name)
    population_column = next((h for h, p in mapping.items() if p == "population"), None)
    reports, features, seen = [], {}, {}
    for row in table.rows:
        report = RowReport(line=row.line)
        reports.append(report)
        code = str(row.values.get(code_column) or "").strip().split(".")[0]
        name, folded = fold_cell(str(row.values.get(name_column) or "").strip())
        if folded:
            report.warn("name: line breaks or tabs in the cell were folded to spaces")
        report.id, report.name = printable(code), printable(name)
        if row.geometry is None or row.geometry.geom_type not in {"Polygon", "MultiPolygon"}:
            report.fail("not a polygon")
            continue
        props = {
            "id": code,
            "name": name,
            "kind": "town" if name.endswith("镇") else "subdistrict",
            "approximate": False,
            # Public text: who imported stays in the audit trail, never on the map.
            "boundary_source": f"{source_name} (imported on {today_text})",
            "source": f"imported from {source_name} on {today_text}",
            "updated_at": today_text,
        }
        if population_column and row.values.get(population_column) not in (None, ""):
            try:
                props["population"] = int(float(str(row.values[population_column])))
            except ValueError:
                report.fail(f"population {row.values[population_column]!r} is not a number")
                continue
        if code in seen:
            report.fail(f"town code {printable(code)} is already used by line {seen[code]}")
            continue
        seen[code] = row.line
        candidate = {
            "type": "Feature",
            "id": code,
            "geometry": to_geojson(row.geometry),
            "properties": props,
        }
        try:
            features[row.line] = catalog.validate_feature("towns", candidate)
        except InvalidFeature as error:
            for problem in error.problems:
                report.fail(f"{problem.field}: {problem.message}")
    stored_codes = {town.id for town in store.all_features("towns")}
    new_codes = {f.id for f in features.values()}
    notes = [f"read {len(table.rows)} town boundaries from {table.name}"]
    missing = sorted(stored_codes - new_codes)
    if missing:
        # Facilities point at every town: a partial file would orphan them.
        reports.append(
            RowReport(
                line=0,
                status=RowStatus.error,
                reasons=[f"the file lacks towns {', '.join(missing)}: give all of them"],
            )
        )
    plan = ImportPlan("towns", table.name, None, reports, features, notes)
    if plan.errors:
        return plan
    index = TownIndex((f.id, f.geometry) for f in features.values())
    for layer in catalog.facility_layers:
        moved = []
        for site in store.all_features(layer.id):
            old = site.properties.get("town_code")
            # The town rule of every write; these boundaries are official, so
            # exact: a site on a shared edge keeps its town, any other goes
            # to the polygon that holds it.
            code = town_of_position(
                index,
                site.geometry.x,
                site.geometry.y,
                old,
                approximate=False,
                tolerance_m=catalog.limits.town_tolerance_m,
            ).code
            if code is None:
                notes.append(f"{layer.id}/{site.id}: outside every new boundary; kept {old}")
            elif code != old:
                notes.append(f"{layer.id}/{site.id} {site.properties.get('name')}: {old} → {code}")
                props = dict(site.properties, town_code=code)
                moved.append(ValidFeature(site.id, props, site.geometry))
        if moved:
            plan.extra_batches[layer.id] = moved
    changed = sum(len(v) for v in plan.extra_batches.values())
    notes.append(f"{changed} facilities change town")
    return plan
