"""The issue's promise: heavy work never stalls a resident. On a real server
with two job workers, a 20,000-row import, two atlases (A4 and A3) and a site
recommendation run while a resident's map keeps asking for the layers and the
nearest sites; every answer comes back, and comes back while the work goes on
rather than after it.

Before jobs, the import and the printing ran in the server process itself, so
a resident's request could wait behind them; here the numbers are printed
(``-s``) next to those of the same requests on the idle server, for reading,
and the assertions are about order and proportion, never absolute times."""

from __future__ import annotations

import csv
import io
import statistics
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import shapely

from geo_service.services.access import issue_token
from geo_service.sources.catalog import load_catalog
from geo_service.store import open_store
from tests.conftest import running_server

pytestmark = pytest.mark.server

ROWS = 20_000
#: Where the resident stands: 人民公园, in 公园街道.
NEAREST = {"lon": "118.05", "lat": "36.80"}
#: At least this many answers come back while the import runs.
WINDOW = 20
#: The atlases and the site search read the other facility layers: with two
#: workers either may start before or after the import commits, and an atlas
#: drawn after it lists 20,000 more stations (hundreds of index pages), so the
#: work would change from run to run.
OTHER_LAYERS = ["green_channels", "medical", "memorials", "education"]


@dataclass
class Answer:
    path: str
    status: int
    sent: float
    done: float

    @property
    def seconds(self) -> float:
        return self.done - self.sent


def office_token_and_towns(location: str):
    """An admin token for the office, and the district's towns (for positions)."""
    store = open_store(location, load_catalog())
    try:
        towns = store.all_features("towns")
        token = issue_token(store, "office", "admin", [], [town.id for town in towns])
    finally:
        store.close()
    return token, shapely.union_all([town.geometry for town in towns])


def stations_csv(towns, rows: int) -> bytes:
    """A town office's spreadsheet of ``rows`` valid stations, Chinese headers,
    every position inside a town (a little off the edges)."""
    area = towns.buffer(-0.002)
    west, south, east, north = area.bounds
    rng = np.random.default_rng(7)
    points: list[tuple[float, float]] = []
    while len(points) < rows:
        xs, ys = rng.uniform(west, east, rows), rng.uniform(south, north, rows)
        inside = shapely.contains_xy(area, xs, ys)
        points += list(zip(xs[inside].tolist(), ys[inside].tolist(), strict=True))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["编号", "名称", "类型", "地址", "经度", "纬度"])
    for i, (lon, lat) in enumerate(points[:rows]):
        writer.writerow(
            [
                f"busy-{i:05d}",
                f"批量驿站{i}",
                "拥军服务驿站",
                f"测试路{i}号",
                f"{lon:.6f}",
                f"{lat:.6f}",
            ]
        )
    return buffer.getvalue().encode()


def read_map(http: httpx.Client, answers: list[Answer]) -> None:
    """What a resident's map asks for: the layers, then the nearest sites."""
    for path, params in (("/collections", None), ("/nearest", NEAREST)):
        sent = time.monotonic()
        status = http.get(path, params=params).status_code
        answers.append(Answer(path, status, sent, time.monotonic()))


def summary(answers: list[Answer], path: str) -> str:
    times = sorted(a.seconds * 1000 for a in answers if a.path == path)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return (
        f"{path:<12} n={len(times):4d}  p50 {statistics.median(times):7.1f} ms  "
        f"p99 {p99:7.1f} ms  max {times[-1]:7.1f} ms"
    )


class Work(threading.Thread):
    """One piece of heavy work, asked for over HTTP and waited for, timed."""

    def __init__(self, base: str, name: str, method: str, path: str, **request):
        super().__init__(name=name, daemon=True)
        self.base, self.method, self.path, self.request = base, method, path, request
        self.status: int | None = None
        self.body = b""
        self.sent = self.done = 0.0

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=600) as http:
            self.sent = time.monotonic()
            answer = http.request(self.method, self.path, **self.request)
            self.done = time.monotonic()
            self.status, self.body = answer.status_code, answer.content


