"""How soon every worker answers with a write, and what the write costs readers.

    .venv/bin/python bench/freshness.py [--workers 3] [--clients 16] [--writes 3]
                                        [--idle-seconds 3] [--after-seconds 3]

Starts ``geo-service serve --workers N`` on a new embedded store (or a new
schema of ``GEO_SERVICE_BENCH_PG`` when set), then calls
``measure_freshness``, which the national bench can call on its own server:
``--clients`` concurrent clients (one connection pool each, so they spread
over the workers) ask ``/nearest`` at one spot without pause; after
``idle_s`` one site is created exactly there through the API, and for
``after_s`` more every answer is checked for it. Printed per write:

- ``last stale``: how long after the write was answered (201) the last
  answer WITHOUT the site was received (issue 20's target: within 1 s);
- ``first fresh``: per client, when its first answer with the site came;
- the ``/nearest`` latencies sent in the second after the write (max, p99)
  against the idle p99 of the same clients before it (target: max ≤ 10×).

The site is deleted again afterwards, so writes can be repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import start_server  # noqa: E402
from geo_service.services.access import issue_token  # noqa: E402
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import open_store  # noqa: E402

__all__ = ["Freshness", "measure_freshness"]

#: Inside 马尚街道, near its town station: the new site stands exactly here.
SPOT = (117.9905, 36.8005)


@dataclass
class Freshness:
    """One write seen by concurrent readers (seconds from the write's 201)."""

    write_ms: float
    requests: int
    idle_p99_ms: float
    last_stale_s: float | None  # None: no answer after the 201 lacked the site
    first_fresh_s: list[float]  # per client that saw it
    second_max_ms: float
    second_p99_ms: float
    errors: int

    def lines(self) -> list[str]:
        stale = "none" if self.last_stale_s is None else f"{self.last_stale_s * 1000:.0f} ms"
        fresh = sorted(self.first_fresh_s)
        return [
            f"write answered in {self.write_ms:.0f} ms; last stale answer {stale} after it; "
            f"first fresh per client: min {fresh[0] * 1000:.0f} / max {fresh[-1] * 1000:.0f} ms"
            if fresh
            else f"write answered in {self.write_ms:.0f} ms; NO client saw the site",
            f"/nearest in the second after the write: max {self.second_max_ms:.1f} ms, "
            f"p99 {self.second_p99_ms:.1f} ms; idle p99 {self.idle_p99_ms:.1f} ms "
            f"(max = {self.second_max_ms / self.idle_p99_ms:.1f}x idle p99); "
            f"{self.requests} requests, {self.errors} errors",
        ]


async def measure_freshness(
    base: str,
    authorization: str,
    *,
    clients: int = 16,
    idle_s: float = 3.0,
    after_s: float = 3.0,
    spot: tuple[float, float] = SPOT,
) -> Freshness:
    """Create one station at ``spot`` through the API of the server at
    ``base`` (``authorization``: an admin's ``Bearer ...``) while ``clients``
    ask ``/nearest`` there; delete it again afterwards."""
    params = {"lon": f"{spot[0]}", "lat": f"{spot[1]}", "layers": "stations", "k": "1"}
    # Per request: (client, sent, received, first id, ok)
    seen: list[tuple[int, float, float, str | None, bool]] = []
    stop = asyncio.Event()

    async def resident(number: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    answer = await http.get("/nearest", params=params)
                    ok = answer.status_code == 200
                    features = answer.json()["features"] if ok else []
                    first = features[0]["id"] if features else None
                except (httpx.HTTPError, ValueError):
                    ok, first = False, None
                seen.append((number, sent, time.monotonic(), first, ok))

    readers = [asyncio.create_task(resident(n)) for n in range(clients)]
    await asyncio.sleep(idle_s)
    site = {
        "type": "Feature",
        "id": f"fresh-{uuid.uuid4().hex[:10]}",  # a deleted id stays reserved: a new one each time
        "geometry": {"type": "Point", "coordinates": list(spot)},
        "properties": {
            "name": "示例：新建拥军服务站（时效测试）",
            "kind": "support_post",
            "address": "马尚街道测试路1号",
            "eligible": ["veteran"],
            "status": "open",
            "position_quality": "surveyed",
            "sample": True,
        },
    }
    headers = {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        sent = time.monotonic()
        created = await http.post("/collections/stations/items", json=site, headers=headers)
        written = time.monotonic()
        if created.status_code != 201:
            stop.set()
            await asyncio.gather(*readers)
            raise SystemExit(f"the write failed: {created.status_code} {created.text}")
        new_id = created.json()["id"]
        await asyncio.sleep(after_s)
        stop.set()
        await asyncio.gather(*readers)
        current = await http.get(f"/collections/stations/items/{new_id}")
        await http.delete(
            f"/collections/stations/items/{new_id}",
            headers={**headers, "If-Match": current.headers["ETag"]},
        )

    idle = [(done - start) * 1000 for _, start, done, _, ok in seen if ok and done < sent]
    second = [
        (done - start) * 1000 for _, start, done, _, ok in seen if written <= start < written + 1
    ]
    stale = [
        done - written for _, start, done, first, _ in seen if start > written and first != new_id
    ]
    first_fresh: dict[int, float] = {}
    for client, _, done, first, _ in sorted(seen, key=lambda r: r[2]):
        if first == new_id and client not in first_fresh:
            first_fresh[client] = done - written
    return Freshness(
        write_ms=(written - sent) * 1000,
        requests=len(seen),
        idle_p99_ms=float(np.percentile(idle, 99)),
        last_stale_s=max(stale) if stale else None,
        first_fresh_s=list(first_fresh.values()),
        second_max_ms=max(second),
        second_p99_ms=float(np.percentile(second, 99)),
        errors=sum(1 for *_, ok in seen if not ok),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--writes", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--after-seconds", type=float, default=3.0)
    args = parser.parse_args()

    pg = os.environ.get("GEO_SERVICE_BENCH_PG")
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as folder:
        if pg:
            separator = "&" if "?" in pg else "?"
            location = f"{pg}{separator}schema=bench_fresh_{uuid.uuid4().hex[:10]}"
        else:
            location = str(Path(folder) / "store.gpkg")
        process, base = start_server(
            Path(folder), {"GEO_SERVICE_STORE": location}, "--workers", str(args.workers)
        )
        store = open_store(location, load_catalog())
        try:
            towns = [town.id for town in store.all_features("towns")]
            token = issue_token(store, "bench", "admin", [], towns)
            backend = "PostGIS" if pg else "GeoPackage"
            print(f"{backend}, {args.workers} workers, {args.clients} clients")
            for number in range(1, args.writes + 1):
                result = asyncio.run(
                    measure_freshness(
                        base,
                        f"Bearer {token}",
                        clients=args.clients,
                        idle_s=args.idle_seconds,
                        after_s=args.after_seconds,
                    )
                )
                for line in result.lines():
                    print(f"write {number}: {line}")
        finally:
            process.terminate()
            process.wait(timeout=30)
            if pg:
                store.drop()
            store.close()


if __name__ == "__main__":
    main()
