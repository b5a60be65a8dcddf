"""Mixed read/write load against a real server, then an audit of every write.

    .venv/bin/python bench/load.py [--seconds 60] [--clients 32] [--workers 2]
                                   [--write-share 0.25] [--baseline-seconds 10]
                                   [--sites 0]

Starts ``geo-service serve --workers N`` on a new embedded store (or on
``GEO_SERVICE_BENCH_PG`` when set) on loopback, makes an admin and an editor
token, and runs ``--clients`` concurrent clients for ``--seconds``. Each
request is, at random:

- a read (a page of a layer, a bbox query, one feature, a nearest query), or
- a write by the editor: create a new site (POST), change one of its own
  sites (PATCH with If-Match), delete one (DELETE with If-Match), or
  increment a shared counter on one hot site by read-modify-write with
  If-Match, retrying on 412 (the lost-update trap: every client hits it).

``--sites N`` first adds N synthetic green-channel windows over the district
(bench/national.py's bulk path, no audit records), so that the nearest index
is large enough for its upkeep after each write to show.

Afterwards the store is checked against what the clients were told:
every 201 is a site in the store and no site exists twice; every 204'd site
is gone; the hot counter equals the number of increments answered 200;
the audit trail holds exactly one record per successful write. Any 5xx,
transport error or unexpected status is an error. The baseline, measured in
the same run with the same clients, is the read-only run: the same reads with no
writes (issue 20's target: the mixed run keeps at least 0.6 of its throughput);
``/conformance`` (a trivial read) is printed beside it as the server's floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from shapely.geometry import Point

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import start_server, warm_nearest  # noqa: E402
from geo_service.services.access import issue_token  # noqa: E402
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import AuditQuery, open_store  # noqa: E402

MASHANG = "370303009"
HOT_SITE = "st-town-mashang"  # in 马尚, which the editor token may edit
#: Points inside 马尚街道 for new sites (its town station and its surroundings).
NEW_SITE_BOX = (117.985, 36.796, 117.996, 36.803)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    created_twice: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    increments: int = 0
    conflicts: int = 0  # 412s met (and retried) on the hot site
    writes_ok: int = 0
    responses: int = 0  # every HTTP answer, the retries of a contested increment too


def _record(tally: Tally, kind: str, started: float, response: httpx.Response, ok: set[int]):
    tally.latencies[kind].append(time.perf_counter() - started)
    tally.statuses[(kind, response.status_code)] += 1
    if response.status_code not in ok:
        tally.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")
        return False
    return True


async def _read(http: httpx.AsyncClient, tally: Tally, rng: random.Random) -> None:
    lon = 117.93 + rng.random() * 0.25
    lat = 36.70 + rng.random() * 0.20
    choice = rng.random()
    if choice < 0.4:
        url = f"/nearest?lon={lon:.5f}&lat={lat:.5f}&k=5"
    elif choice < 0.6:
        box = f"{lon:.4f},{lat:.4f},{lon + 0.05:.4f},{lat + 0.05:.4f}"
        url = f"/collections/stations/items?bbox={box}"
    elif choice < 0.8:
        url = f"/collections/{rng.choice(['green_channels', 'medical', 'stations'])}/items?limit=50"
    else:
        url = f"/collections/stations/items/{HOT_SITE}"
    started = time.perf_counter()
    response = await http.get(url)
    _record(tally, "read", started, response, {200})


async def _write(
    http: httpx.AsyncClient, tally: Tally, rng: random.Random, client: int, own: dict[str, str]
) -> None:
    choice = rng.random()
    if choice < 0.4 or not own:
        serial = len(tally.created) + len(tally.created_twice) + rng.randrange(10**9)
        site_id = f"load-{client:03d}-{serial}"
        west, south, east, north = NEW_SITE_BOX
        body = {
            "type": "Feature",
            "id": site_id,
            "geometry": {
                "type": "Point",
                "coordinates": [rng.uniform(west, east), rng.uniform(south, north)],
            },
            "properties": {
                "name": f"负载测试驿站 {site_id}",
                "kind": "support_post",
                "address": "马尚街道测试路",
                "town_code": MASHANG,
                "eligible": ["veteran"],
                "status": "open",
                "position_quality": "surveyed",
            },
        }
        started = time.perf_counter()
        response = await http.post("/collections/stations/items", json=body)
        if _record(tally, "create", started, response, {201}):
            if site_id in tally.created:
                tally.created_twice.append(site_id)
            tally.created.add(site_id)
            own[site_id] = response.headers["ETag"]
            tally.writes_ok += 1
    elif choice < 0.7:
        site_id = rng.choice(list(own))
        started = time.perf_counter()
        response = await http.patch(
            f"/collections/stations/items/{site_id}",
            json={"properties": {"phone": f"0533-{rng.randrange(2000000, 9999999)}"}},
            headers={"If-Match": own[site_id]},
        )
        if _record(tally, "patch", started, response, {200}):
            own[site_id] = response.headers["ETag"]
            tally.writes_ok += 1
    elif choice < 0.8:
        site_id = rng.choice(list(own))
        started = time.perf_counter()
        response = await http.delete(
            f"/collections/stations/items/{site_id}", headers={"If-Match": own.pop(site_id)}
        )
        if _record(tally, "delete", started, response, {204}):
            tally.deleted.add(site_id)
            tally.writes_ok += 1
    else:
        await _increment(http, tally)


async def _increment(http: httpx.AsyncClient, tally: Tally) -> None:
    """Read-modify-write of a shared counter: the If-Match check is what
    keeps concurrent increments from overwriting each other."""
    url = f"/collections/stations/items/{HOT_SITE}"
    started = time.perf_counter()
    for _ in range(200):
        current = await http.get(url)
        if current.status_code != 200:
            _record(tally, "increment", started, current, {200})
            return
        unit = current.json()["properties"].get("responsible_unit") or "count 0"
        count = int(unit.split()[1]) if unit.startswith("count ") else 0
        response = await http.patch(
            url,
            json={"properties": {"responsible_unit": f"count {count + 1}"}},
            headers={"If-Match": current.headers["ETag"]},
        )
        if response.status_code == 412:
            tally.conflicts += 1
            continue
        if _record(tally, "increment", started, response, {200}):
            tally.increments += 1
            tally.writes_ok += 1
        return
    tally.errors.append("increment: gave up after 200 conflicts")


async def _client(
    base: str,
    token: str,
    seconds: float,
    write_share: float,
    tally: Tally,
    client: int,
    reads_only_url: str | None,
) -> None:
    rng = random.Random(client)
    own: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"}

    async def counted(_response: httpx.Response) -> None:
        tally.responses += 1

    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, event_hooks={"response": [counted]}
    ) as http:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            try:
                if reads_only_url is not None:
                    started = time.perf_counter()
                    response = await http.get(reads_only_url)
                    _record(tally, "baseline", started, response, {200})
                elif rng.random() < write_share:
                    await _write(http, tally, rng, client, own)
                else:
                    await _read(http, tally, rng)
            except httpx.HTTPError as error:
                tally.errors.append(f"transport: {type(error).__name__}: {error}")


def _run(base, token, seconds, clients, write_share, reads_only_url=None) -> tuple[Tally, float]:
    tally = Tally()

    async def all_clients():
        await asyncio.gather(
            *(
                _client(base, token, seconds, write_share, tally, i, reads_only_url)
                for i in range(clients)
            )
        )

    started = time.perf_counter()
    asyncio.run(all_clients())
    return tally, time.perf_counter() - started


def _add_sites(location: str, n: int, seed: int = 20261205) -> None:
    """N more green channels, copies of a real one at random district points
    (each its own institution, so no window grouping), written by the
    bench's bulk path."""
    from bench.national import bulk_geopackage, bulk_postgis, finish_bulk
    from geo_service.sources.catalog import ValidFeature

    rng = np.random.default_rng(seed)
    store = open_store(location, load_catalog())
    try:
        template = store.all_features("green_channels")[0].properties
        bulk = bulk_geopackage if location.endswith(".gpkg") else bulk_postgis
        for start in range(0, n, 20_000):
            batch = []
            for i in range(start, min(n, start + 20_000)):
                site_id = f"bench-gc-{i:07d}"
                props = {**template, "id": site_id, "name": f"示例：负载窗口{i} 军人优先窗口"}
                lon = 117.93 + rng.random() * 0.25
                lat = 36.70 + rng.random() * 0.20
                batch.append(ValidFeature(site_id, props, Point(lon, lat)))
            bulk(store, "green_channels", batch)
        finish_bulk(store)
    finally:
        store.close()


