"""Coverage per town for many towns at once (a whole province), partitioned with
dask-geopandas, with the same numbers as ``coverage.coverage_by_town``.

``coverage.demand_grid`` lays one grid over the bounding box of every town and
tests each town against all of it: fine for a district, hopeless for a
province (30 million cells tested once per town). Here each town is its own
piece of work over the cells of its own bounding box, cut from the SAME grid
(same projection, same origin, same cell centres), so every town gets exactly
the cells, people and distances the single grid would give it:

- the metric CRS and the grid origin come from all towns together, as in
  ``demand_grid``;
- a cell inside two overlapping towns belongs to the one with the lower code
  (``demand_grid`` hands cells out in code order), so each town drops the
  cells inside any lower-coded town whose interior meets its own;
- a town without a figure gets the median population of those with one;
- distances are to the nearest of ALL sites (a resident may walk to the next
  town), so every partition gets every site's position.

``coverage_batches`` runs the towns as a GeoDataFrame partitioned with
dask-geopandas (``pip install geo-service[scale]``); ``coverage_single``
runs the same per-town function on the whole GeoDataFrame in this process,
the baseline the batches are measured against.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.spatial import cKDTree

from geo_service.analysis.coverage import TownCoverage, _site_xy, _to_metric, _weighted_quantile
from geo_service.analysis.nearest import DETOUR_FACTOR
from geo_service.errors import InvalidParameter
from geo_service.sources.crs import metric_crs
from geo_service.store import StoredFeature

__all__ = ["GridSpec", "coverage_batches", "coverage_single", "plan_towns", "town_rows"]

#: Columns of the per-town result, in TownCoverage's order (facility counts
#: are added afterwards from the sites' own town codes).
_COLUMNS = {
    "town_code": "object",
    "population": "int64",
    "population_estimated": "bool",
    "population_covered_share": "float64",
    "area_covered_share": "float64",
    "median_distance_m": "float64",
    "p90_distance_m": "float64",
    "max_distance_m": "float64",
    "uncovered_cells": "int64",
    "uncovered": "object",
}


@dataclass(frozen=True)
class GridSpec:
    """The one grid every town is cut from: ``demand_grid``'s, never built whole."""

    crs: pyproj.CRS
    cell_m: float
    xs: np.ndarray  # cell centre x of every grid column (1-D)
    ys: np.ndarray  # cell centre y of every grid row (1-D)


def plan_towns(
    towns: Sequence[StoredFeature], cell_m: float = 100.0
) -> tuple[gpd.GeoDataFrame, GridSpec]:
    """The towns in the grid's metric CRS, one row each in code order, with
    their population (median placeholder flagged), the lower-coded towns whose
    interiors overlap theirs, and an estimate of their cost (cells in their box)."""
    if not towns:
        raise InvalidParameter("towns", "no town polygons in the store")
    ordered = sorted(towns, key=lambda t: t.id)
    bounds = shapely.total_bounds([t.geometry for t in ordered])
    crs = metric_crs(tuple(bounds))
    project = _to_metric(crs)
    shapes = [project(t.geometry) for t in ordered]
    west, south, east, north = shapely.total_bounds(shapes)
    # Exactly demand_grid's axes: the cells are the same floats.
    xs = np.arange(math.floor(west / cell_m) * cell_m + cell_m / 2, east, cell_m)
    ys = np.arange(math.floor(south / cell_m) * cell_m + cell_m / 2, north, cell_m)
    known = [t.properties.get("population") for t in ordered if t.properties.get("population")]
    typical = round(float(np.median(known))) if known else 0
    frame = gpd.GeoDataFrame(
        {
            "town_code": [t.id for t in ordered],
            "town_name": [t.properties.get("name") for t in ordered],
            "population": [t.properties.get("population") or typical for t in ordered],
            "population_estimated": [not t.properties.get("population") for t in ordered],
        },
        geometry=shapes,
        crs=crs,
    )
    tree = shapely.STRtree(shapes)
    left, right = tree.query(shapes, predicate="intersects")
    earlier: list[list[Any]] = [[] for _ in shapes]
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        # Only interiors that meet can share a cell centre strictly inside both;
        # neighbours that merely touch (the usual case) cost nothing.
        if j < i and shapely.relate_pattern(shapes[i], shapes[j], "T********"):
            earlier[i].append(shapes[j])
    frame["earlier"] = earlier
    box = shapely.bounds(np.array(shapes, dtype=object))
    frame["cost"] = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / cell_m**2
    return frame, GridSpec(crs=crs, cell_m=cell_m, xs=xs, ys=ys)


