"""Coverage batches (dask-geopandas) give exactly the single-process numbers.

A small synthetic "province": irregular towns that tile a region, one that
overlaps its neighbour, one smaller than a grid cell, one without a
population figure, and stations inside and outside the towns. The answer of
``coverage.coverage_by_town`` over ``coverage.demand_grid`` is the reference.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import Point, Polygon, box

from geo_service.analysis import coverage as cv
from geo_service.analysis import coverage_batch as cb
from geo_service.store import StoredFeature

pytest.importorskip("dask_geopandas")

# Near Qingdao, outside the 117E Gauss-Kruger zone: the grid is in UTM, as a
# province's would be.
UTM = pyproj.CRS.from_epsg(32651)
TO_WGS = pyproj.Transformer.from_crs(UTM, 4326, always_xy=True)
ORIGIN = pyproj.Transformer.from_crs(4326, UTM, always_xy=True).transform(120.4, 36.3)


def to_wgs(geometry):
    return shapely.transform(
        geometry, lambda xy: np.column_stack(TO_WGS.transform(xy[:, 0], xy[:, 1]))
    )


def town(code: str, geometry, population: int | None) -> StoredFeature:
    props = {"id": code, "name": f"示例镇{code[-3:]}", "kind": "town", "population": population}
    return StoredFeature("towns", code, props, to_wgs(geometry))


def province() -> list[StoredFeature]:
    x0, y0 = ORIGIN
    rng = np.random.default_rng(3)
    # Ten irregular towns tiling a 16 x 9 km region: Voronoi cells of random
    # seats, so neighbours share long slanted edges, as real towns do.
    region = box(x0, y0, x0 + 16_000, y0 + 9_000)
    seats = shapely.multipoints(
        np.column_stack([rng.uniform(x0, x0 + 16_000, 10), rng.uniform(y0, y0 + 9_000, 10)])
    )
    cells = shapely.voronoi_polygons(seats, extend_to=region).geoms
    towns = []
    for number, cell in enumerate(sorted(cells, key=lambda c: c.centroid.x), start=1):
        code = f"370211{number:03d}"
        population = None if number == 6 else int(rng.integers(20_000, 90_000))
        towns.append(town(code, cell.intersection(region), population))
    # A town half over the region's northern edge: the overlap's cells belong
    # to the lower codes, as demand_grid hands them out; it keeps the rest.
    overlap = Polygon([(x0 + 6000, y0 + 7000), (x0 + 11000, y0 + 7500), (x0 + 9000, y0 + 11_000)])
    towns.append(town("370211020", overlap, 15_000))
    # Smaller than one 100 m cell: one cell at its heart keeps its people.
    towns.append(town("370211030", box(x0 + 20_120, y0 + 120, x0 + 20_160, y0 + 160), 300))
    return towns


def stations(n: int = 40) -> list[StoredFeature]:
    x0, y0 = ORIGIN
    rng = np.random.default_rng(11)
    xs = rng.uniform(x0 - 2000, x0 + 22000, n)
    ys = rng.uniform(y0 - 2000, y0 + 11000, n)
    out = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        lon, lat = TO_WGS.transform(x, y)
        props = {
            "id": f"s{i:03d}",
            "kind": ("town_station", "community_station")[i % 2],
            "town_code": f"37021100{1 + i % 9}",
            "status": "open",
        }
        out.append(StoredFeature("stations", props["id"], props, Point(lon, lat)))
    return out


def reference(sites, towns, radius, cell):
    return cv.coverage_by_town(sites, cv.demand_grid(towns, cell_m=cell), radius)


@pytest.mark.parametrize("scheduler", ["processes", "threads"])
def test_batches_equal_the_single_process_answer(scheduler):
    towns, sites = province(), stations()
    expected = reference(sites, towns, 1000.0, 100.0)
    got = cb.coverage_batches(
        sites,
        towns,
        1000.0,
        cell_m=100.0,
        with_uncovered=True,
        npartitions=4,
        scheduler=scheduler,
        workers=2,
    )
    assert [r.town_code for r in got] == [r.town_code for r in expected]
    # Exactly equal, field by field, the uncovered cells' positions included.
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs, mine.town_code
        assert mine.uncovered == theirs.uncovered
    # The case is not trivial: partly covered, an estimated population, the
    # overlap town lost cells to its lower-coded neighbours, the tiny town has one cell.
    shares = [r.population_covered_share for r in got]
    assert sum(0 < share < 1 for share in shares) >= 3
    assert any(r.population_estimated for r in got)
    by_code = {r.town_code: r for r in got}
    assert by_code["370211030"].uncovered_cells + (by_code["370211030"].area_covered_share > 0) == 1
    grid = cv.demand_grid(towns, cell_m=100.0)
    overlap = shapely.transform(
        towns[-2].geometry,
        lambda xy: np.column_stack(
            pyproj.Transformer.from_crs(4326, grid.crs, always_xy=True).transform(
                xy[:, 0], xy[:, 1]
            )
        ),
    )
    kept = (grid.town == "370211020").sum()
    assert 0.2 < kept / (shapely.area(overlap) / 100.0**2) < 0.8


def test_single_process_batch_and_other_radius_and_cell():
    towns, sites = province(), stations(15)
    expected = reference(sites, towns, 500.0, 250.0)
    assert cb.coverage_single(sites, towns, 500.0, cell_m=250.0, with_uncovered=True) == expected
    got = cb.coverage_batches(
        sites, towns, 500.0, cell_m=250.0, npartitions=3, scheduler="synchronous"
    )
    # Without the uncovered positions, every number is still the same.
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.uncovered == []
        theirs.uncovered = []
        assert mine == theirs


def test_no_sites_means_nobody_covered():
    towns = province()
    expected = reference([], towns, 1000.0, 200.0)
    got = cb.coverage_batches([], towns, 1000.0, cell_m=200.0, npartitions=2, scheduler="threads")
    for mine, theirs in zip(got, expected, strict=True):
        theirs.uncovered = []
        assert mine == theirs
        assert mine.population_covered_share == 0.0
