"""Benchmark nearest_sites against its floor and its naive peers, in one run.

    .venv/bin/python bench/nearest.py [--sizes 1000,100000,1000000] [--queries 2000]
                                      [--exact-queries 10000] [--http-seconds 10]

Synthetic sites: 1,000 and 100,000 spread over Shandong, 1,000,000 over China
(a national station network is about 650,000). Printed as a table of p50/p99
latency per query (k=5) and ratios against a bare scipy cKDTree query on the
same points, the floor. Peers: a vectorised brute-force haversine scan and
geopandas ``sjoin_nearest`` for one point (the naive approach). PostGIS is
measured only when ``GEO_SERVICE_BENCH_PG`` names a reachable database.

Exactness: the answers of ``nearest_sites`` are compared with a brute-force
scan (haversine to shortlist generously, then geodesic) on random queries.

HTTP: with ``wrk`` installed, ``/nearest`` requests per second and latency
against a trivial FastAPI endpoint in the same server, same run (loopback only,
bounded in time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from shapely.geometry import Point

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.analysis.nearest import SiteIndex, _ecef, ecef_point, nearest_sites  # noqa: E402
from geo_service.sources.crs import GEOD  # noqa: E402
from geo_service.store import StoredFeature  # noqa: E402

SHANDONG = (114.8, 34.4, 122.7, 38.4)
CHINA = (75.0, 20.0, 134.0, 50.0)
K = 5
#: wrk script: each request a random resident in Zhangdian, k=5, all layers.
RANDOM_POINTS_LUA = """
math.randomseed(20261129)
request = function()
  local lon = 117.93 + math.random() * 0.25
  local lat = 36.70 + math.random() * 0.20
  return wrk.format("GET", string.format("/nearest?lon=%.6f&lat=%.6f&k=5", lon, lat))
end
"""


def synthetic_sites(n: int, box, seed: int = 7) -> list[StoredFeature]:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(box[0], box[2], n)
    lat = rng.uniform(box[1], box[3], n)
    kinds = np.array(["town_station", "community_station", "support_post"])[rng.integers(0, 3, n)]
    return [
        StoredFeature(
            "stations",
            f"s{i:07d}",
            {
                "id": f"s{i:07d}",
                "kind": str(kinds[i]),
                "status": "open",
                "services": ["policy_consultation"],
                "eligible": ["veteran"],
                "opening_hours": None,
            },
            Point(lon[i], lat[i]),
        )
        for i in range(n)
    ]


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def time_each(fn, points) -> list[float]:
    out = []
    for lon, lat in points:
        start = time.perf_counter()
        fn(lon, lat)
        out.append(time.perf_counter() - start)
    return out


def haversine_scan(lon_arr, lat_arr):
    lam, phi = np.radians(lon_arr), np.radians(lat_arr)
    cos_phi = np.cos(phi)

    def scan(lon, lat, k=K):
        l0, p0 = np.radians(lon), np.radians(lat)
        a = np.sin((phi - p0) / 2) ** 2 + np.cos(p0) * cos_phi * np.sin((lam - l0) / 2) ** 2
        d = 2 * 6371008.8 * np.arcsin(np.sqrt(a))
        idx = np.argpartition(d, k)[:k]
        return idx[np.argsort(d[idx])], d

    return scan


def exact_check(index: SiteIndex, queries, rng) -> int:
    """Count disagreements with a brute-force geodesic answer over the
    index's own sites (in its row order, not necessarily the given one)."""
    features = index.features
    ids = np.array([f.id for f in features])
    lon_arr = np.array([f.geometry.x for f in features])
    lat_arr = np.array([f.geometry.y for f in features])
    scan = haversine_scan(lon_arr, lat_arr)
    wrong = 0
    for lon, lat in queries:
        k = int(rng.integers(1, 11))
        _idx, d = scan(lon, lat, k)
        kth = np.partition(d, k - 1)[k - 1]
        # Sphere vs ellipsoid differ by < 0.6 %: shortlist within 2 % of the k-th.
        shortlist = np.flatnonzero(d <= kth * 1.02 + 1.0)
        geo = GEOD.inv(
            np.full(len(shortlist), lon),
            np.full(len(shortlist), lat),
            lon_arr[shortlist],
            lat_arr[shortlist],
        )[2]
        expected = sorted(zip(np.round(geo, 6), ids[shortlist], strict=True))[:k]
        got = [(round(r.distance_m, 6), r.feature.id) for r in nearest_sites(index, lon, lat, k)]
        wrong += got != [(float(d_), str(i)) for d_, i in expected]
    return wrong


