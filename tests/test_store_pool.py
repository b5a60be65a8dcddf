"""Bounded connection pools: however many threads read and write at once, a
store opens at most ``pool_size`` connections, every write lands, and a pool
that stays busy past its timeout is a clear ``StoreError``, never a hang.

Connections are counted from outside the store, not only by its own
``pool_stats``: open file descriptors on the GeoPackage file, and
``pg_stat_activity`` rows carrying the store's ``application_name``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from shapely.geometry import Point

from geo_service.errors import StoreError
from geo_service.sources.catalog import ValidFeature
from geo_service.store import AuditQuery, open_store
from geo_service.store.seeding import seed_store
from tests.conftest import _new_pg_location, _require_pg

TEMPLATE_SITE = "gc-bank-abc-chengdong"


@pytest.fixture(params=["geopackage", "postgis"])
def location(request: pytest.FixtureRequest, tmp_path: Path, catalog):
    """Where a store will be opened: a GeoPackage file, or a PostGIS schema
    whose connections carry an application_name of their own."""
    if request.param == "geopackage":
        yield tmp_path / "pool.gpkg"
        return
    url = f"{_new_pg_location(_require_pg())}&application_name=gs_pool_{uuid.uuid4().hex[:10]}"
    yield url
    store = open_store(url, catalog)
    store.drop()
    store.close()


class ConnectionCounter:
    """Samples, from outside the store, how many connections it has open, and
    keeps the highest count seen."""

    def __init__(self, location: Path | str):
        self.location = location
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._pg = None
        if isinstance(location, Path):
            if not Path("/proc/self/fd").is_dir():
                pytest.skip("counting open files needs /proc")
            self._target = os.path.realpath(location)
        else:
            from urllib.parse import parse_qs, urlsplit

            import psycopg

            self._app = parse_qs(urlsplit(location).query)["application_name"][0]
            self._pg = psycopg.connect(_require_pg(), autocommit=True)

    def count(self) -> int:
        if self._pg is not None:
            return self._pg.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (self._app,)
            ).fetchone()[0]
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                n += os.readlink(f"/proc/self/fd/{fd}") == self._target
        return n

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.count())
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.count())
        self.close()

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()


def _new_site(store, feature_id: str) -> ValidFeature:
    template = store.get("green_channels", TEMPLATE_SITE)
    props = dict(template.properties, id=feature_id, name=f"样例窗口 {feature_id}")
    return ValidFeature(id=feature_id, properties=props, geometry=template.geometry)


def test_sixteen_threads_reading_and_writing_share_four_connections_and_every_write_lands(
    location, catalog
):
    store = open_store(location, catalog, pool_size=4)
    seed_store(store, catalog)
    count_before = store.count("green_channels")
    version_before = store.layer_version("green_channels")
    template = store.get("green_channels", TEMPLATE_SITE)
    box = (118.0, 36.78, 118.1, 36.83)
    threads, rounds = 16, 9
    start = threading.Barrier(threads)
    written: list[str] = []
    errors: list[BaseException] = []
    in_use_peak = 0

    def clerk(t: int) -> None:
        nonlocal in_use_peak
        try:
            start.wait()
            for i in range(rounds):
                if (t + i) % 3 == 0:
                    site_id = f"gc-pool-{t:02d}-{i}"
                    store.change(
                        "green_channels",
                        site_id,
                        _new_site(store, site_id),
                        actor=f"clerk {t}",
                        action="create",
                        create=True,
                    )
                    written.append(site_id)
                else:
                    assert store.query("green_channels", bbox=box, limit=20).features
                    assert store.get("green_channels", TEMPLATE_SITE).id == template.id
                    assert store.layer_versions()["green_channels"] >= version_before
                    assert store.audit_log(AuditQuery(layer_id="green_channels", limit=5))[1]
                in_use_peak = max(in_use_peak, store.pool_stats()["in_use"])
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    with ConnectionCounter(location) as counter:
        workers = [threading.Thread(target=clerk, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
    assert not errors, errors
    assert not any(worker.is_alive() for worker in workers)

    stats = store.pool_stats()
    print(
        f"\n{type(store).__name__}: {len(written)} writes, {threads * rounds - len(written)} "
        f"read rounds; connections seen from outside at most {counter.peak} "
        f"({counter.samples} samples); pool opened {stats['opened']}, in use at most {in_use_peak}"
    )
    assert 1 <= counter.peak <= 4
    assert stats["max_size"] == 4 and stats["open"] <= 4 and stats["opened"] <= 4
    # Everything landed, each write once.
    assert len(written) == len(set(written)) == 48
    assert store.count("green_channels") == count_before + len(written)
    assert store.layer_version("green_channels") == version_before + len(written)
    assert {f.id for f in store.query("green_channels", filters={"id": written}).features} == set(
        written
    )
    creations = [r for r in store.audit_records() if r["feature_id"] in set(written)]
    assert len(creations) == len(written)
    store.close()


def test_a_pool_busy_past_its_timeout_is_a_store_error_and_then_recovers(location, catalog):
    store = open_store(location, catalog, pool_size=1, pool_timeout=0.5)
    site = ValidFeature(
        "gc-slow-write", {"id": "gc-slow-write", "name": "慢"}, Point(118.05, 36.81)
    )
    inside, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def hold(before, new) -> None:  # a slow check holding the only connection
        inside.set()
        release.wait(30)

    def slow_writer() -> None:
        try:
            outcome.append(
                store.change(
                    "green_channels",
                    site.id,
                    site,
                    actor="slow",
                    action="create",
                    create=True,
                    authorize=hold,
                )
            )
        except BaseException as error:
            outcome.append(error)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert inside.wait(30)
        started = time.monotonic()
        with pytest.raises(
            StoreError, match=r"no database connection came free within 0\.5 s \(all 1 are busy\)"
        ):
            store.count("green_channels")
        waited = time.monotonic() - started
        assert 0.4 <= waited < 5, waited
    finally:
        release.set()
        writer.join(30)
    assert outcome and not isinstance(outcome[0], BaseException), outcome
    assert store.get("green_channels", site.id).properties["name"] == "慢"  # the pool recovered
    store.close()


def test_a_read_inside_a_write_uses_the_writers_connection(location, catalog):
    """An authorize callback that reads the store (as a town check might) runs
    on the connection its write holds: with a pool of one, no wait, no error."""
    store = open_store(location, catalog, pool_size=1, pool_timeout=1)
    site = ValidFeature("gc-checked", {"id": "gc-checked", "name": "查"}, Point(118.05, 36.81))
    seen: list[object] = []

    def check(before, new) -> None:
        seen.append(store.layer_versions()["green_channels"])
        seen.append(store.count("green_channels"))
        seen.append(len(store.audit_records()))

    store.change(
        "green_channels", site.id, site, actor="t", action="create", create=True, authorize=check
    )
    assert seen == [0, 0, 0]
    assert store.count("green_channels") == 1
    assert store.pool_stats()["opened"] == 1
    store.close()


def test_a_closed_store_releases_its_connections_and_opens_new_ones_when_used(location, catalog):
    store = open_store(location, catalog, pool_size=2)
    assert store.count("stations") == 0
    counter = ConnectionCounter(location)
    try:
        assert 1 <= counter.count() <= 2
        store.close()
        assert store.pool_stats()["open"] == 0
        deadline = time.monotonic() + 5  # a server process ends a moment after its client left
        while counter.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counter.count() == 0
    finally:
        counter.close()
    assert store.count("stations") == 0  # used again: a connection opens again
    assert 1 <= store.pool_stats()["open"] <= 2
    store.close()


def test_layer_versions_memo_belongs_to_each_pooled_connection(tmp_path, catalog):
    """SQLite's data_version is per connection: a memo taken on one pooled
    connection must not answer for another, opened later, whose data_version
    happens to hold the same number."""
    path = tmp_path / "memo.gpkg"
    store = open_store(path, catalog, pool_size=2)
    before = store.layer_versions()  # memoised on the only connection so far
    # Another writer (as another process would) commits a change.
    other = sqlite3.connect(path)
    other.execute("UPDATE gs_layer_state SET version = version + 1 WHERE layer_id = 'stations'")
    other.commit()
    other.close()
    # Keep the first connection busy in a worker, so this thread gets a new one.
    pinned, release = threading.Event(), threading.Event()

    def pin() -> None:
        with store._reading():
            pinned.set()
            release.wait(30)

    worker = threading.Thread(target=pin)
    worker.start()
    try:
        assert pinned.wait(30)
        assert store.layer_versions()["stations"] == before["stations"] + 1
        assert store.pool_stats()["opened"] == 2
    finally:
        release.set()
        worker.join(30)
    # Both connections now answer the new version, whichever is lent.
    for _ in range(3):
        assert store.layer_versions()["stations"] == before["stations"] + 1
    store.close()
