"""Does heavy work stall residents' requests? Light reads idle and under jobs, and the job cache.

    .venv/bin/python bench/stall.py [--requests 400] [--clients 4] [--workers 2]
                                    [--rows 20000] [--think 0.05]
                                    [--store postgresql://USER:PASSWORD@127.0.0.1/DB] [--quick]

The acceptance bench of the jobs engine (heavy work as OGC API - Processes
jobs in a bounded pool of worker processes). In one run it starts a real
``geo-service serve`` (one server process, ``GEO_SERVICE_JOB_WORKERS`` =
``--workers``, queue at its default) on loopback on a fresh temporary store
(embedded by default; with ``--store postgresql://...`` a new schema of that
database, dropped afterwards), makes an admin token with
``geo-service tokens add``, and measures:

1. idle: ``--clients`` concurrent clients (asyncio, one process, each pausing
   ``--think`` seconds between requests, as residents do) send
   ``--requests`` ``GET /collections`` and as many ``GET /nearest?lon=&lat=``
   (random points in the district, lon 117.95-118.15, lat 36.70-36.88);
   p50, p99 and max latency as the client sees it;
2. under load: the same clients, from the moment the heavy work is submitted
   until all of it has finished (so the count differs from idle), while the
   server runs at once
   - a ``--rows``-row CSV import (Chinese headers, as town offices write them;
     points inside their towns) into ``green_channels``, a real write, through
     ``POST /collections/green_channels/import`` (synchronous: the body is
     larger than the 1 MB limit of ``/processes/import/execution``);
   - 4 atlases, A4/A3 x portrait/landscape, async
     (``POST /processes/print-atlas/execution``, ``Prefer: respond-async``,
     then polling ``/jobs/{id}`` every 0.5 s);
   - 4 site recommendations (MCLP, p=2) with radii 700, 900, 1100, 1300 m,
     async the same way.
   The atlases print every facility layer but ``green_channels`` and the
   recommendations plan ``stations``: the import's layer is left out of both
   so that the work they do does not depend on when the import commits (an
   atlas with 20,000 more sites is another, much larger job). A submission
   refused with 503 (the job queue is full: 9 jobs against a queue of 8) is
   retried after its ``Retry-After``, counted apart from errors;
3. cache: ``GET /print/atlas.pdf?size=A4&layers=...`` twice on the idle
   server after the load, no change in between: the first is computed (the
   import changed the data since the load's A4 atlas; the bench checks that a
   new job ran), the second should come from the job cache;
4. idle after: the idle measurement again, on the data the import left
   (``/collections`` counts and measures every layer on each request, so it
   costs more with 20,000 more sites, load or not; this separates the two).

Targets, printed PASS/FAIL (the exit code is 0 either way: this is a
measurement): no errors (a read not answered 200, a transport error, a heavy
job that failed), loaded p99 <= 5x idle p99 per endpoint, no read over 2 s,
the second identical atlas <= 5 % of the first. The baseline of every loaded
number is the idle one of the same run and server. Also printed: load average
and cores at start and end, CPU seconds of the server process and of the job
workers per phase, the jobs' timeline and the slowest loaded reads with what
was running at the time, and how late the bench's own event loop woke (on a
busy machine the client stalls too, and a read then looks slow though the
server was not). ``--quick`` (a smoke run): 100 requests per
endpoint, 2,000 rows, 2 atlases and 2 recommendations.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import start_server  # noqa: E402

LON = (117.95, 118.15)
LAT = (36.70, 36.88)
ENDPOINTS = ("/collections", "/nearest")
IMPORT_LAYER = "green_channels"
#: Every facility layer but the import's (see the docstring).
ATLAS_LAYERS = ["stations", "medical", "memorials", "education"]
RECOMMEND_LAYERS = ["stations"]
ATLASES = [("A4", "portrait"), ("A3", "landscape"), ("A4", "landscape"), ("A3", "portrait")]
RADII = [700, 900, 1100, 1300]
TOKEN_ARGS = ("tokens", "add", "--name", "bench", "--role", "admin", "--store")
TERMINAL = {"successful", "failed", "dismissed"}
#: Targets of the issue.
MAX_P99_RATIO = 5.0
MAX_REQUEST_S = 2.0
MAX_CACHE_SHARE = 0.05
#: A wake-up of the bench's own event loop later than this is noted.
LAG_NOTE_S = 0.05
#: The whole run stops waiting for heavy work after this long.
HEAVY_DEADLINE_S = 420


# -- machine ---------------------------------------------------------------------------


def _machine() -> str:
    one, five, fifteen = os.getloadavg()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    average = f"{one:.2f} {five:.2f} {fifteen:.2f}"
    return f"{os.cpu_count()} cores ({usable} usable), load average {average}"


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in ticks) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _cpu(server_pid: int) -> tuple[float, dict[int, float]]:
    """CPU seconds of the server process and of each of its child processes
    (the job workers and multiprocessing's helper)."""
    own = _cpu_ticks(server_pid)
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _cpu_ticks(int(entry))
            if found is not None and found[0] == server_pid:
                children[int(entry)] = found[1] / _TICK
    return (own[1] / _TICK if own else 0.0), children


@dataclass
class CpuSpan:
    server_pid: int
    start: tuple[float, dict[int, float]] = field(default_factory=lambda: (0.0, {}))

    def begin(self) -> CpuSpan:
        self.start = _cpu(self.server_pid)
        return self

    def end(self) -> tuple[float, float]:
        """(server s, workers s) since ``begin``; workers started since count from 0."""
        server, children = _cpu(self.server_pid)
        workers = sum(t - self.start[1].get(pid, 0.0) for pid, t in children.items())
        return server - self.start[0], workers


# -- server -----------------------------------------------------------------------------


def _start_server(store: str, job_workers: int, folder: Path) -> tuple[subprocess.Popen, str]:
    env = {
        "GEO_SERVICE_STORE": store,
        "GEO_SERVICE_JOB_WORKERS": str(job_workers),
        "GEO_SERVICE_SPOOL_DIR": str(folder / "spool"),
        # One client sends every heavy request here; the per-client limit is not what is measured.
        "GEO_SERVICE_RATE_HEAVY_PER_MINUTE": "0",
    }
    return start_server(folder, env)


def _admin_token(store: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *TOKEN_ARGS, store],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1].strip()


