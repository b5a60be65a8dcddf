"""Coverage planning per town: who is within reach, which towns fall short,
where the next sites should go. Pure functions over store snapshots.

Demand is residents, not area: a regular grid of cells (100 m by default) in
the district's metric projection, each carrying its town's population spread
evenly over the town's cells. Access is measured as **straight-line distance
× DETOUR_FACTOR** (the same 1.3 as the nearest-service walking estimate), and
compared with the walking distances of China's residential planning standard
GB 50180-2018: the 5-, 10- and 15-minute life circles, about 300, 500 and
1,000 m. Every output says so.

Site recommendation solves the maximal covering location problem with PySAL
``spopt`` and its bundled CBC solver: ``p`` new sites covering the most people
not yet covered, every existing facility kept, compared with a greedy choice.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
from scipy.spatial import cKDTree

from geo_service.analysis.nearest import DETOUR_FACTOR
from geo_service.errors import InvalidParameter
from geo_service.sources.catalog import Catalog
from geo_service.sources.crs import metric_crs
from geo_service.store import StoredFeature

__all__ = [
    "COMPLIANCE_COLUMNS",
    "RADIUS_PRESETS",
    "TOWN_COLUMNS",
    "DemandGrid",
    "Recommendation",
    "TownCoverage",
    "compliance_by_town",
    "coverage_by_town",
    "demand_grid",
    "distance_assumption",
    "distance_assumption_zh",
    "parse_radius",
    "progress_by_unit",
    "recommend_sites",
]

#: GB 50180-2018 life circles as walking distances (metres).
RADIUS_PRESETS = {"5min": 300.0, "10min": 500.0, "15min": 1000.0}
MAX_RADIUS_M = 20_000.0
#: Smallest demand block for the optimisation (small radii use blocks this wide).
MIN_BLOCK_M = 200.0
#: Past this many demand × candidate entries, spopt's model takes too long to build.
MAX_MODEL_ENTRIES = 1_500_000
#: Uncovered demand is aggregated to blocks this size for the optimisation:
#: spopt builds its model from a dense demand × candidate matrix (~7 µs an
#: entry), so the problem is kept near a million entries. The chosen sites are
#: then measured on the fine grid.
OPTIMISATION_CELL_M = 600.0


def distance_assumption(detour: float = DETOUR_FACTOR) -> str:
    return (
        f"walking distance = straight-line distance × {detour} detour factor; "
        "life circles per GB 50180-2018: 5 min ≈ 300 m, 10 min ≈ 500 m, 15 min ≈ 1,000 m"
    )


def distance_assumption_zh(detour: float = DETOUR_FACTOR) -> str:
    """``distance_assumption`` as the office's reports say it."""
    return (
        f"步行距离 = 直线距离 × {detour}（绕行系数）；"
        "生活圈按 GB 50180-2018：5 分钟约 300 米，10 分钟约 500 米，15 分钟约 1000 米"
    )


def parse_radius(raw: str | float | None, parameter: str = "radius") -> float:
    """``5min``/``10min``/``15min`` or metres (0 < r <= 20 km)."""
    if raw is None or raw == "":
        return RADIUS_PRESETS["15min"]
    text = str(raw).strip().lower()
    if text in RADIUS_PRESETS:
        return RADIUS_PRESETS[text]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*m?", text)
    if not match:
        raise InvalidParameter(
            parameter, f"{raw!r}: give 5min, 10min, 15min or a distance in metres such as 800"
        )
    metres = float(match.group(1))
    if not 0 < metres <= MAX_RADIUS_M:
        raise InvalidParameter(parameter, f"must be more than 0 and at most {MAX_RADIUS_M:.0f} m")
    return metres