def test_a_residents_map_is_answered_while_an_import_atlases_and_planning_run(
    tmp_path, server_store
):
    env = {
        **server_store,
        "GEO_SERVICE_JOB_WORKERS": "2",
        "GEO_SERVICE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    with running_server(tmp_path, **env) as base, httpx.Client(base_url=base, timeout=600) as http:
        token, towns = office_token_and_towns(server_store["GEO_SERVICE_STORE"])
        office = {"Authorization": f"Bearer {token}"}
        spreadsheet = stations_csv(towns, ROWS)
        before = http.get("/collections/stations/items", params={"limit": 1}).json()

        idle: list[Answer] = []
        for _ in range(30):
            read_map(http, idle)

        the_import = Work(
            base,
            "import",
            "POST",
            "/collections/stations/import",
            content=spreadsheet,
            headers={**office, "Content-Type": "text/csv"},
        )
        heavy = [
            the_import,
            *(
                Work(
                    base,
                    f"atlas {size}",
                    "POST",
                    "/processes/print-atlas/execution",
                    json={"inputs": {"size": size, "layers": OTHER_LAYERS}},
                )
                for size in ("A4", "A3")
            ),
            Work(
                base,
                "site recommendation",
                "POST",
                "/processes/site-recommendation/execution",
                json={
                    "inputs": {"p": 1, "radius": 650, "layers": OTHER_LAYERS},
                    "response": "document",
                },
            ),
        ]
        for work in heavy:
            work.start()
        # The resident starts reading once the import is being worked on.
        deadline = time.monotonic() + 120
        while not [
            job
            for job in http.get("/jobs", headers=office).json()["jobs"]
            if job["processID"] == "import" and job["status"] == "running"
        ]:
            assert the_import.is_alive(), "the import ended before it was seen running"
            assert time.monotonic() < deadline, "the import never started"
            time.sleep(0.05)

        busy: list[Answer] = []
        while any(work.is_alive() for work in heavy):
            read_map(http, busy)
            time.sleep(0.02)
        for work in heavy:
            work.join()
        after = http.get("/collections/stations/items", params={"limit": 1}).json()

    for work in heavy:
        assert work.status == 200, (work.name, work.body[:500])
    assert after["numberMatched"] == before["numberMatched"] + ROWS  # the import landed

    heavy_seconds = max(w.done for w in heavy) - min(w.sent for w in heavy)
    backend = (
        "PostGIS" if server_store["GEO_SERVICE_STORE"].startswith("postgres") else "GeoPackage"
    )
    print(f"\nheavy work ({backend}):")
    for work in heavy:
        print(f"  {work.name:<20} {work.done - work.sent:6.1f} s")
    print(f"  all of it            {heavy_seconds:6.1f} s")
    for label, answers in (("idle server", idle), ("during the work", busy)):
        print(f"{label}:")
        for path in ("/collections", "/nearest"):
            print("  " + summary(answers, path))
    worst = max((a for a in busy if a.path == "/nearest"), key=lambda a: a.seconds)
    print(f"slowest /nearest sent {worst.sent - the_import.done:+.1f} s from the import's end")

    assert all(answer.status == 200 for answer in idle + busy)
    collections = [a for a in busy if a.path == "/collections"]
    slowest = max(a.seconds for a in collections)
    assert heavy_seconds > 5 * slowest, (heavy_seconds, slowest)
    # Interleaved with the work, not queued behind it: every answer to a
    # request sent while the import ran came back before it finished, save the
    # one in flight at that moment, and there were many of them.
    during = [a for a in collections if a.sent < the_import.done]
    assert len(during) >= WINDOW, f"only {len(during)} answers while the import ran"
    assert all(answer.done < the_import.done for answer in during[:-1])