# -- the import file --------------------------------------------------------------------

_KINDS = ["银行", "医院", "公园", "景区", "政务服务大厅"]


def import_csv(rows: int, seed: int = 20261130) -> bytes:
    """A town office's green-channel list: Chinese headers, WGS-84 positions
    well inside each town (100 m from its approximate boundary), unique ids,
    names and addresses; every row valid."""
    import shapely
    from shapely.geometry import shape

    towns = json.loads((ROOT / "layers" / "towns.geojson").read_text(encoding="utf-8"))
    polygons = [(f["properties"]["name"], shape(f["geometry"])) for f in towns["features"]]
    rng = np.random.default_rng(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            *("编号", "单位名称", "类别", "详细地址", "联系电话", "经度", "纬度"),
            *("所属镇街", "服务内容", "服务对象", "窗口", "状态", "位置精度"),
        ]
    )
    serial = 0
    for index, (town, polygon) in enumerate(polygons):
        wanted = rows // len(polygons) + (1 if index < rows % len(polygons) else 0)
        inner = polygon.buffer(-0.001)
        west, south, east, north = inner.bounds
        points: list[tuple[float, float]] = []
        while len(points) < wanted:
            xs = rng.uniform(west, east, 4 * wanted + 16)
            ys = rng.uniform(south, north, 4 * wanted + 16)
            inside = shapely.contains_xy(inner, xs, ys)
            points += list(zip(xs[inside], ys[inside], strict=True))
        for lon, lat in points[:wanted]:
            serial += 1
            writer.writerow(
                [
                    f"bench-gc-{serial:06d}",
                    f"测试绿色通道{serial:05d}号",
                    _KINDS[serial % len(_KINDS)],
                    f"{town}测试路{serial}号",
                    f"0533-{2_000_000 + serial}",
                    f"{lon:.6f}",
                    f"{lat:.6f}",
                    town,
                    "优先办理、专用窗口",
                    "退役军人、军属",
                    f"{serial % 9 + 1}号窗口",
                    "正常开放",
                    "示意位置",
                ]
            )
    return buffer.getvalue().encode("utf-8")


