"""Write a layer to a file: GeoJSON, GeoPackage or CSV (for spreadsheets)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from geo_service.outputs.cells import write_frame_csv
from geo_service.outputs.geojson import feature_collection
from geo_service.sources.catalog import Layer
from geo_service.sources.crs import CoordinateSystem, convert_geometry
from geo_service.store import StoredFeature

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["ExportFormat", "export_layer"]


class ExportFormat(StrEnum):
    geojson = "geojson"
    gpkg = "gpkg"
    csv = "csv"


def _frame(
    layer: Layer, features: Sequence[StoredFeature], crs: CoordinateSystem
) -> gpd.GeoDataFrame:
    import geopandas as gpd  # heavy: loaded by the exports that need it, not by --help

    rows = []
    for feature in features:
        row = {}
        for name, value in feature.properties.items():
            # Lists become "a;b" text: GeoPackage and CSV have no list type.
            row[name] = ";".join(value) if isinstance(value, list) else value
        rows.append(row)
    geometries = convert_geometry(
        np.array([f.geometry for f in features], dtype=object), CoordinateSystem.wgs84, crs
    )
    columns = list(dict.fromkeys([*layer.properties, *(k for r in rows for k in r)]))
    frame = gpd.GeoDataFrame(rows, columns=columns, geometry=geometries, crs="EPSG:4326")
    for name, spec in layer.properties.items():
        if spec.type == "integer":
            frame[name] = frame[name].astype("Int64")  # whole numbers stay whole beside gaps
    return frame


def export_layer(
    layer: Layer,
    features: Sequence[StoredFeature],
    fmt: ExportFormat | str,
    out: Path,
    crs: CoordinateSystem = CoordinateSystem.wgs84,
) -> int:
    """Write ``features`` of ``layer`` to ``out``; returns the number written.

    CSV carries ``lon``/``lat`` columns for point layers and WKT for polygons,
    UTF-8 with a byte-order mark so Excel shows the Chinese text correctly,
    every text cell neutralised against formula injection (``outputs.cells``).
    A GCJ-02/BD-09 GeoPackage is still labelled EPSG:4326 (those systems have
    no EPSG code), so prefer WGS-84 for GIS files.
    """
    fmt = ExportFormat(fmt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ExportFormat.geojson:
        body = feature_collection(features, crs, name=layer.id)
        out.write_bytes(orjson.dumps(body))
        return len(features)
    frame = _frame(layer, features, crs)
    if fmt == ExportFormat.gpkg:
        if out.exists():
            out.unlink()
        frame.to_file(out, layer=layer.id, driver="GPKG", engine="pyogrio")
        return len(frame)
    table = frame.drop(columns="geometry")
    if layer.is_facility:
        table.insert(1, "lon", frame.geometry.x.round(7))
        table.insert(2, "lat", frame.geometry.y.round(7))
    else:
        table["wkt"] = frame.geometry.to_wkt()
    write_frame_csv(table, out)
    return len(table)
