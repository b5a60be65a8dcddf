"""Memory and build time of the columnar nearest index, per site.

    .venv/bin/python bench/index_memory.py [--sites 200000] [--store] [--postgis URL]

Synthetic sites over China in three facility layers (one of windows, grouped
by institution), with kinds, statuses, services, eligible lists and a few
hundred distinct opening-hours expressions, handed to ``SiteIndex.from_rows``
in the batches a store streams (``Store.site_rows``). Printed: build seconds,
the resident memory the index added (RSS delta, which includes the KD-trees'
C++ nodes), the bytes numpy and Python report for it (tracemalloc, a second
build) and the peak during the build, each per site. ``--store`` also
writes the sites into a temporary GeoPackage (plain SQL inserts, for speed)
and times ``SiteIndex.from_store`` reading them back; ``--postgis URL`` the
same on PostGIS (COPY into a schema of its own, dropped afterwards).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.analysis.nearest import SiteIndex  # noqa: E402
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import SiteRows, open_store  # noqa: E402
from geo_service.store.geopackage import _to_blob  # noqa: E402

CHINA = (75.0, 20.0, 134.0, 50.0)
LAYERS = {"stations": 0.2, "green_channels": 0.3, "medical": 0.5}
KINDS = ["bank", "hospital", "support_post", "pharmacy"]
SERVICES = ["priority_queue", "dedicated_window", "legal_aid", "health_checkup", "free_clinic"]
ELIGIBLE = ["active_duty", "military_family", "veteran", "martyr_family", "other_entitled"]
BATCH = 20_000


def synthetic_batches(n: int, seed: int = 20) -> list[tuple[str, SiteRows]]:
    rng = np.random.default_rng(seed)
    hours = [f"Mo-Fr {8 + i % 3:02d}:00-{16 + i % 4:02d}:{i % 60:02d}" for i in range(300)]
    batches = []
    start = 0
    for layer_id, share in LAYERS.items():
        count = int(n * share)
        for offset in range(0, count, BATCH):
            size = min(BATCH, count - offset)
            numbers = range(start + offset, start + offset + size)
            lon = rng.uniform(CHINA[0], CHINA[2], size)
            lat = rng.uniform(CHINA[1], CHINA[3], size)
            grouped = layer_id == "green_channels"
            batches.append(
                (
                    layer_id,
                    SiteRows(
                        ids=[f"{layer_id[:2]}-{i:08d}" for i in numbers],
                        lon=lon,
                        lat=lat,
                        kind=[KINDS[i % 4] for i in numbers],
                        status=["open" if i % 10 else "planned" for i in numbers],
                        services=[
                            orjson.dumps(SERVICES[: 1 + i % len(SERVICES)]).decode()
                            for i in numbers
                        ],
                        eligible=[
                            orjson.dumps(ELIGIBLE[i % 3 : 3 + i % 3]).decode() for i in numbers
                        ],
                        opening_hours=[hours[i % 300] if i % 7 else None for i in numbers],
                        # Three windows per institution, at one address.
                        name=[f"机构{i // 3} 窗口{i % 3}" for i in numbers] if grouped else None,
                        address=[f"某路{i // 3}号" for i in numbers] if grouped else None,
                    ),
                )
            )
        start += count
    return batches


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(batches):
    return SiteIndex.from_rows(iter(batches), None, list(LAYERS), grouped_layers={"green_channels"})


def timed_from_store(store, n: int) -> None:
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    index = SiteIndex.from_store(store, list(LAYERS), grouped_layers={"green_channels"})
    seconds = time.perf_counter() - started
    gc.collect()
    added = rss_bytes() - before
    assert len(index) == n
    print(
        f"from_store ({type(store).__name__}): {seconds:.2f} s "
        f"({seconds / n * 1e6:.1f} µs per site), RSS added {added / n:.0f} bytes per site"
    )


def time_from_postgis(batches, n: int, url: str) -> None:
    import uuid

    separator = "&" if "?" in url else "?"
    store = open_store(f"{url}{separator}schema=bench_{uuid.uuid4().hex[:8]}", load_catalog())
    try:
        with store._transaction() as conn:
            for layer_id, rows in batches:
                table = store._table(store.catalog.layer(layer_id))
                with conn.cursor().copy(f"COPY {table} (id, props, geom) FROM STDIN") as copy:
                    for i, site_id in enumerate(rows.ids):
                        props = {
                            "id": site_id,
                            "name": rows.name[i] if rows.name else site_id,
                            "kind": rows.kind[i],
                            "address": rows.address[i] if rows.address else "某路",
                            "opening_hours": rows.opening_hours[i],
                            "services": orjson.loads(rows.services[i]),
                            "eligible": orjson.loads(rows.eligible[i]),
                            "status": rows.status[i],
                        }
                        copy.write_row(
                            (
                                site_id,
                                orjson.dumps(props).decode(),
                                f"SRID=4326;POINT({float(rows.lon[i])!r} {float(rows.lat[i])!r})",
                            )
                        )
        timed_from_store(store, n)
    finally:
        store.drop()
        store.close()


def time_from_store(batches, n: int) -> None:
    from shapely.geometry import Point

    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder) / "sites.gpkg", catalog)
        with store._transaction() as conn:
            for layer_id, rows in batches:
                conn.executemany(
                    f'INSERT INTO "{layer_id}" (geom, "id", "name", "kind", "address", '
                    '"opening_hours", "services", "eligible", "status") '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            _to_blob(Point(rows.lon[i], rows.lat[i])),
                            rows.ids[i],
                            rows.name[i] if rows.name else rows.ids[i],
                            rows.kind[i],
                            rows.address[i] if rows.address else "某路",
                            rows.opening_hours[i],
                            rows.services[i],
                            rows.eligible[i],
                            rows.status[i],
                        )
                        for i in range(len(rows.ids))
                    ],
                )
        timed_from_store(store, n)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200_000)
    parser.add_argument("--store", action="store_true", help="also time from_store")
    parser.add_argument("--postgis", help="also time from_store on this PostGIS database")
    args = parser.parse_args()
    batches = synthetic_batches(args.sites)
    n = sum(len(rows.ids) for _, rows in batches)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    index = build(batches)
    seconds = time.perf_counter() - started
    gc.collect()
    added = rss_bytes() - before
    assert len(index) == n
    del index
    gc.collect()
    tracemalloc.start()
    index = build(batches)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"sites: {n:,}")
    print(f"build: {seconds:.2f} s ({seconds / n * 1e6:.1f} µs per site)")
    print(f"RSS added by the index: {added / n:.0f} bytes per site ({added / 2**20:.1f} MiB)")
    print(
        f"traced (numpy and Python, no C++ tree nodes): {current / n:.0f} bytes per site, "
        f"peak during the build {peak / n:.0f}"
    )
    print(
        f"columns: {index._base.nbytes() / n:.0f} bytes per site; "
        f"trees: {len(index._trees)} keys, {len({id(t) for t in index._trees.values()})} distinct"
    )
    if args.store:
        del index
        gc.collect()
        time_from_store(batches, n)
    if args.postgis:
        time_from_postgis(batches, n, args.postgis)


if __name__ == "__main__":
    main()