# -- light reads ------------------------------------------------------------------------


@dataclass
class Sample:
    endpoint: str
    at: float  # seconds since the phase began
    seconds: float
    status: int | str


@dataclass
class Phase:
    started: float = field(default_factory=time.perf_counter)
    samples: list[Sample] = field(default_factory=list)
    issued: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    #: (seconds since the phase began, s) where the bench's own event loop woke
    #: late by more than LAG_NOTE_S: a read slow then may be the client's stall.
    lags: list[tuple[float, float]] = field(default_factory=list)
    max_lag: float = 0.0

    def of(self, endpoint: str) -> list[Sample]:
        return [s for s in self.samples if s.endpoint == endpoint]

    def errors(self, endpoint: str | None = None) -> list[Sample]:
        return [s for s in self.samples if s.status != 200 and endpoint in (None, s.endpoint)]


async def _reader(
    http: httpx.AsyncClient,
    phase: Phase,
    client: int,
    think: float,
    budget: int | None,
    stop: asyncio.Event,
) -> None:
    """Alternate the two endpoints until the budget is spent (idle) or ``stop`` is set."""
    rng = random.Random(client)
    turn = client % 2
    await asyncio.sleep(think * client / 4)  # spread the clients' first requests
    while not stop.is_set():
        endpoint = ENDPOINTS[turn]
        turn ^= 1
        if budget is not None:
            if phase.issued[endpoint] >= budget:
                endpoint = ENDPOINTS[turn]
                if phase.issued[endpoint] >= budget:
                    return
            phase.issued[endpoint] += 1
        if endpoint == "/nearest":
            url = f"/nearest?lon={rng.uniform(*LON):.5f}&lat={rng.uniform(*LAT):.5f}"
        else:
            url = "/collections"
        began = time.perf_counter()
        try:
            response = await http.get(url)
            status: int | str = response.status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        moment = time.perf_counter()
        phase.samples.append(Sample(endpoint, began - phase.started, moment - began, status))
        await asyncio.sleep(think)