@dataclass
class DemandGrid:
    """Cell centres in a metric CRS with their town and population."""

    crs: pyproj.CRS
    cell_m: float
    x: np.ndarray
    y: np.ndarray
    town: np.ndarray  # town code per cell
    population: np.ndarray
    towns: dict[str, dict[str, Any]]  # code -> name, population, estimated, area_km2, note
    #: the office's population file the people come from (None: town totals spread evenly)
    population_source: str | None = None
    #: that file's points that fell outside every town, left out
    population_outside: int = 0

    def lonlat(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        back = pyproj.Transformer.from_crs(self.crs, 4326, always_xy=True)
        return back.transform(x, y)


def _to_metric(crs: pyproj.CRS):
    forward = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    return lambda geometry: shapely.transform(
        geometry, lambda xy: np.column_stack(forward.transform(xy[:, 0], xy[:, 1]))
    )


def demand_grid(towns: Sequence[StoredFeature], cell_m: float = 100.0) -> DemandGrid:
    """Each town's population spread evenly over its cells. A town without a
    figure gets the median population of the towns with one (a placeholder,
    flagged as estimated)."""
    if not towns:
        raise InvalidParameter("towns", "no town polygons in the store")
    bounds = shapely.total_bounds([t.geometry for t in towns])
    crs = metric_crs(tuple(bounds))
    project = _to_metric(crs)
    shapes = {t.id: project(t.geometry) for t in towns}
    west, south, east, north = shapely.total_bounds(list(shapes.values()))
    # One grid for the whole district, so neighbouring towns never share a cell.
    xs = np.arange(math.floor(west / cell_m) * cell_m + cell_m / 2, east, cell_m)
    ys = np.arange(math.floor(south / cell_m) * cell_m + cell_m / 2, north, cell_m)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    taken = np.zeros(len(gx), dtype=bool)
    x_parts, y_parts, town_parts = [], [], []
    info: dict[str, dict[str, Any]] = {}
    for town in sorted(towns, key=lambda t: t.id):
        inside = shapely.contains_xy(shapes[town.id], gx, gy) & ~taken
        taken |= inside
        tx, ty = gx[inside], gy[inside]
        if len(tx) == 0:  # smaller than a cell: one cell at its heart keeps its people
            heart = shapes[town.id].representative_point()
            tx, ty = np.array([heart.x]), np.array([heart.y])
        x_parts.append(tx)
        y_parts.append(ty)
        town_parts.append(np.full(len(tx), town.id, dtype=object))
        info[town.id] = {
            "name": town.properties.get("name"),
            "population": town.properties.get("population"),
            "estimated": False,
            "area_km2": shapes[town.id].area / 1e6,
            "cells": len(tx),
            "note": town.properties.get("population_note"),
        }
    known = [v["population"] for v in info.values() if v["population"]]
    # Towns and subdistricts are drawn to similar sizes; the approximate
    # boundaries' areas would mislead a density-based guess.
    typical = round(float(np.median(known))) if known else 0
    for town_info in info.values():
        if not town_info["population"]:
            town_info["population"] = typical
            town_info["estimated"] = True
            town_info["note"] = f"无人口统计数：暂以有统计数镇街人口的中位数 {typical:,} 代替"
    town = np.concatenate(town_parts)
    population = np.array(
        [info[code]["population"] / max(info[code]["cells"], 1) for code in town], dtype=float
    )
    return DemandGrid(
        crs=crs,
        cell_m=cell_m,
        x=np.concatenate(x_parts),
        y=np.concatenate(y_parts),
        town=town,
        population=population,
        towns=info,
    )


def read_points_file(
    path, catalog: Catalog, value: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Longitudes, latitudes (WGS-84) and, when ``value`` names a property
    (``population``), its values, from a CSV/XLSX with 经度/纬度 columns or a
    spatial file (polygons count at their representative point). Any bad row
    refuses the file, naming the rows."""
    from pathlib import Path

    from geo_service.sources.importing import load_header_aliases, normalise_header
    from geo_service.sources.tables import read_table

    aliases = load_header_aliases(catalog.directory / "import_headers.toml")
    table = read_table(Path(path), set(aliases), normalise_header)
    column = {
        aliases[normalise_header(h)]: h for h in table.headers if normalise_header(h) in aliases
    }
    lons, lats, values, problems = [], [], [], []
    for row in table.rows:
        try:
            if row.geometry is not None:
                point = row.geometry.representative_point()
                lon, lat = point.x, point.y
            else:
                lon, lat = float(row.values[column["lon"]]), float(row.values[column["lat"]])
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError("coordinates out of range")
            amount = float(row.values[column[value]]) if value else 0.0
            if value and not (math.isfinite(amount) and amount >= 0):
                raise ValueError(f"{value} must be a number >= 0")
        except (KeyError, TypeError, ValueError) as error:
            missing = f"missing column {error}" if isinstance(error, KeyError) else str(error)
            problems.append(f"line {row.line}: {missing}")
            continue
        lons.append(lon)
        lats.append(lat)
        values.append(amount)
    if problems:
        raise InvalidParameter(
            "file", f"{table.name}: {len(problems)} bad rows: " + "; ".join(problems[:5])
        )
    if not lons:
        raise InvalidParameter("file", f"{table.name}: no rows")
    return np.array(lons), np.array(lats), np.array(values)


def apply_population(
    grid: DemandGrid, lon: np.ndarray, lat: np.ndarray, people: np.ndarray, source: str
) -> DemandGrid:
    """Demand from the office's own population points or cells instead of
    town totals: each figure goes to the grid cell it falls in."""
    forward = pyproj.Transformer.from_crs(4326, grid.crs, always_xy=True)
    x, y = forward.transform(lon, lat)
    distance, cell = cKDTree(np.column_stack([grid.x, grid.y])).query(np.column_stack([x, y]))
    inside = distance <= grid.cell_m * math.sqrt(2) / 2
    population = np.bincount(cell[inside], weights=people[inside], minlength=len(grid.x))
    towns = {}
    for code, info in grid.towns.items():
        towns[code] = dict(
            info,
            population=round(float(population[grid.town == code].sum())),
            estimated=False,
            note=f"来自人口分布文件 {source}",
        )
    dropped = int((~inside).sum())
    if dropped:
        for info in towns.values():
            info["note"] += f"（区界外 {dropped} 个点未计入）"
    return DemandGrid(
        grid.crs, grid.cell_m, grid.x, grid.y, grid.town, population, towns, source, dropped
    )


def _site_xy(grid: DemandGrid, sites: Sequence[StoredFeature]) -> np.ndarray:
    if not sites:
        return np.empty((0, 2))
    forward = pyproj.Transformer.from_crs(4326, grid.crs, always_xy=True)
    x, y = forward.transform([s.geometry.x for s in sites], [s.geometry.y for s in sites])
    return np.column_stack([x, y])


def walking_distance(grid: DemandGrid, sites: Sequence[StoredFeature], detour: float) -> np.ndarray:
    """Per cell: straight-line metres to the nearest site × detour (inf without sites)."""
    xy = _site_xy(grid, sites)
    if len(xy) == 0:
        return np.full(len(grid.x), np.inf)
    distance, _ = cKDTree(xy).query(np.column_stack([grid.x, grid.y]))
    return distance * detour


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0 or weights.sum() == 0:
        return float("nan")
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


@dataclass
class TownCoverage:
    town_code: str
    town_name: str
    facilities: int
    by_kind: dict[str, int]
    population: int
    population_estimated: bool
    population_covered_share: float
    area_covered_share: float
    median_distance_m: float
    p90_distance_m: float
    max_distance_m: float
    uncovered_cells: int
    uncovered: list[tuple[float, float]] = field(repr=False, default_factory=list)  # lon, lat


def coverage_by_town(
    sites: Sequence[StoredFeature],
    grid: DemandGrid,
    radius_m: float,
    detour: float = DETOUR_FACTOR,
) -> list[TownCoverage]:
    """Per town, for ``sites`` (any layers/kinds already chosen): facility
    counts, covered shares of people and area, and the people-weighted
    distance to the nearest site. A resident may walk to a site in the next
    town, so every site counts for every cell."""
    distance = walking_distance(grid, sites, detour)
    covered = distance <= radius_m
    lon, lat = grid.lonlat(grid.x, grid.y)
    counts: dict[str, Counter] = defaultdict(Counter)
    for site in sites:
        counts[site.properties.get("town_code")][site.properties.get("kind")] += 1
    rows = []
    for code, info in sorted(grid.towns.items()):
        cells = grid.town == code
        weights = grid.population[cells]
        d = distance[cells]
        outside = cells & ~covered
        rows.append(
            TownCoverage(
                town_code=code,
                town_name=info["name"],
                facilities=sum(counts[code].values()),
                by_kind=dict(sorted(counts[code].items())),
                population=int(info["population"]),
                population_estimated=info["estimated"],
                population_covered_share=(
                    float(weights[covered[cells]].sum() / weights.sum()) if weights.sum() else 0.0
                ),
                area_covered_share=float(covered[cells].mean()) if cells.any() else 0.0,
                median_distance_m=_weighted_quantile(d, weights, 0.5),
                p90_distance_m=_weighted_quantile(d, weights, 0.9),
                max_distance_m=float(d.max()) if len(d) else float("nan"),
                uncovered_cells=int(outside.sum()),
                uncovered=list(zip(lon[outside].tolist(), lat[outside].tolist(), strict=True)),
            )
        )
    return rows


# -- the 2022 opinion, town by town ---------------------------------------------------

#: What the opinion asks of every town: (item, layer, kinds or None for any).
COMPLIANCE_ITEMS: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("station", "镇街退役军人服务站", "stations", ("town_station",)),
    ("support_post", "拥军服务驿站", "stations", ("support_post",)),
    ("education_site", "国防教育阵地", "education", None),
    ("health", "健康服务站或拥军药店", "medical", ("health_station", "partner_pharmacy")),
    ("green_channel", "拥军绿色通道窗口", "green_channels", None),
]

#: Per-town table columns: (key, Chinese header).
TOWN_COLUMNS = [
    ("town_code", "镇街代码"),
    ("town_name", "镇街"),
    ("facilities", "设施数"),
    ("population", "人口"),
    ("population_estimated", "人口为估计值"),
    ("population_covered_share", "覆盖人口比例"),
    ("area_covered_share", "覆盖面积比例"),
    ("median_distance_m", "步行距离中位数(米)"),
    ("p90_distance_m", "步行距离90分位(米)"),
    ("max_distance_m", "最远步行距离(米)"),
    ("uncovered_cells", "未覆盖网格数"),
]
COMPLIANCE_COLUMNS = [(item, zh) for item, zh, _layer, _kinds in COMPLIANCE_ITEMS]


def compliance_by_town(
    facilities: Iterable[StoredFeature], towns: Sequence[StoredFeature]
) -> dict[str, dict[str, Any]]:
    """Per town: for each item of the opinion, open sites counted, and yes/no."""
    open_count: dict[tuple[str, str], int] = Counter()
    for site in facilities:
        if site.properties.get("status") != "open":
            continue
        for item, _zh, layer, kinds in COMPLIANCE_ITEMS:
            if site.layer_id == layer and (kinds is None or site.properties.get("kind") in kinds):
                open_count[(site.properties.get("town_code"), item)] += 1
    out = {}
    for town in sorted(towns, key=lambda t: t.id):
        items = {item: open_count[(town.id, item)] for item, *_ in COMPLIANCE_ITEMS}
        out[town.id] = {
            "name": town.properties.get("name"),
            "counts": items,
            "meets": {item: count > 0 for item, count in items.items()},
            "all_met": all(count > 0 for count in items.values()),
        }
    return out


def progress_by_unit(facilities: Iterable[StoredFeature]) -> dict[str, dict[str, int]]:
    """Per responsible unit: how many of its sites are open, planned, suspended."""
    out: dict[str, Counter] = defaultdict(Counter)
    for site in facilities:
        unit = site.properties.get("responsible_unit") or "（未填写 not given）"
        out[unit][site.properties.get("status") or "unknown"] += 1
    return {
        unit: {s: counts.get(s, 0) for s in ("open", "planned", "suspended")}
        for unit, counts in sorted(out.items())
    }


# -- where the next sites should go ---------------------------------------------------


@dataclass
class Recommendation:
    radius_m: float
    p: int
    candidates: int
    demand_points: int
    covered_before: float  # people
    covered_after: float
    total: float
    solve_seconds: float
    sites: list[dict[str, Any]]  # x, y, lon, lat, gain (in greedy order within the chosen)
    greedy_sites: list[dict[str, Any]]
    greedy_covered_after: float
    #: what the reader should know, each as (Chinese, English)
    notes: list[tuple[str, str]] = field(default_factory=list)


def _choose(coverage: np.ndarray, weights: np.ndarray, p: int) -> tuple[list[int], float]:
    """MCLP with spopt + CBC over a boolean demand × candidate coverage matrix."""
    import pulp
    from spopt.locate import MCLP

    # spopt takes costs and a radius: 0 where covered, 2 elsewhere, radius 1.
    cost = np.where(coverage, 0.0, 2.0)
    model = MCLP.from_cost_matrix(cost, weights, service_radius=1.0, p_facilities=p)
    start = time.perf_counter()
    model.solve(pulp.PULP_CBC_CMD(msg=False))
    seconds = time.perf_counter() - start
    chosen = [j for j, var in enumerate(model.fac_vars) if var.value() and var.value() > 0.5]
    return sorted(chosen), seconds


def _greedy(coverage: np.ndarray, weights: np.ndarray, p: int) -> list[int]:
    remaining = weights.copy()
    chosen: list[int] = []
    for _ in range(min(p, coverage.shape[1])):
        gains = remaining @ coverage
        gains[chosen] = -1
        best = int(np.argmax(gains))
        chosen.append(best)
        remaining = remaining * ~coverage[:, best]
    return chosen


def _ordered_gains(coverage: np.ndarray, weights: np.ndarray, chosen: list[int]):
    """The chosen sites in the order that adds most first, with each one's gain."""
    remaining, order, left = weights.copy(), [], list(chosen)
    while left:
        gains = [(float(remaining @ coverage[:, j]), j) for j in left]
        gain, best = max(gains)
        order.append((best, gain))
        left.remove(best)
        remaining = remaining * ~coverage[:, best]
    return order


def recommend_sites(
    demand_xy: np.ndarray,
    weights: np.ndarray,
    covered: np.ndarray,
    candidates_xy: np.ndarray,
    radius_m: float,
    p: int,
    detour: float = DETOUR_FACTOR,
) -> Recommendation:
    """Choose ``p`` candidates covering the most demand not already ``covered``
    (existing facilities stay). Metric coordinates; lon/lat are added by the caller."""
    if not 1 <= p <= 50:
        raise InvalidParameter("p", "must be a whole number from 1 to 50")
    # No candidates (every block within reach already) falls through to the
    # answer "every resident is already covered" below.
    total = float(weights.sum())
    before = float(weights[covered].sum())
    open_demand = ~covered & (weights > 0)
    d_xy, w = demand_xy[open_demand], weights[open_demand]
    # Demand within reach of each candidate (straight line × detour <= radius).
    tree = cKDTree(d_xy) if len(d_xy) else None
    coverage = np.zeros((len(d_xy), len(candidates_xy)), dtype=bool)
    if tree is not None:
        for j, hits in enumerate(tree.query_ball_point(candidates_xy, radius_m / detour)):
            coverage[hits, j] = True
    # Candidates that reach nobody new cannot help; keep the matrix small.
    useful = np.flatnonzero(coverage.any(axis=0))
    notes = []
    if len(useful) == 0:
        return Recommendation(
            radius_m,
            p,
            len(candidates_xy),
            len(d_xy),
            before,
            before,
            total,
            0.0,
            [],
            [],
            before,
            [("所有居民都已在覆盖范围内", "every resident is already covered")],
        )
    matrix = coverage[:, useful]
    chosen, seconds = _choose(matrix, w, min(p, len(useful)))
    greedy = _greedy(matrix, w, min(p, len(useful)))

    def described(order):
        return [
            {
                "x": float(candidates_xy[useful[j], 0]),
                "y": float(candidates_xy[useful[j], 1]),
                "gain": gain,
            }
            for j, gain in order
        ]

    mclp_sites = described(_ordered_gains(matrix, w, chosen))
    greedy_sites = described(_ordered_gains(matrix, w, greedy))
    if len(useful) < p:
        notes.append(
            (
                f"只有 {len(useful)} 个候选点能覆盖尚未覆盖的人口",
                f"only {len(useful)} candidates reach anyone not yet covered",
            )
        )
    return Recommendation(
        radius_m=radius_m,
        p=p,
        candidates=len(candidates_xy),
        demand_points=len(d_xy),
        covered_before=before,
        covered_after=before + sum(s["gain"] for s in mclp_sites),
        total=total,
        solve_seconds=seconds,
        sites=mclp_sites,
        greedy_sites=greedy_sites,
        greedy_covered_after=before + sum(s["gain"] for s in greedy_sites),
        notes=notes,
    )


def recommend_for_district(
    grid: DemandGrid,
    sites: Sequence[StoredFeature],
    radius_m: float,
    p: int,
    candidates: Sequence[tuple[float, float]] | None = None,
    detour: float = DETOUR_FACTOR,
) -> Recommendation:
    """``recommend_sites`` on the demand grid. Uncovered cells are grouped into
    blocks no wider than the straight-line reach (200-600 m), and the
    candidates are the blocks' people-weighted centres, so every candidate
    reaches at least its own block; or the office's own list of lon/lat.
    spopt's model grows with demand × candidates, so past MAX_MODEL_ENTRIES
    only the candidates that reach the most uncovered people on their own are
    kept (said in the notes)."""
    covered = walking_distance(grid, sites, detour) <= radius_m
    block = float(np.clip(radius_m / detour, MIN_BLOCK_M, OPTIMISATION_CELL_M))
    keys = np.column_stack([np.floor(grid.x / block), np.floor(grid.y / block)])
    demand: dict[tuple[float, float], list[float]] = {}
    for (kx, ky), x, y, w, c in zip(
        map(tuple, keys), grid.x, grid.y, grid.population, covered, strict=True
    ):
        entry = demand.setdefault((kx, ky, bool(c)), [0.0, 0.0, 0.0])
        entry[0] += w * x
        entry[1] += w * y
        entry[2] += w
    rows = [(v[0] / v[2], v[1] / v[2], v[2], k[2]) for k, v in demand.items() if v[2] > 0]
    demand_xy = np.array([[r[0], r[1]] for r in rows])
    weights = np.array([r[2] for r in rows])
    covered_blocks = np.array([r[3] for r in rows])
    notes = []
    if len(demand_xy) == 0 or weights.sum() == 0:
        raise InvalidParameter("population", "no people in the demand grid to cover")
    if candidates is None:
        open_blocks = ~covered_blocks
        candidates_xy = demand_xy[open_blocks]
        notes.append(
            (
                f"候选点：{len(candidates_xy):,} 个未覆盖的 {block:.0f} 米街区的中心",
                f"candidates: the centres of the {len(candidates_xy):,} uncovered "
                f"{block:.0f} m blocks",
            )
        )
        uncovered_n = int(open_blocks.sum())
        if uncovered_n * len(candidates_xy) > MAX_MODEL_ENTRIES:
            keep = max(MAX_MODEL_ENTRIES // max(uncovered_n, 1), 4 * p)
            reach = cKDTree(demand_xy[open_blocks]).query_ball_point(
                candidates_xy, radius_m / detour
            )
            alone = np.array([weights[open_blocks][hits].sum() for hits in reach])
            best = np.argsort(-alone, kind="stable")[:keep]
            candidates_xy = candidates_xy[best]
            notes.append(
                (
                    f"只保留了单独覆盖未覆盖人口最多的 {len(best):,} 个候选点"
                    "（否则模型太大，无法很快求解）",
                    f"kept the {len(best):,} candidates that reach the most uncovered people on "
                    "their own (the model would otherwise be too large to build quickly)",
                )
            )
    else:
        if not candidates:
            raise InvalidParameter("candidates", "no candidate sites")
        forward = pyproj.Transformer.from_crs(4326, grid.crs, always_xy=True)
        cx, cy = forward.transform([c[0] for c in candidates], [c[1] for c in candidates])
        candidates_xy = np.column_stack([cx, cy])
        notes.append(
            (
                f"候选点：办公室提供的 {len(candidates)} 个",
                f"candidates: {len(candidates)} supplied by the office",
            )
        )
    result = recommend_sites(demand_xy, weights, covered_blocks, candidates_xy, radius_m, p, detour)
    # Measure both choices on the fine grid, which the block centroids only approximate.
    fine_xy = np.column_stack([grid.x, grid.y])
    tree = cKDTree(fine_xy)

    def measured(chosen_sites: list[dict[str, Any]]) -> float:
        """Gains on the fine grid, the chosen sites ordered biggest gain first."""
        remaining = np.where(covered, 0.0, grid.population)
        reach = {
            id(site): tree.query_ball_point([site["x"], site["y"]], radius_m / detour)
            for site in chosen_sites
        }
        left, ordered = list(chosen_sites), []
        while left:
            site = max(left, key=lambda s: remaining[reach[id(s)]].sum())
            site["gain"] = float(remaining[reach[id(site)]].sum())
            remaining[reach[id(site)]] = 0.0
            lon, lat = grid.lonlat(np.array([site["x"]]), np.array([site["y"]]))
            site["lon"], site["lat"] = round(float(lon[0]), 6), round(float(lat[0]), 6)
            ordered.append(site)
            left.remove(site)
        chosen_sites[:] = ordered
        return float(grid.population.sum() - remaining.sum())

    result.covered_before = float(grid.population[covered].sum())
    result.covered_after = measured(result.sites)
    result.greedy_covered_after = measured(result.greedy_sites)
    result.total = float(grid.population.sum())
    result.notes = [
        *notes,
        (
            f"在 {block:.0f} 米的未覆盖街区上选址；覆盖人口和新增人口按 "
            f"{grid.cell_m:.0f} 米网格计算",
            f"chosen on {block:.0f} m blocks of uncovered demand; coverage and "
            f"gains measured on the {grid.cell_m:.0f} m grid",
        ),
        *result.notes,
    ]
    return result


def chosen_facilities(
    catalog: Catalog,
    features: dict[str, list[StoredFeature]],
    layers: Sequence[str] | None,
    kinds: Sequence[str] | None,
    *,
    only_open: bool = True,
) -> list[StoredFeature]:
    """The open facilities of the chosen layers and kinds (``only_open=False``:
    planned and suspended ones too)."""
    # Each layer and kind once, however often it was asked for.
    names = (
        list(dict.fromkeys(layers)) if layers else [layer.id for layer in catalog.facility_layers]
    )
    kinds = list(dict.fromkeys(kinds)) if kinds else None
    facility = {layer.id for layer in catalog.facility_layers}
    for name in names:
        if name not in facility:
            raise InvalidParameter("layers", f"unknown facility layer {name!r}")
    known_kinds = {k for name in names for k in catalog.layer(name).kinds}
    for kind in kinds or []:
        if kind not in known_kinds:
            raise InvalidParameter("kinds", f"unknown kind {kind!r} for {', '.join(names)}")
    return [
        site
        for name in names
        for site in features[name]
        if (not only_open or site.properties.get("status") == "open")
        and (not kinds or site.properties.get("kind") in kinds)
    ]


def today() -> str:
    return dt.date.today().isoformat()
