"""Benchmark coverage planning on the shipped district, in one run.

    .venv/bin/python bench/coverage.py [--cell 100] [--radius 15min] [--max-p 5]

Prints the demand grid size and build time, coverage-by-town time for every
facility layer and for stations only, and the site recommendation (MCLP with
spopt + CBC, and greedy on the same matrix) for p = 1..max-p: model size,
build + solve time, people covered, and MCLP's advantage over greedy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.analysis import coverage as cv  # noqa: E402
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import open_store  # noqa: E402
from geo_service.store.seeding import seed_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=float, default=100.0)
    parser.add_argument("--radius", default="15min")
    parser.add_argument("--max-p", type=int, default=5)
    args = parser.parse_args()
    radius = cv.parse_radius(args.radius)
    catalog = load_catalog()
    store = open_store(Path(tempfile.mkdtemp()) / "coverage.gpkg", catalog)
    seed_store(store, catalog)
    towns = store.all_features("towns")
    features = {layer.id: store.all_features(layer.id) for layer in catalog.facility_layers}

    start = time.perf_counter()
    grid = cv.demand_grid(towns, args.cell)
    grid_s = time.perf_counter() - start
    area = sum(v["area_km2"] for v in grid.towns.values())
    print(
        f"demand grid: {len(grid.x):,} cells of {args.cell:.0f} m over {area:,.0f} km², "
        f"{grid.population.sum():,.0f} people, built in {grid_s:.2f} s"
    )
    for label, layers, kinds in (
        ("every facility layer", None, None),
        ("stations + support posts", ["stations"], ["town_station", "support_post"]),
    ):
        sites = cv.chosen_facilities(catalog, features, layers, kinds)
        start = time.perf_counter()
        rows = cv.coverage_by_town(sites, grid, radius)
        seconds = time.perf_counter() - start
        covered = sum(r.population_covered_share * r.population for r in rows)
        print(
            f"coverage by town, {label} ({len(sites)} sites): {seconds * 1000:.0f} ms, "
            f"{covered / grid.population.sum():.1%} of people within {radius:.0f} m walking"
        )

    sites = cv.chosen_facilities(catalog, features, ["stations"], ["town_station", "support_post"])
    print(f"\nsite recommendation for stations + support posts, radius {radius:.0f} m")
    header = (
        f"{'p':>2} {'demand':>7} {'cands':>6} {'total s':>8} {'solve s':>8} "
        f"{'covered before':>15} {'MCLP after':>11} {'greedy after':>13} {'MCLP-greedy':>12}"
    )
    print(header)
    print("-" * len(header))
    for p in range(1, args.max_p + 1):
        start = time.perf_counter()
        result = cv.recommend_for_district(grid, sites, radius, p)
        total_s = time.perf_counter() - start
        print(
            f"{p:>2} {result.demand_points:>7,} {result.candidates:>6,} {total_s:>8.1f} "
            f"{result.solve_seconds:>8.2f} {result.covered_before:>15,.0f} "
            f"{result.covered_after:>11,.0f} {result.greedy_covered_after:>13,.0f} "
            f"{result.covered_after - result.greedy_covered_after:>12,.0f}"
        )
    print("\n" + cv.distance_assumption())
    store.close()


if __name__ == "__main__":
    main()