def bench_size(n: int, queries: int, exact_queries: int) -> dict:
    box = CHINA if n >= 1_000_000 else SHANDONG
    t0 = time.perf_counter()
    features = synthetic_sites(n, box)
    index = SiteIndex(features)
    build_s = time.perf_counter() - t0
    lon_arr = np.array([f.geometry.x for f in features])
    lat_arr = np.array([f.geometry.y for f in features])
    rng = np.random.default_rng(n)
    points = list(
        zip(rng.uniform(box[0], box[2], queries), rng.uniform(box[1], box[3], queries), strict=True)
    )
    tree = cKDTree(_ecef(lon_arr, lat_arr))

    def bare(lon, lat):
        tree.query(ecef_point(lon, lat), k=K)

    row = {"n": n, "build_s": build_s}
    # Interleaved, query by query: on a shared machine, noise then hits the
    # floor and the measured function alike, so their ratio stays honest.
    floor_times, ours_times = [], []
    for lon, lat in points:
        start = time.perf_counter()
        bare(lon, lat)
        middle = time.perf_counter()
        nearest_sites(index, lon, lat, K)
        floor_times.append(middle - start)
        ours_times.append(time.perf_counter() - middle)
    row["ckdtree"] = percentiles(floor_times)
    row["nearest_sites"] = percentiles(ours_times)
    scan = haversine_scan(lon_arr, lat_arr)
    few = points[: max(20, queries // (1 if n <= 1000 else 20 if n <= 100_000 else 100))]
    row["brute_haversine"] = percentiles(time_each(scan, few))
    try:
        import geopandas as gpd

        sites = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon_arr, lat_arr), crs=4326)
        sites.sindex  # built once, as a naive server would keep it  # noqa: B018

        def sjoin(lon, lat):
            query = gpd.GeoDataFrame(geometry=[Point(lon, lat)], crs=4326)
            with warnings.catch_warnings():
                # The naive call on degrees, as written in a hurry; its warning is the point.
                warnings.filterwarnings("ignore", "Geometry is in a geographic CRS")
                gpd.sjoin_nearest(query, sites, distance_col="d")

        row["sjoin_nearest_k1"] = percentiles(time_each(sjoin, few[:20]))
    except Exception as error:  # a peer that fails is reported, not fatal
        row["sjoin_nearest_k1"] = (float("nan"), float("nan"))
        print(f"  sjoin_nearest failed: {error}")
    row["postgis_knn"] = postgis_knn(lon_arr, lat_arr, few[:200])
    t0 = time.perf_counter()
    batch = points[: min(queries, 2000)]
    for lon, lat in batch:
        nearest_sites(index, lon, lat, K)
    row["batch_qps"] = len(batch) / (time.perf_counter() - t0)
    exact_points = list(
        zip(
            rng.uniform(box[0], box[2], exact_queries),
            rng.uniform(box[1], box[3], exact_queries),
            strict=True,
        )
    )
    t0 = time.perf_counter()
    row["wrong"] = exact_check(index, exact_points, rng)
    row["exact_queries"] = exact_queries
    row["exact_s"] = time.perf_counter() - t0
    return row


def postgis_knn(lon_arr, lat_arr, points) -> tuple[float, float] | None:
    """``ORDER BY geom <-> point LIMIT k`` with a GiST index, over a loopback
    connection, when ``GEO_SERVICE_BENCH_PG`` names a database (else None)."""
    url = os.environ.get("GEO_SERVICE_BENCH_PG")
    if not url:
        return None
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("DROP TABLE IF EXISTS bench_sites")
        conn.execute("CREATE UNLOGGED TABLE bench_sites (id integer, lon float8, lat float8)")
        with conn.cursor().copy("COPY bench_sites (id, lon, lat) FROM STDIN") as copy:
            for i, (lon, lat) in enumerate(zip(lon_arr.tolist(), lat_arr.tolist(), strict=True)):
                copy.write_row((i, lon, lat))
        conn.execute(
            "ALTER TABLE bench_sites ADD COLUMN geom geometry(Point, 4326); "
            "UPDATE bench_sites SET geom = ST_SetSRID(ST_MakePoint(lon, lat), 4326); "
            "CREATE INDEX ON bench_sites USING gist (geom); ANALYZE bench_sites"
        )
        sql = (
            "SELECT id FROM bench_sites ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%s, %s), 4326) "
            f"LIMIT {K}"
        )
        conn.execute(sql, (118.0, 36.8)).fetchall()  # warm the plan and the cache
        samples = time_each(lambda lo, la: conn.execute(sql, (lo, la)).fetchall(), points)
        conn.execute("DROP TABLE bench_sites")
    return percentiles(samples)