async def _lag_monitor(phase: Phase) -> None:
    """How late the bench's own event loop wakes from a 10 ms sleep: on a busy
    machine the client may stall, and a read then looks slow though the server
    was not."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        late = time.perf_counter() - began - 0.01
        phase.max_lag = max(phase.max_lag, late)
        if late > LAG_NOTE_S:
            phase.lags.append((began - phase.started, late))


async def _readers(
    base: str, clients: int, think: float, budget: int | None, stop: asyncio.Event, phase: Phase
) -> None:
    monitor = asyncio.create_task(_lag_monitor(phase))
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        await asyncio.gather(
            *(_reader(http, phase, c, think, budget, stop) for c in range(clients))
        )
    monitor.cancel()


def _stats(samples: list[Sample]) -> tuple[float, float, float]:
    if not samples:
        return (float("nan"),) * 3
    ms = np.array([s.seconds for s in samples]) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99), float(ms.max())


# -- heavy work -------------------------------------------------------------------------


@dataclass
class Job:
    label: str
    submitted: float = 0.0  # seconds since the load began
    done: float = 0.0
    status: str = "?"
    job_id: str | None = None
    refused: int = 0  # 503s (queue full) before it was accepted
    record: dict = field(default_factory=dict)
    result_bytes: int = 0
    note: str = ""


async def _retrying(send, job: Job):
    """Send, and after a 503 (the queue is full) wait its Retry-After and send again."""
    for _ in range(60):
        response = await send()
        if response.status_code != 503:
            return response
        job.refused += 1
        await asyncio.sleep(float(response.headers.get("retry-after", "5")))
    return response


async def _process_job(
    http: httpx.AsyncClient, origin: float, label: str, process_id: str, inputs: dict
) -> Job:
    job = Job(label, submitted=time.perf_counter() - origin)
    try:
        response = await _retrying(
            lambda: http.post(
                f"/processes/{process_id}/execution",
                json={"inputs": inputs},
                headers={"Prefer": "respond-async"},
            ),
            job,
        )
        if response.status_code not in {200, 201}:
            job.status, job.note = f"HTTP {response.status_code}", response.text[:300]
            return job
        record = response.json()
        job.job_id = record["jobID"]
        while record["status"] not in TERMINAL:
            await asyncio.sleep(0.5)
            polled = await http.get(f"/jobs/{job.job_id}")
            if polled.status_code != 200:
                job.note = f"poll answered {polled.status_code}"
                continue
            record = polled.json()
        job.record, job.status = record, record["status"]
        result = await http.get(f"/jobs/{job.job_id}/results")
        job.result_bytes = len(result.content)
        if job.status == "successful":
            if process_id == "print-atlas" and not result.content.startswith(b"%PDF"):
                job.status, job.note = "bad result", "not a PDF"
            elif process_id == "site-recommendation":
                job.note = _recommendation_note(result.json())
        else:
            job.note = result.text[:300]
    except httpx.HTTPError as error:
        job.status, job.note = "transport error", f"{type(error).__name__}: {error}"
    finally:
        job.done = time.perf_counter() - origin
    return job


def _recommendation_note(body: dict) -> str:
    return (
        f"{len(body.get('sites') or [])} sites, covered {body.get('covered_share_before')} -> "
        f"{body.get('covered_share_after')}, solve {body.get('solve_seconds')} s"
    )


async def _import_job(
    http: httpx.AsyncClient, origin: float, token: str, content: bytes, rows: int
) -> Job:
    job = Job(f"import {rows:,} rows", submitted=time.perf_counter() - origin)
    try:
        response = await _retrying(
            lambda: http.post(
                f"/collections/{IMPORT_LAYER}/import",
                params={"filename": "bench-stall.csv"},
                content=content,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
                timeout=HEAVY_DEADLINE_S,
            ),
            job,
        )
        job.result_bytes = len(response.content)
        # The import's job record (an admin sees every job): its queue and run times.
        listed = await http.get(
            "/jobs", params={"limit": 100}, headers={"Authorization": f"Bearer {token}"}
        )
        imports = [j for j in listed.json()["jobs"] if j["processID"] == "import"]
        if imports:
            job.record, job.job_id = imports[0], imports[0]["jobID"]
        if response.status_code == 200:
            report = response.json()
            written = (report.get("written") or {}).get(IMPORT_LAYER) or {}
            job.status = "successful"
            job.note = f"counts {report.get('counts')}, written {written}"
            if (
                written.get("inserted", 0) + written.get("updated", 0) + written.get("unchanged", 0)
                != rows
            ):
                job.status = "incomplete"
        else:
            job.status, job.note = f"HTTP {response.status_code}", response.text[:300]
    except httpx.HTTPError as error:
        job.status, job.note = "transport error", f"{type(error).__name__}: {error}"
    finally:
        job.done = time.perf_counter() - origin
    return job


async def _import_queued(http: httpx.AsyncClient, token: str, task: asyncio.Task) -> None:
    """Wait until the import's job is queued (its 4 MB upload is read and
    spooled first), so that it runs first and writes while the rest runs,
    rather than lose the race to the other submissions and meet a full queue."""
    deadline = time.perf_counter() + 30
    while not task.done() and time.perf_counter() < deadline:
        listed = await http.get(
            "/jobs", params={"limit": 20}, headers={"Authorization": f"Bearer {token}"}
        )
        if any(j["processID"] == "import" for j in listed.json()["jobs"]):
            return
        await asyncio.sleep(0.05)


async def _heavy(
    base: str, origin: float, token: str, content: bytes, rows: int, atlases, radii
) -> list[Job]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        tasks = [asyncio.create_task(_import_job(http, origin, token, content, rows))]
        await _import_queued(http, token, tasks[0])
        for size, orientation in atlases:
            inputs = {"size": size, "orientation": orientation, "layers": ATLAS_LAYERS}
            label = f"atlas {size} {orientation}"
            job = _process_job(http, origin, label, "print-atlas", inputs)
            tasks.append(asyncio.create_task(job))
        for radius in radii:
            inputs = {"radius": radius, "p": 2, "layers": RECOMMEND_LAYERS}
            label = f"recommend {radius} m p=2"
            job = _process_job(http, origin, label, "site-recommendation", inputs)
            tasks.append(asyncio.create_task(job))
        done, pending = await asyncio.wait(tasks, timeout=HEAVY_DEADLINE_S)
        for task in pending:
            task.cancel()
        jobs = [t.result() for t in tasks if t in done]
        jobs += [Job("(unfinished at the deadline)", status="timeout") for _ in pending]
        return jobs


async def _loaded(
    args, base, token, content, rows, atlases, radii
) -> tuple[Phase, list[Job], float]:
    phase = Phase()
    stop = asyncio.Event()
    readers = asyncio.create_task(_readers(base, args.clients, args.think, None, stop, phase))
    jobs = await _heavy(base, phase.started, token, content, rows, atlases, radii)
    heavy_s = time.perf_counter() - phase.started
    stop.set()
    await readers
    return phase, jobs, heavy_s


def _offset(stamp: str | None, wall_origin: float) -> float | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp).timestamp() - wall_origin


# -- cache ------------------------------------------------------------------------------


def _atlas_jobs(http: httpx.Client) -> set[str]:
    body = http.get("/jobs", params={"limit": 50}).json()
    return {j["jobID"] for j in body["jobs"] if j["processID"] == "print-atlas"}


def _cache(base: str) -> dict:
    url = "/print/atlas.pdf?size=A4&layers=" + ",".join(ATLAS_LAYERS)
    out: dict = {"url": url}
    with httpx.Client(base_url=base, timeout=HEAVY_DEADLINE_S) as http:
        for turn in ("first", "second"):
            before = _atlas_jobs(http)
            began = time.perf_counter()
            response = http.get(url)
            out[turn] = time.perf_counter() - began
            out[f"{turn}_status"] = response.status_code
            out[f"{turn}_body"] = response.content
            out[f"{turn}_new_jobs"] = len(_atlas_jobs(http) - before)
    out["same_bytes"] = out["first_body"] == out["second_body"]
    return out


# -- report -----------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _report(args, phases: dict[str, Phase], jobs, heavy_s, cache, cpu, wall_origin) -> None:
    idle, loaded, after = phases["idle"], phases["loaded"], phases["idle after"]
    print()
    group = f"{'n':>5} {'p50':>6} {'p99':>6} {'max':>6}"
    header = (
        f"{'endpoint':<13} {'idle: ' + group:>29} | {'loaded: ' + group:>31} | "
        f"{'errors':>6} | {'p99 load/idle':>13} | {'idle after: ' + group:>35} | "
        f"{'p99 load/after':>14}"
    )
    print(
        "latency as the client sees it, ms; errors over all three phases; 'idle after' is "
        "idle again after the load, on the data as the import left it"
    )
    print(header)
    print("-" * len(header))
    ratios = {}
    for endpoint in ENDPOINTS:
        cells = []
        for phase in (idle, loaded, after):
            p50, p99, top = _stats(phase.of(endpoint))
            cells.append(f"{len(phase.of(endpoint)):>5} {p50:>6.1f} {p99:>6.1f} {top:>6.1f}")
        i99, l99, a99 = (_stats(p.of(endpoint))[1] for p in (idle, loaded, after))
        errors = sum(len(p.errors(endpoint)) for p in (idle, loaded, after))
        ratios[endpoint] = l99 / i99 if i99 else float("inf")
        verdict = _verdict(ratios[endpoint] <= MAX_P99_RATIO)
        print(
            f"{endpoint:<13} {cells[0]:>29} | {cells[1]:>31} | {errors:>6} | "
            f"{ratios[endpoint]:>7.2f}x {verdict} | {cells[2]:>35} | {l99 / a99:>13.2f}x"
        )
    for name, phase in phases.items():
        server_s, workers_s = cpu[name]
        span = max(s.at + s.seconds for s in phase.samples) if phase.samples else 0.0
        print(
            f"{name:<10} {span:5.1f} s: {len(phase.samples)} reads "
            f"({len(phase.samples) / span if span else 0:.0f}/s); CPU s: server process "
            f"{server_s:.1f}, job workers {workers_s:.1f}; the bench's own loop woke up to "
            f"{phase.max_lag * 1000:.0f} ms late ({len(phase.lags)}x > {LAG_NOTE_S * 1000:.0f} ms)"
        )

    print(f"\nheavy work, all submitted at once, done in {heavy_s:.1f} s:")
    wall = wall_origin
    for job in jobs:
        rec = job.record
        started, finished = _offset(rec.get("started"), wall), _offset(rec.get("finished"), wall)
        created = _offset(rec.get("created"), wall)
        timeline = (
            f"queued +{created:5.1f} s, ran +{started:5.1f} .. +{finished:5.1f} s "
            f"({finished - started:5.1f} s)"
            if None not in (created, started, finished)
            else f"sent +{job.submitted:5.1f} s, answered +{job.done:5.1f} s"
        )
        refused = f", refused {job.refused}x (503 queue full)" if job.refused else ""
        print(
            f"  {job.label:<24} {job.status:<11} {timeline}, "
            f"{job.result_bytes:,} bytes{refused}  {job.note}"
        )

    print(f"\ncache: {cache['url']}")
    first, second = cache["first"], cache["second"]
    share = second / first if first else float("inf")
    print(
        f"  first {first * 1000:8.1f} ms (HTTP {cache['first_status']}, "
        f"{cache['first_new_jobs']} new job{'s' if cache['first_new_jobs'] != 1 else ''} ran), "
        f"second {second * 1000:8.1f} ms (HTTP {cache['second_status']}, "
        f"{cache['second_new_jobs']} new jobs ran); second / first = {share:.4f}; "
        f"same PDF: {cache['same_bytes']}"
    )
    if cache["first_new_jobs"] == 0:
        print("  NOTE: the first request was answered from the cache too: the ratio means nothing")

    read_errors = idle.errors() + loaded.errors() + after.errors()
    failed_jobs = [j for j in jobs if j.status != "successful"]
    cache_errors = [t for t in ("first", "second") if cache[f"{t}_status"] != 200]
    every = idle.samples + loaded.samples + after.samples
    slowest = max((s.seconds for s in every), default=0.0)
    refused = sum(j.refused for j in jobs)
    print("\ntargets")
    total_errors = len(read_errors) + len(failed_jobs) + len(cache_errors)
    print(
        f"  {_verdict(total_errors == 0)}  errors: {len(read_errors)} reads, "
        f"{len(failed_jobs)} heavy jobs, {len(cache_errors)} cache requests "
        f"(queue-full 503s retried, not errors: {refused})"
    )
    for sample in read_errors[:5]:
        print(f"        {sample.endpoint} at +{sample.at:.1f} s: {sample.status}")
    for endpoint in ENDPOINTS:
        print(
            f"  {_verdict(ratios[endpoint] <= MAX_P99_RATIO)}  {endpoint} p99 under load "
            f"{ratios[endpoint]:.2f}x idle p99 (target <= {MAX_P99_RATIO:g}x)"
        )
    print(
        f"  {_verdict(slowest <= MAX_REQUEST_S)}  slowest read {slowest * 1000:.0f} ms "
        f"(target <= {MAX_REQUEST_S * 1000:.0f} ms)"
    )
    print(
        f"  {_verdict(share <= MAX_CACHE_SHARE)}  second identical atlas "
        f"{share * 100:.2f} % of the first (target <= {MAX_CACHE_SHARE * 100:g} %)"
    )

    print("\nslowest reads under load (+s since the heavy work was submitted; jobs running then):")
    spans = []
    for job in jobs:
        started = _offset(job.record.get("started"), wall)
        finished = _offset(job.record.get("finished"), wall)
        if started is not None and finished is not None:
            spans.append((job.label, started, finished))
    for sample in sorted(loaded.samples, key=lambda s: -s.seconds)[:8]:
        moment = sample.at
        running = [label for label, a, b in spans if a <= moment <= b]
        lag = max(
            (
                late
                for at, late in loaded.lags
                if moment <= at + late and at <= moment + sample.seconds
            ),
            default=0.0,
        )
        client = f"; the bench itself stalled {lag * 1000:.0f} ms meanwhile" if lag else ""
        print(
            f"  {sample.seconds * 1000:7.0f} ms  {sample.endpoint:<12} at +{moment:6.1f} s  "
            f"{sample.status}  running: {', '.join(running) or '-'}{client}"
        )


# -- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None, help="per endpoint, idle (400)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="job worker processes")
    parser.add_argument("--rows", type=int, default=None, help="rows of the import (20000)")
    parser.add_argument("--think", type=float, default=0.05, help="each client's pause, s")
    parser.add_argument("--store", default=None, help="postgresql://... (default: embedded)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    requests = args.requests or (100 if args.quick else 400)
    rows = args.rows or (2_000 if args.quick else 20_000)
    atlases = ATLASES[:2] if args.quick else ATLASES
    radii = RADII[:2] if args.quick else RADII

    print(f"machine at start: {_machine()}")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="gs-stall-"))
    if args.store and args.store.startswith("postgresql"):
        separator = "&" if "?" in args.store else "?"
        location = f"{args.store}{separator}schema=bench_stall_{os.getpid()}"
    elif args.store:
        raise SystemExit("--store takes a postgresql:// URL (the default is a new embedded store)")
    else:
        location = str(folder / "stall.gpkg")
    content = import_csv(rows)
    process, base = _start_server(location, args.workers, folder)  # seeds the store
    try:
        token = _admin_token(location)
        print(
            f"server {base}: one server process, {args.workers} job workers, store "
            f"{'PostGIS (new schema)' if args.store else 'embedded (new file)'}; "
            f"{args.clients} clients (asyncio, one process), {args.think * 1000:.0f} ms pause "
            f"between a client's requests; import {rows:,} rows ({len(content) / 1e6:.1f} MB)"
        )
        with httpx.Client(base_url=base, timeout=120) as http:  # warm: the nearest index
            for _ in range(5):
                http.get("/collections")
                http.get(f"/nearest?lon={LON[0] + 0.1}&lat={LAT[0] + 0.1}")

        cpu = {}
        span = CpuSpan(process.pid).begin()
        idle = Phase()
        asyncio.run(_readers(base, args.clients, args.think, requests, asyncio.Event(), idle))
        cpu["idle"] = span.end()
        print(f"idle: {len(idle.samples)} reads; machine: {_machine()}")

        span = CpuSpan(process.pid).begin()
        wall_origin = time.time()
        loaded, jobs, heavy_s = asyncio.run(
            _loaded(args, base, token, content, rows, atlases, radii)
        )
        cpu["loaded"] = span.end()
        print(f"loaded: {len(loaded.samples)} reads, heavy work {heavy_s:.1f} s; {_machine()}")

        cache = _cache(base)

        span = CpuSpan(process.pid).begin()
        after = Phase()
        asyncio.run(_readers(base, args.clients, args.think, requests, asyncio.Event(), after))
        cpu["idle after"] = span.end()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    phases = {"idle": idle, "loaded": loaded, "idle after": after}
    _report(args, phases, jobs, heavy_s, cache, cpu, wall_origin)
    print(f"\nmachine at end: {_machine()}; whole run {time.perf_counter() - started:.0f} s")
    if args.store:
        from geo_service.sources.catalog import load_catalog
        from geo_service.store.postgis import PostGISStore

        cleanup = PostGISStore(location, load_catalog())
        cleanup.drop()
        cleanup.close()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