def _pct(samples: list[float]) -> str:
    if not samples:
        return "-"
    p50, p99 = np.percentile(np.array(samples) * 1000, [50, 99])
    return f"{p50:7.1f} / {p99:7.1f} ms"


def _hot_counter(store) -> int:
    unit = store.get("stations", HOT_SITE).properties.get("responsible_unit") or ""
    return int(unit.split()[1]) if unit.startswith("count ") else 0


def _verify(store_location: str, tally: Tally, hot_before: int, layer_before: int) -> list[str]:
    """What the clients were told against what the store holds."""
    problems = []
    store = open_store(store_location, load_catalog())
    try:
        problems += store.check()
        ids = [f.id for f in store.all_features("stations")]
        if len(ids) != len(set(ids)):
            problems.append("a site id is stored twice")
        present = {i for i in ids if i.startswith("load-")}
        expected = tally.created - tally.deleted
        if present != expected:
            problems.append(
                f"created sites: {len(expected)} expected, {len(present)} stored "
                f"({len(expected - present)} lost, {len(present - expected)} unexpected)"
            )
        if tally.created_twice:
            problems.append(f"{len(tally.created_twice)} ids created twice")
        if len(ids) != layer_before + len(tally.created) - len(tally.deleted):
            problems.append("the stations layer count does not add up")
        counter = _hot_counter(store)
        if counter - hot_before != tally.increments:
            problems.append(
                f"hot counter: {tally.increments} increments answered 200, "
                f"counter moved by {counter - hot_before} (lost updates)"
            )
        _, audited = store.audit_log(AuditQuery(actor="load-editor", limit=1))
        if audited != tally.writes_ok:
            problems.append(f"audit: {audited} records for {tally.writes_ok} successful writes")
    finally:
        store.close()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write-share", type=float, default=0.25)
    parser.add_argument("--sites", type=int, default=0, help="synthetic sites to add first")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="gs-load-"))
    pg = os.environ.get("GEO_SERVICE_BENCH_PG")
    if pg:
        separator = "&" if "?" in pg else "?"
        location = f"{pg}{separator}schema=bench_load_{os.getpid()}"
    else:
        location = str(folder / "load.gpkg")
    process, base = start_server(  # seeds the store
        folder, {"GEO_SERVICE_STORE": location}, "--workers", str(args.workers)
    )
    if args.sites:
        _add_sites(location, args.sites)
    store = open_store(location, load_catalog())
    try:
        token = issue_token(store, "load-editor", "editor", [MASHANG], [MASHANG])
        layer_before = store.count("stations")
        hot_before = _hot_counter(store)
    finally:
        store.close()
    try:
        print(f"server: {base}, {args.workers} workers, store {'PostGIS' if pg else 'embedded'}")
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            f"clients: {args.clients} (asyncio, one process); sites: {layer_before:,} stations, "
            f"{args.sites:,} synthetic green channels added"
        )
        print(f"every worker's nearest index built in {warm_nearest(base, args.workers):.1f} s")
        baseline, base_elapsed = _run(
            base, token, args.baseline_seconds, args.clients, 0, reads_only_url="/conformance"
        )
        reads, reads_elapsed = _run(base, token, args.baseline_seconds, args.clients, 0)
        tally, elapsed = _run(base, token, args.seconds, args.clients, args.write_share)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # workers stuck in a rebuild: no need to wait
            process.kill()
            process.wait(timeout=30)
    problems = _verify(location, tally, hot_before, layer_before)

    base_count = sum(len(v) for v in baseline.latencies.values())
    total = sum(len(v) for v in tally.latencies.values())
    base_rate = base_count / base_elapsed
    read_rate = reads.responses / reads_elapsed
    rate = tally.responses / elapsed
    base_pct = _pct(baseline.latencies["baseline"])
    print(f"\nfloor /conformance:   {base_rate:8.0f} req/s   p50/p99 {base_pct}")
    print(f"read-only run:        {read_rate:8.0f} req/s   p50/p99 {_pct(reads.latencies['read'])}")
    print(
        f"mixed load:           {rate:8.0f} req/s   ratio to the read-only run "
        f"{rate / read_rate:.2f} (target >= 0.6), to the floor {rate / base_rate:.2f}; "
        f"{total / elapsed:.0f} operations/s (a contested increment counted once, "
        f"however many tries: {total / elapsed / read_rate:.2f} of the read-only run)"
    )
    print(f"{'request':<10} {'count':>8}  {'p50 / p99':>21}")
    for kind in ("read", "create", "patch", "delete", "increment"):
        samples = tally.latencies.get(kind, [])
        print(f"{kind:<10} {len(samples):>8}  {_pct(samples):>21}")
    print(
        f"writes answered OK: {tally.writes_ok}; created {len(tally.created)}, "
        f"deleted {len(tally.deleted)}, hot-site increments {tally.increments} "
        f"(412 conflicts met and retried: {tally.conflicts})"
    )
    errors = tally.errors + baseline.errors + reads.errors
    print(f"errors: {len(errors)}")
    for line in errors[:10]:
        print("  ", line)
    print("verification:", "every write accounted for" if not problems else "FAILED")
    for line in problems:
        print("  ", line)
    if pg:
        from geo_service.store.postgis import PostGISStore

        cleanup = PostGISStore(location, load_catalog())
        cleanup.drop()
        cleanup.close()
    shutil.rmtree(folder, ignore_errors=True)
    if errors or problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
