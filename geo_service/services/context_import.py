"""Import the office's own roads, water or landmarks into the context layer.

A file holds one kind (given with ``--kind``, or a kind column): it replaces
the stored features of that kind, all or nothing, with every row reported.
The file must say its coordinate system (a Shapefile's ``.prj``, a
GeoPackage's SRS; GeoJSON is WGS-84 by definition); it is reprojected to
WGS-84, and a file whose features then fall far from the district is
refused as a wrong CRS rather than drawn in another province.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import mapping as to_geojson

from geo_service.errors import InvalidFeature, InvalidParameter
from geo_service.sources.catalog import Catalog, Layer, ValidFeature, printable
from geo_service.sources.tables import DEFAULT_LIMITS, SPATIAL, ImportLimits, read_table
from geo_service.store import Store

__all__ = ["DISTRICT_MARGIN_DEG", "plan_context_import"]

#: How far outside the district's bounding box a context feature may reach
#: (about 20 km): roads and rivers run on past the boundary, but a feature
#: further off means the file's coordinate system is wrong.
DISTRICT_MARGIN_DEG = 0.2


def plan_context_import(
    path: Path,
    layer: Layer,
    catalog: Catalog,
    store: Store,
    *,
    kind: str | None = None,
    today: dt.date | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
):
    from geo_service.sources.importing import (
        ImportPlan,
        RowReport,
        file_label,
        fold_cell,
        load_header_aliases,
        normalise_header,
    )

    if path.suffix.lower() not in SPATIAL:
        raise InvalidParameter(
            "file",
            f"{path.name}：底图要素须为 GeoPackage、Shapefile 或 GeoJSON 文件 "
            "(context layers come from a GeoPackage, Shapefile or GeoJSON file)",
        )
    if kind is not None and kind not in layer.kinds:
        raise InvalidParameter("kind", f"{kind!r} is not a kind of {layer.id}: {_kinds(layer)}")
    table = read_table(path, set(), normalise_header, limits)
    if table.crs is None:
        raise InvalidParameter(
            "file",
            f"{path.name}：文件没有坐标系（Shapefile 缺少 .prj）；请在 GIS 软件中为其指定坐标系后"
            "重新导出 (the file does not say its coordinate system, e.g. a Shapefile without "
            "its .prj: set it in your GIS software and export again)",
        )
    aliases = load_header_aliases(catalog.directory / "import_headers.toml")
    mapping = {h: aliases.get(normalise_header(h)) for h in table.headers}
    name_column = next((h for h, p in mapping.items() if p == "name"), None)
    kind_column = next((h for h, p in mapping.items() if p == "kind"), None)
    if kind is None and kind_column is None:
        raise InvalidParameter(
            "kind",
            f"{table.name}: say which kind the file holds ({_kinds(layer)}), with --kind "
            "or a kind column (类型)",
        )
    reach = _district_reach(store)
    today_text = (today or dt.date.today()).isoformat()
    source = f"imported from {file_label(table.name)} on {today_text}"
    stored = {f.id: f for f in store.all_features(layer.id)}
    labels = {label.zh: key for key, label in layer.kinds.items()} | {k: k for k in layer.kinds}
    reports, features, seen, far = [], {}, {}, 0
    kinds_given: set[str] = set()
    for row in table.rows:
        report = RowReport(line=row.line)
        reports.append(report)
        name, folded = fold_cell(str(row.values.get(name_column) or "").strip())
        if folded:
            report.warn("name: line breaks or tabs in the cell were folded to spaces")
        report.name = printable(name) if name else None
        row_kind = kind
        if kind_column is not None and row.values.get(kind_column) not in (None, ""):
            given = str(row.values[kind_column]).strip()
            row_kind = labels.get(given)
            if row_kind is None or (kind is not None and row_kind != kind):
                report.fail(f"kind {printable(given)!r} is not {kind or _kinds(layer)}")
                continue
        if row_kind is None:
            report.fail(f"no kind: give one of {_kinds(layer)}")
            continue
        kinds_given.add(row_kind)
        if row.geometry is None or row.geometry.is_empty:
            report.fail("no geometry")
            continue
        if row_kind == "landmark" and not name:
            report.fail("a landmark needs a name: it is drawn as its label (名称)")
            continue
        if reach is not None and not reach.intersects(row.geometry):
            far += 1
            report.fail(
                "lies far outside the district: the file's coordinate system "
                f"({printable(table.crs)}) is probably wrong"
            )
            continue
        feature_id = _feature_id(row_kind, name, row.geometry)
        report.id = feature_id
        if feature_id in seen:
            report.fail(f"the same {row_kind} as line {seen[feature_id]}")
            continue
        seen[feature_id] = row.line
        props: dict[str, Any] = {
            "id": feature_id,
            "name": name or None,
            "kind": row_kind,
            "source": source,
            "updated_at": today_text,
        }
        if (before := stored.get(feature_id)) is not None:
            # Same id means same kind, name and shape: keep when it came.
            props["source"] = before.properties.get("source", source)
            props["updated_at"] = before.properties.get("updated_at", today_text)
        candidate = {"type": "Feature", "geometry": to_geojson(row.geometry), "properties": props}
        try:
            features[row.line] = catalog.validate_feature(layer.id, candidate)
        except InvalidFeature as error:
            for problem in error.problems:
                report.fail(f"{problem.field}: {problem.message}")
    if len(kinds_given) > 1:
        raise InvalidParameter(
            "file",
            f"{table.name} mixes kinds ({', '.join(sorted(kinds_given))}): import one kind "
            "per file, since each import replaces that kind",
        )
    notes = [
        f"read {len(table.rows)} features from {table.name}",
        f"coordinate system {printable(table.crs)}, reprojected to WGS-84",
    ]
    if far and far == len(table.rows):
        notes.append(
            "every feature lies far from the district: check the file's coordinate system "
            "(文件坐标系可能有误)"
        )
    replaced = kind or next(iter(kinds_given), None)
    plan = ImportPlan(layer.id, table.name, None, reports, features, notes)
    if replaced is not None:
        plan.replace_kind = replaced
        kept = [f for f in stored.values() if f.properties.get("kind") != replaced]
        gone = [f for f in stored.values() if f.properties.get("kind") == replaced]
        gone_ids = {f.id for f in gone} - {f.id for f in features.values()}
        notes.append(
            f"replaces the stored {replaced} features: {len(gone_ids)} no longer in the file "
            "are removed"
        )
        plan.kept = [ValidFeature(f.id, f.properties, f.geometry) for f in kept]
    return plan


def _kinds(layer: Layer) -> str:
    return ", ".join(f"{key} ({label.zh})" for key, label in layer.kinds.items())


def _feature_id(kind: str, name: str, geometry: Any) -> str:
    """The same kind, name and shape give the same id, so importing a file
    again changes nothing (the shape to 1e-7°, about a centimetre: the same
    line reprojected from another CRS keeps its id)."""
    shape = shapely.to_wkt(geometry, rounding_precision=7, trim=True)
    digest = hashlib.sha256(f"{kind}\0{name}\0{shape}".encode())
    return f"{kind}-{digest.hexdigest()[:12]}"


def _district_reach(store: Store) -> Any:
    """The district's bounding box grown by ``DISTRICT_MARGIN_DEG`` (a shapely
    polygon), or None for a store without the district."""
    outlines = store.all_features("district")
    if not outlines:
        return None
    minx, miny, maxx, maxy = shapely.union_all([f.geometry for f in outlines]).bounds
    m = DISTRICT_MARGIN_DEG
    return shapely.box(minx - m, miny - m, maxx + m, maxy + m)