def _town_cells(shape, earlier: list[Any], spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """The grid cells a town owns (``demand_grid``'s rule), row-major as there."""
    west, south, east, north = shape.bounds
    i0, i1 = np.searchsorted(spec.xs, west, "left"), np.searchsorted(spec.xs, east, "right")
    j0, j1 = np.searchsorted(spec.ys, south, "left"), np.searchsorted(spec.ys, north, "right")
    gx, gy = np.meshgrid(spec.xs[i0:i1], spec.ys[j0:j1])
    gx, gy = gx.ravel(), gy.ravel()
    shapely.prepare(shape)
    inside = shapely.contains_xy(shape, gx, gy)
    tx, ty = gx[inside], gy[inside]
    for other in earlier:
        keep = ~shapely.contains_xy(other, tx, ty)
        tx, ty = tx[keep], ty[keep]
    if len(tx) == 0:  # smaller than a cell: one cell at its heart keeps its people
        heart = shape.representative_point()
        tx, ty = np.array([heart.x]), np.array([heart.y])
    return tx, ty


def town_rows(
    towns: gpd.GeoDataFrame,
    spec: GridSpec,
    site_xy: np.ndarray,
    radius_m: float,
    detour: float = DETOUR_FACTOR,
    with_uncovered: bool = False,
) -> pd.DataFrame:
    """Coverage of each town in ``towns`` (rows of ``plan_towns``): one partition's work."""
    tree = cKDTree(site_xy) if len(site_xy) else None
    back = pyproj.Transformer.from_crs(spec.crs, 4326, always_xy=True)
    records = []
    for code, population, estimated, shape, earlier in zip(
        towns["town_code"],
        towns["population"],
        towns["population_estimated"],
        towns.geometry,
        towns["earlier"],
        strict=True,
    ):
        tx, ty = _town_cells(shape, earlier, spec)
        weights = np.full(len(tx), population / len(tx))
        if tree is None:
            d = np.full(len(tx), np.inf)
        else:
            d = tree.query(np.column_stack([tx, ty]))[0] * detour
        covered = d <= radius_m
        uncovered = None
        if with_uncovered:
            lon, lat = back.transform(tx[~covered], ty[~covered])
            uncovered = list(zip(np.asarray(lon).tolist(), np.asarray(lat).tolist(), strict=True))
        records.append(
            {
                "town_code": code,
                "population": int(population),
                "population_estimated": bool(estimated),
                "population_covered_share": (
                    float(weights[covered].sum() / weights.sum()) if weights.sum() else 0.0
                ),
                "area_covered_share": float(covered.mean()),
                "median_distance_m": _weighted_quantile(d, weights, 0.5),
                "p90_distance_m": _weighted_quantile(d, weights, 0.9),
                "max_distance_m": float(d.max()),
                "uncovered_cells": int((~covered).sum()),
                "uncovered": uncovered,
            }
        )
    return pd.DataFrame.from_records(records, columns=list(_COLUMNS)).astype(_COLUMNS)


def _as_coverage(
    rows: pd.DataFrame, towns: gpd.GeoDataFrame, sites: Sequence[StoredFeature]
) -> list[TownCoverage]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for site in sites:
        counts[site.properties.get("town_code")][site.properties.get("kind")] += 1
    names = dict(zip(towns["town_code"], towns["town_name"], strict=True))
    out = []
    for row in rows.sort_values("town_code").itertuples(index=False):
        code = row.town_code
        out.append(
            TownCoverage(
                town_code=code,
                town_name=names[code],
                facilities=sum(counts[code].values()),
                by_kind=dict(sorted(counts[code].items())),
                population=int(row.population),
                population_estimated=bool(row.population_estimated),
                population_covered_share=float(row.population_covered_share),
                area_covered_share=float(row.area_covered_share),
                median_distance_m=float(row.median_distance_m),
                p90_distance_m=float(row.p90_distance_m),
                max_distance_m=float(row.max_distance_m),
                uncovered_cells=int(row.uncovered_cells),
                uncovered=row.uncovered if row.uncovered is not None else [],
            )
        )
    return out


def coverage_single(
    sites: Sequence[StoredFeature],
    towns: Sequence[StoredFeature],
    radius_m: float,
    cell_m: float = 100.0,
    detour: float = DETOUR_FACTOR,
    with_uncovered: bool = False,
) -> list[TownCoverage]:
    """Every town in this process, one after the other (the baseline)."""
    frame, spec = plan_towns(towns, cell_m)
    rows = town_rows(frame, spec, _site_xy_in(spec, sites), radius_m, detour, with_uncovered)
    return _as_coverage(rows, frame, sites)


def coverage_batches(
    sites: Sequence[StoredFeature],
    towns: Sequence[StoredFeature],
    radius_m: float,
    cell_m: float = 100.0,
    detour: float = DETOUR_FACTOR,
    with_uncovered: bool = False,
    *,
    npartitions: int | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
) -> list[TownCoverage]:
    """``coverage_single``'s answer, the towns partitioned with dask-geopandas.

    Partitions are balanced by each town's cell count (largest first, dealt
    round-robin), several per worker so one big town does not leave the
    others idle. ``scheduler``: ``threads`` (default: the heavy calls, point
    in polygon, KD-tree queries and sorts, release the GIL, nothing is
    copied, and it is safe inside a threaded server), ``processes`` (new
    interpreters: each imports the libraries and receives its towns and every
    site pickled; for batch jobs on many cores) or ``synchronous``.
    """
    try:
        import dask
        import dask_geopandas
    except ImportError:  # pragma: no cover - the extra is installed with [test]
        raise InvalidParameter(
            "scheduler", "coverage batches need dask-geopandas: pip install 'geo-service[scale]'"
        ) from None
    frame, spec = plan_towns(towns, cell_m)
    workers = workers or os.cpu_count() or 1
    parts = npartitions or min(len(frame), 4 * workers)
    # Deal the towns, biggest first, to the partitions in turn; rows of one
    # partition are then contiguous, as dask-geopandas expects.
    order = np.argsort(-frame["cost"].to_numpy(), kind="stable")
    deal = np.empty(len(frame), dtype=np.int64)
    deal[order] = np.arange(len(frame)) % parts
    dealt = frame.assign(_part=deal).sort_values(["_part", "town_code"], kind="stable")
    dealt = dealt.set_index("_part")
    meta = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in _COLUMNS.items()})
    site_xy = _site_xy_in(spec, sites)
    options: dict[str, Any] = {"scheduler": scheduler}
    if scheduler != "synchronous":
        options["num_workers"] = workers
    # Dask would turn object columns into Arrow strings; ``earlier`` holds
    # geometries and ``uncovered`` lists, which must arrive as they are.
    with dask.config.set({"dataframe.convert-string": False}):
        batches = dask_geopandas.from_geopandas(dealt, npartitions=parts, sort=True)
        result = batches.map_partitions(
            town_rows, spec, site_xy, radius_m, detour, with_uncovered, meta=meta
        )
        rows = result.compute(**options)
    return _as_coverage(rows.reset_index(drop=True), frame, sites)


def _site_xy_in(spec: GridSpec, sites: Sequence[StoredFeature]) -> np.ndarray:
    # coverage._site_xy reads the CRS off a grid; the spec carries the same one.
    return _site_xy(spec, sites)  # type: ignore[arg-type]
