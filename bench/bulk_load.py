"""``geo-service db load`` against the bench's bulk baseline, both stores.

    .venv/bin/pip install -e '.[build,scale]'
    GEO_SERVICE_BENCH_PG=postgresql://geo:geo@127.0.0.1/geo_test \\
        .venv/bin/python bench/bulk_load.py [--scale 0.04]

The synthetic national set of ``bench/national_data.py`` (``--scale 1.0`` is
the 2.65M sites; 0.04 about 106k) is written into an office's GeoPackage,
then, into a fresh store of each kind:

- baseline: the bench-only bulk functions of ``bench/national.py``
  (``bulk_geopackage``: ``executemany`` and the R-tree filled from the
  points; ``bulk_postgis``: ``COPY``) on features already built and never
  checked, timed as ``national.py`` times them (the calls alone);
- db load: ``services.loading.load_store``, what ``geo-service db load``
  runs, end to end: the source read in chunks and checked (the fast path:
  the office file was written by the service under the same catalog, so
  its rows are read raw and get the cheap checks; the towns are validated
  fully), ``Store.load_layers`` (the towns come along).

Rows/s of both and their ratio (the target: db load >= 0.8 x baseline), and
where db load's time goes (raw read, cheap checks, write into each store).
Timings are printed, never asserted; the machine's load is printed first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.national import (  # noqa: E402
    CHUNK,
    FACILITY_LAYERS,
    bulk_geopackage,
    bulk_postgis,
    town_features,
    valid_features,
)
from bench.national_data import generate, national_layers_dir  # noqa: E402
from geo_service.services.loading import (  # noqa: E402
    LOAD_CHUNK,
    _checked_rows,
    load_store,
    trusted_source,
)
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; scale {args.scale}")
    data = generate(args.scale, args.seed)
    folder = Path(tempfile.mkdtemp(prefix="bulk-load-"))
    catalog = load_catalog(national_layers_dir(folder))
    source = folder / "office.gpkg"
    office = open_store(source, catalog)

    def chunks(layer_id):
        table = data.layers[layer_id]
        return (valid_features(table, s, s + CHUNK) for s in range(0, len(table), CHUNK))

    office.load_layers(
        {"towns": [town_features(catalog, data)], **{k: chunks(k) for k in FACILITY_LAYERS}},
        actor="bench",
        source="generated",
        sha256="",
    )
    facility_rows = sum(len(data.layers[k]) for k in FACILITY_LAYERS)
    all_rows = facility_rows + office.count("towns")
    targets = {"geopackage": lambda: str(folder / f"{uuid.uuid4().hex}.gpkg")}
    pg = os.environ.get("GEO_SERVICE_BENCH_PG")
    if pg:
        separator = "&" if "?" in pg else "?"
        targets["postgis"] = lambda: f"{pg}{separator}schema=bulk_{uuid.uuid4().hex[:10]}"
    for kind, location in targets.items():
        bulk = bulk_geopackage if kind == "geopackage" else bulk_postgis
        store = open_store(location(), catalog)
        seconds = 0.0
        for layer_id in FACILITY_LAYERS:
            for batch in chunks(layer_id):
                t0 = time.perf_counter()
                bulk(store, layer_id, batch)
                seconds += time.perf_counter() - t0
        baseline = facility_rows / seconds
        _drop(store)
        store = open_store(location(), catalog)
        t0 = time.perf_counter()
        load_store(office, store, source, actor="db load")
        loaded = all_rows / (time.perf_counter() - t0)
        problems = store.check()
        _drop(store)
        print(
            f"{kind}: baseline {facility_rows:,} rows at {baseline:,.0f} rows/s; db load "
            f"{all_rows:,} rows at {loaded:,.0f} rows/s = {loaded / baseline:.2f} x baseline; "
            f"check: {problems or 'clean'}"
        )
    # Where db load's time goes, per facility row: the fast path (a file this
    # service wrote under the same catalog), stage by stage, into each store.
    codes = {town.id for town in office.all_features("towns")}
    t0 = time.perf_counter()
    read = [list(office.stream_rows(k, chunk=LOAD_CHUNK)) for k in FACILITY_LAYERS]
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    checked = [
        list(_checked_rows(catalog, catalog.layer(k), iter(r), codes, source.name))
        for k, r in zip(FACILITY_LAYERS, read, strict=True)
    ]
    check_s = time.perf_counter() - t0
    stages = {"read": read_s, "cheap checks": check_s}
    for kind, location in targets.items():
        store = open_store(location(), catalog)
        t0 = time.perf_counter()
        store.load_layers(
            {k: iter(c) for k, c in zip(FACILITY_LAYERS, checked, strict=True)},
            actor="bench",
            source="generated",
            sha256="",
        )
        stages[f"write ({kind})"] = time.perf_counter() - t0
        _drop(store)
    print(
        f"db load (fast path), us per row: {trusted_source(office, catalog)=}; "
        + ", ".join(f"{k} {v / facility_rows * 1e6:.1f}" for k, v in stages.items())
    )


def _drop(store) -> None:
    if hasattr(store, "drop"):
        store.drop()
    store.close()


if __name__ == "__main__":
    main()
