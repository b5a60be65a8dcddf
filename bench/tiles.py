"""Vector tiles of a dense point layer: the embedded store against ``ST_AsMVT``.

    GEO_SERVICE_BENCH_PG=postgresql://geo:geo@127.0.0.1/geo_test \\
        .venv/bin/python bench/tiles.py [--points 100000] [--tiles 200]

Fills a fresh GeoPackage and a fresh PostGIS schema with the same synthetic
stations around Zibo (every one marked synthetic: clusters around ten town
seats, the rest uniform over ~60 x 50 km; fixed seed), through the bulk paths
of ``bench/national.py``. Then times ``store.tile`` at zooms 10-14 over the
points (the same ``--tiles`` tiles on both stores) and prints tiles/s,
p50/p99 and the ratio, and the bytes of the densest zoom-10 tile with every
site and name in it (what tiles were before thinning) and as served now.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from shapely.geometry import Point

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.national import bulk_geopackage, bulk_postgis, pcts, tile_of, timed  # noqa: E402
from geo_service.sources.catalog import ValidFeature, load_catalog  # noqa: E402
from geo_service.store import Store, open_store  # noqa: E402
from geo_service.store.tiles import query_box, tile_bounds  # noqa: E402

LAYER = "stations"
ZOOMS = (10, 11, 12, 13, 14)
#: Zibo's ten town seats, roughly: where the clusters are.
SEATS = [
    (118.05, 36.80),
    (118.10, 36.82),
    (117.97, 36.80),
    (118.30, 36.93),
    (118.05, 36.50),
    (117.85, 36.65),
    (118.20, 36.70),
    (118.45, 36.85),
    (117.95, 36.95),
    (118.35, 36.60),
]
KINDS = ("community_station", "town_station", "support_post", "support_base", "district_centre")


def synthetic_stations(n: int, seed: int = 20261205) -> list[ValidFeature]:
    rng = np.random.default_rng(seed)
    clustered = n * 2 // 3
    seat = rng.integers(0, len(SEATS), clustered)
    centres = np.array(SEATS)[seat]
    spread = rng.normal(0, 0.03, (clustered, 2))
    uniform = rng.uniform((117.7, 36.45), (118.5, 36.95), (n - clustered, 2))
    xy = np.vstack([centres + spread, uniform])
    kinds = rng.choice(KINDS, n, p=(0.8, 0.1, 0.06, 0.02, 0.02))
    out = []
    for i, ((x, y), kind) in enumerate(zip(xy.tolist(), kinds.tolist(), strict=True)):
        fid = f"bench-{i:07d}"
        props = {
            "id": fid,
            "name": f"示例：淄博合成服务站{i:07d}",
            "kind": kind,
            "status": "open",
            "sample": True,
            "source": "bench/tiles.py (synthetic)",
        }
        out.append(ValidFeature(fid, props, Point(x, y)))
    return out


def fill(store: Store, features: list[ValidFeature]) -> None:
    bulk = bulk_geopackage if store.location.endswith(".gpkg") else bulk_postgis
    for start in range(0, len(features), 20_000):
        bulk(store, LAYER, features[start : start + 20_000])
    if not store.location.endswith(".gpkg"):
        with store._reading() as conn:  # type: ignore[attr-defined]
            conn.execute("ANALYZE")


def tiles_over(features: list[ValidFeature], n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(features), n)
    zooms = rng.choice(ZOOMS, n)
    return [
        tile_of(features[i].geometry.x, features[i].geometry.y, int(z))
        for i, z in zip(picks.tolist(), zooms.tolist(), strict=True)
    ]


def unthinned_bytes(store: Store, z: int, x: int, y: int) -> int:
    """The tile as it was before thinning: every site, with its name."""
    import mapbox_vector_tile

    metres, _ = tile_bounds(z, x, y)
    page = store.query(LAYER, bbox=query_box(z, x, y), limit=10_000_000)
    return len(
        mapbox_vector_tile.encode(
            [
                {
                    "name": LAYER,
                    "features": [
                        {
                            "geometry": Point(*_mercator(f.geometry.x, f.geometry.y)),
                            "properties": {
                                "id": f.id,
                                **{k: f.properties[k] for k in ("name", "kind", "status")},
                            },
                        }
                        for f in page.features
                    ],
                }
            ],
            default_options={"quantize_bounds": metres, "extents": 4096, "y_coord_down": False},
        )
    )


def _mercator(lon: float, lat: float) -> tuple[float, float]:
    r = 6378137.0
    return r * math.radians(lon), r * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--tiles", type=int, default=200, help="tiles timed on each store")
    args = parser.parse_args()
    catalog = load_catalog()
    features = synthetic_stations(args.points)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    stores: dict[str, Store] = {}
    t0 = time.perf_counter()
    stores["geopackage"] = open_store(tmp / "tiles.gpkg", catalog)
    pg = os.environ.get("GEO_SERVICE_BENCH_PG")
    if pg:
        sep = "&" if "?" in pg else "?"
        stores["postgis"] = open_store(f"{pg}{sep}schema=b_{uuid.uuid4().hex[:10]}", catalog)
    try:
        for store in stores.values():
            fill(store, features)
        print(f"{args.points:,} synthetic stations loaded in {time.perf_counter() - t0:.0f} s")
        tile_list = tiles_over(features, args.tiles, seed=7)
        rates = {}
        for label, store in stores.items():
            store.tile(LAYER, *tile_list[0])  # warm the connection and caches
            sizes: list[int] = []
            samples = timed(
                lambda t, s=store, out=sizes: out.append(len(s.tile(LAYER, *t))),
                tile_list,
                float("inf"),
            )
            p50, p99 = pcts(samples)
            rates[label] = len(samples) / sum(samples)
            print(
                f"{label:<10} store.tile z{ZOOMS[0]}-{ZOOMS[-1]}: p50 {p50:.1f} ms, p99 "
                f"{p99:.1f} ms, {rates[label]:,.1f} tiles/s (median {np.median(sizes):,.0f} "
                f"bytes, {len(samples)} tiles)"
            )
        if len(rates) == 2:
            ratio = rates["geopackage"] / rates["postgis"]
            print(f"tiles/s ratio GeoPackage : PostGIS = {ratio:.2f} (target >= 0.5)")
        embedded = stores["geopackage"]
        z10 = max({t for t in tile_list if t[0] == 10}, key=lambda t: len(embedded.tile(LAYER, *t)))
        sites = embedded.query(LAYER, bbox=tile_bounds(*z10)[1], limit=1).number_matched
        before = unthinned_bytes(embedded, *z10)
        after = {label: len(store.tile(LAYER, *z10)) for label, store in stores.items()}
        print(
            f"densest z10 tile {z10}: {sites:,} sites; every site with its name {before:,} "
            "bytes; thinned without names "
            + ", ".join(f"{k} {v:,} bytes" for k, v in after.items())
        )
    finally:
        for store in stores.values():
            if not store.location.endswith(".gpkg"):
                store.drop()  # type: ignore[attr-defined]
            store.close()


if __name__ == "__main__":
    main()