def print_table(rows: list[dict]) -> None:
    print("\nin-process, k=5 (microseconds; ratio = p50 / bare cKDTree p50)")
    header = f"{'sites':>9} {'method':<18} {'p50 µs':>10} {'p99 µs':>10} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        floor = row["ckdtree"][0]
        for method in (
            "ckdtree",
            "nearest_sites",
            "brute_haversine",
            "sjoin_nearest_k1",
            "postgis_knn",
        ):
            if row.get(method) is None:
                continue
            p50, p99 = row[method]
            print(f"{row['n']:>9,} {method:<18} {p50:>10.1f} {p99:>10.1f} {p50 / floor:>8.2f}")
        print(
            f"{'':>9} batch throughput {row['batch_qps']:,.0f} queries/s; index build "
            f"{row['build_s']:.2f} s; exact: {row['exact_queries'] - row['wrong']:,}/"
            f"{row['exact_queries']:,} agree with brute force ({row['exact_s']:.0f} s)"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_http(seconds: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("\nHTTP: skipped (wrk is not installed; apt-get install wrk)")
        return
    port = free_port()
    folder = tempfile.mkdtemp()
    env = dict(
        os.environ,
        GEO_SERVICE_STORE=str(Path(folder) / "bench.gpkg"),
        GEO_SERVICE_BENCH_TRIVIAL="1",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.http_app:create_bench_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)
        # Every /nearest request asks from a different random point in the
        # district, so no per-site memo is always warm.
        script = Path(folder) / "random_points.lua"
        script.write_text(RANDOM_POINTS_LUA)
        results = {}
        for name, path, extra in (
            ("trivial", "/bench/trivial", []),
            ("nearest", "/nearest", ["-s", str(script)]),
        ):
            subprocess.run([wrk, "-t1", "-c16", "-d2s", *extra, base + path], capture_output=True)
            out = subprocess.run(
                [wrk, "-t2", "-c32", f"-d{seconds}s", "--latency", *extra, base + path],
                capture_output=True,
                text=True,
            ).stdout
            rps = float(
                next(
                    line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")
                )
            )
            p99 = next(
                line.split()[1] for line in out.splitlines() if line.strip().startswith("99%")
            )
            errors = [line for line in out.splitlines() if "Non-2xx" in line or "errors" in line]
            results[name] = (rps, p99, errors)
        print(
            f"\nHTTP over loopback (wrk -t2 -c32 -d{seconds}s, one uvicorn worker; "
            "/nearest from random points)"
        )
        for name, (rps, p99, errors) in results.items():
            print(f"  {name:<8} {rps:>9,.0f} req/s   p99 {p99:>8}   {' '.join(errors)}")
        print(f"  ratio /nearest : trivial = {results['nearest'][0] / results['trivial'][0]:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--exact-queries", type=int, default=10_000)
    parser.add_argument("--http-seconds", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"measuring {n:,} sites ...", flush=True)
        rows.append(bench_size(n, args.queries, args.exact_queries))
    print_table(rows)
    if os.environ.get("GEO_SERVICE_BENCH_PG"):
        print(
            "\npostgis_knn: ORDER BY geom <-> point LIMIT 5 with a GiST index, loopback "
            "connection (planar KNN on degrees: the index's order, not geodesic)"
        )
        for row in rows:
            if row.get("postgis_knn"):
                ratio = row["postgis_knn"][0] / row["nearest_sites"][0]
                print(
                    f"  {row['n']:>9,} sites: nearest_sites is {ratio:.1f}x faster than PostGIS KNN"
                )
    else:
        print("\nPostGIS: skipped (set GEO_SERVICE_BENCH_PG to a reachable database)")
    if args.http_seconds > 0:
        bench_http(args.http_seconds)


if __name__ == "__main__":
    main()
