"""Incremental freshness (issue 20): the store's change feed, and the nearest
index kept current from it instead of rebuilt, on both backends.

An office edits sites at random (creates, moves, edits, deletes, brings back,
several layers in one import); after every step the feed must say exactly
what the store now holds, and the index the cache keeps must answer every
question exactly as an index built fresh from the store does.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import psycopg
import pytest

from geo_service.analysis.nearest import (
    NearestFilters,
    SiteIndex,
    SiteIndexCache,
    nearest_sites,
)
from geo_service.services.access import issue_token
from geo_service.sources.catalog import ValidFeature, load_catalog
from geo_service.store import AuditQuery, Store, StoredFeature, open_store
from geo_service.store.base import now
from geo_service.store.seeding import seed_store
from tests.conftest import _new_pg_location, _require_pg, eventually, running_server

LAYERS = ("stations", "green_channels")


class Office:
    """Edits sites of ``LAYERS`` at random through the store's write paths,
    as the API, imports and restores make them."""

    def __init__(self, store: Store, seed: int):
        self.store = store
        self.rng = random.Random(seed)
        self.made = 0
        self.gone: dict[tuple[str, str], StoredFeature] = {}

    def live(self, layer_id: str) -> list[StoredFeature]:
        return self.store.all_features(layer_id)

    def _variant(self, base: StoredFeature, feature_id: str, metres: float) -> ValidFeature:
        degrees = metres / 111_000
        point = type(base.geometry)(
            base.geometry.x + self.rng.uniform(-degrees, degrees),
            base.geometry.y + self.rng.uniform(-degrees, degrees),
        )
        props = dict(base.properties, id=feature_id)
        if self.rng.random() < 0.3:
            props["status"] = self.rng.choice(["open", "closed", "planned"])
        return ValidFeature(feature_id, props, point)

    def step(self) -> str:
        rng, store = self.rng, self.store
        layer_id = rng.choice(LAYERS)
        sites = self.live(layer_id)
        what = rng.choice(["create", "create", "move", "move", "edit", "delete", "revive", "batch"])
        if what == "revive" and self.gone:
            (layer_id, feature_id), old = self.gone.popitem()
            new = ValidFeature(feature_id, old.properties, old.geometry)
            store.change(
                layer_id, feature_id, new, actor="test", action="restore", create=True, revive=True
            )
        elif what == "create" or len(sites) < 3:
            self.made += 1
            # Some a few metres from their template: windows of one institution.
            metres = rng.choice([10.0, 3000.0])
            new = self._variant(rng.choice(sites), f"feed-{self.made}", metres)
            store.change(layer_id, new.id, new, actor="test", action="create", create=True)
        elif what == "move":
            site = rng.choice(sites)
            new = self._variant(site, site.id, rng.choice([20.0, 2000.0]))
            store.change(layer_id, site.id, new, actor="test", action="update")
        elif what == "edit":
            site = rng.choice(sites)
            props = dict(site.properties, status=rng.choice(["open", "closed"]))
            props["services"] = rng.sample(["priority_queue", "dedicated_window", "consult"], 2)
            new = ValidFeature(site.id, props, site.geometry)
            store.change(layer_id, site.id, new, actor="test", action="update")
        elif what == "delete":
            site = rng.choice(sites)
            store.change(layer_id, site.id, None, actor="test", action="delete")
            self.gone[(layer_id, site.id)] = site
        else:  # an import touching both layers in one transaction
            batches = {}
            for layer in LAYERS:
                chosen = rng.sample(self.live(layer), 2)
                self.made += 1
                batches[layer] = [
                    self._variant(chosen[0], chosen[0].id, 500.0),
                    self._variant(chosen[1], f"feed-{self.made}", 500.0),
                ]
            store.write_layers(batches, actor="test", action="import")
        return what


def stored(store: Store) -> dict[tuple[str, str], StoredFeature]:
    return {(f.layer_id, f.id): f for layer in LAYERS for f in store.all_features(layer)}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_change_feed_says_exactly_what_random_edits_did(store: Store, seed: int):
    office = Office(store, seed)
    marks = store.change_marks(LAYERS)
    known = stored(store)
    for _ in range(30):
        done = [office.step() for _ in range(office.rng.choice([0, 1, 1, 2, 4]))]
        feed = store.changes_since(marks)
        assert not feed.reloaded
        keys = [(f.layer_id, f.id) for f in feed.upserts] + feed.deleted
        assert len(keys) == len(set(keys)), "a feature came twice in one feed"
        if not done:
            assert not feed and feed.marks == marks, "a feed without edits carried something"
        for key in feed.deleted:
            known.pop(key, None)
        for feature in feed.upserts:
            known[(feature.layer_id, feature.id)] = feature
        assert known == stored(store), f"after {done}"  # revisions included
        assert all(feed.marks[layer] >= marks[layer] for layer in LAYERS)
        marks = feed.marks
    assert not store.changes_since(marks), "the last edits came again"


def answers(index: SiteIndex, points: list[tuple[float, float]]) -> list:
    """What the index answers at ``points``: every site, nearest first (all
    statuses, windows apart), and five places for a few residents' questions."""
    everyone = NearestFilters(statuses=frozenset())
    out = []
    for lon, lat in points:
        out.append(
            [
                (r.feature.layer_id, r.feature.id, r.distance_m, r.feature.properties)
                for r in nearest_sites(index, lon, lat, 10_000, None, everyone, group_windows=False)
            ]
        )
        for layers, filters in (
            (None, NearestFilters()),
            (["green_channels"], NearestFilters(eligible="veteran")),
            (["stations"], NearestFilters(statuses=frozenset({"open", "planned"}))),
        ):
            out.append(
                [
                    (r.feature.id, r.distance_m, [w.feature.id for w in r.windows or []])
                    for r in nearest_sites(index, lon, lat, 5, layers, filters)
                ]
            )
    return out


def fresh_index(store: Store, cache: SiteIndexCache, build=SiteIndex.from_store) -> SiteIndex:
    return build(
        store,
        cache.layer_ids,
        grouped_layers=cache.grouped_layers,
        district=cache._district(),
        versions={},
        marks={},
    )


def query_points(store: Store, count: int = 6) -> list[tuple[float, float]]:
    west, south, east, north = store.extent("stations")
    rng = random.Random(7)
    return [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(count)]


class Builds:
    """How many times the index was built whole (``SiteIndex.from_store``);
    ``original`` builds one without counting, for fresh comparisons."""

    def __init__(self, original: Callable[..., SiteIndex]):
        self.count = 0
        self.original = original


@pytest.fixture
def builds(monkeypatch) -> Builds:
    original = SiteIndex.from_store.__func__
    counted = Builds(lambda *args, **kwargs: original(SiteIndex, *args, **kwargs))

    def counting(cls, *args, **kwargs):
        counted.count += 1
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(SiteIndex, "from_store", classmethod(counting))
    return counted


def test_the_kept_index_answers_as_a_fresh_one_after_every_edit(store: Store, builds):
    cache = SiteIndexCache(store)
    points = query_points(store)
    cache.get()
    assert builds.count == 1
    office = Office(store, 3)
    for _ in range(25):
        done = [office.step() for _ in range(office.rng.choice([1, 1, 2, 3]))]
        kept = cache.get()
        assert answers(kept, points) == answers(
            fresh_index(store, cache, builds.original), points
        ), f"after {done}"
    assert builds.count == 1, "an edit made the cache read every site again"


def _bulk_load(store: Store, layer_id: str, features: list[ValidFeature]) -> None:
    """What a bulk load leaves (issue 20, contract 1): rows without audit
    records of their own and ONE record with action "load" for the layer."""
    layer = store.catalog.layer(layer_id)
    summary = orjson.dumps({"bulk": True, "inserted": len(features), "source": "test.csv"})
    with store._transaction() as conn:
        store._lock_layer(conn, layer)
        for feature in features:
            store._insert(conn, layer, feature)
        store._sql(
            conn,
            "INSERT INTO gs_audit (at, actor, action, layer_id, feature_id, before, after) "
            "VALUES (?, ?, 'load', ?, '', NULL, ?)",
            [now(), "db load", layer.id, summary.decode()],
        )
        store._bump(conn, layer)


def test_a_bulk_load_makes_the_layer_read_again(store: Store, builds):
    cache = SiteIndexCache(store)
    points = query_points(store)
    cache.get()
    marks = store.change_marks(LAYERS)
    office = Office(store, 4)
    template = store.all_features("stations")[0]
    loaded = [office._variant(template, f"bulk-{i}", 3000.0) for i in range(5)]
    _bulk_load(store, "stations", loaded)

    feed = store.changes_since(marks)
    assert feed.reloaded == {"stations"}
    assert not feed.upserts and not feed.deleted
    assert feed.marks["stations"] > marks["stations"]
    assert feed.marks["green_channels"] == marks["green_channels"]

    kept = cache.get()
    assert builds.count == 2, "the loaded layer was not read again"
    assert answers(kept, points) == answers(fresh_index(store, cache, builds.original), points)
    found = nearest_sites(kept, loaded[0].geometry.x, loaded[0].geometry.y, 1, ["stations"])
    assert found[0].feature.id == "bulk-0"
    assert not store.changes_since(feed.marks)


def test_a_loads_edits_of_single_sites_replay_without_reading_the_layer(store: Store, builds):
    """``db load`` of rows the store holds already writes an audit record
    per row with action "load" AND the row's id: an edit like any other,
    replayed, not a bulk load."""
    cache = SiteIndexCache(store)
    cache.get()
    marks = store.change_marks(LAYERS)
    office = Office(store, 5)
    template = store.all_features("stations")[0]
    moved = office._variant(template, template.id, 2500.0)
    store.write("stations", [moved], actor="db load", action="load")
    (record,) = store.audit_log(AuditQuery(feature_id=template.id), newest_first=True)[0][:1]
    assert record["action"] == "load" and record["feature_id"] == template.id

    feed = store.changes_since(marks)
    assert not feed.reloaded
    assert [(f.layer_id, f.id) for f in feed.upserts] == [("stations", template.id)]
    kept = cache.get()
    assert builds.count == 1, "an edit recorded as 'load' read the whole layer again"
    found = nearest_sites(kept, moved.geometry.x, moved.geometry.y, 1, ["stations"])
    assert found[0].feature.id == template.id
    assert found[0].distance_m < 1.0


def test_more_changes_than_worth_replaying_read_the_layer_again(store: Store):
    marks = store.change_marks(LAYERS)
    office = Office(store, 5)
    site = store.all_features("green_channels")[0]
    for _ in range(3):
        moved = office._variant(site, site.id, 100.0)
        store.change("green_channels", site.id, moved, actor="test", action="update")
    assert store.changes_since(marks, replay_limit=2).reloaded == {"green_channels"}
    replayed = store.changes_since(marks, replay_limit=3)
    assert not replayed.reloaded
    assert replayed.upserts == [store.get("green_channels", site.id)]


def test_a_write_by_another_process_is_seen(store: Store, catalog):
    cache = SiteIndexCache(store)
    station = store.all_features("stations")[0]
    far = (station.geometry.x + 0.03, station.geometry.y + 0.01)
    assert nearest_sites(cache.get(), *far, 1, ["stations"])[0].distance_m > 0.0

    other = open_store(store.location, catalog)  # another Store: its own connections
    try:
        moved = ValidFeature(station.id, station.properties, type(station.geometry)(*far))
        other.change("stations", station.id, moved, actor="other", action="update")
    finally:
        other.close()

    eventually(
        lambda: nearest_sites(cache.get(), *far, 1, ["stations"])[0].feature.id == station.id,
        "the move made by another store shows",
    )
    assert nearest_sites(cache.get(), *far, 1, ["stations"])[0].distance_m == 0.0


def test_concurrent_requests_never_see_half_an_index_nor_apply_a_change_twice(
    store: Store, monkeypatch
):
    steps: list[tuple[dict, dict]] = []
    original = SiteIndex.applied

    def recording(self, upserts, deleted, *, versions, marks):
        steps.append((dict(self.marks), dict(marks)))
        return original(self, upserts, deleted, versions=versions, marks=marks)

    monkeypatch.setattr(SiteIndex, "applied", recording)
    cache = SiteIndexCache(store)
    cache.get()
    points = query_points(store, 4)
    stop = threading.Event()
    failures: list[BaseException] = []

    def resident() -> None:
        rng = random.Random(threading.get_ident())
        try:
            while not stop.is_set():
                index = cache.get()
                lon, lat = rng.choice(points)
                results = nearest_sites(index, lon, lat, 5)
                distances = [r.distance_m for r in results]
                assert distances == sorted(distances)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    readers = [threading.Thread(target=resident) for _ in range(6)]
    for reader in readers:
        reader.start()
    office = Office(store, 6)
    try:
        for _ in range(30):
            office.step()
            time.sleep(0.01)
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert not failures, failures[0]
    final = cache.get()
    assert answers(final, points) == answers(fresh_index(store, cache), points)
    assert steps, "no change was applied"
    for (_, reached), (start, _) in itertools.pairwise(steps):
        assert start == reached, "a change was applied twice, or one was skipped"


def test_a_merge_runs_aside_and_keeps_what_was_applied_meanwhile(store: Store, monkeypatch):
    started, release = threading.Event(), threading.Event()
    original_merged = SiteIndex.merged

    def slow_merged(self):
        started.set()
        assert release.wait(30)
        merged = original_merged(self)
        merged._merged_by_test = True
        return merged

    # Every index not made by merged() wants merging: the cache merges in the background.
    monkeypatch.setattr(SiteIndex, "merged", slow_merged)
    monkeypatch.setattr(
        SiteIndex,
        "delta_size",
        property(lambda self: 0 if getattr(self, "_merged_by_test", False) else 1, lambda *a: None),
    )
    feeds = []
    original_feed = store.changes_since
    monkeypatch.setattr(
        store, "changes_since", lambda *a, **k: feeds.append(1) or original_feed(*a, **k)
    )
    cache = SiteIndexCache(store, merge_after=0)
    points = query_points(store, 4)
    first = cache.get()
    assert started.wait(30), "no merge started"

    office = Office(store, 8)
    for _ in range(6):
        office.step()
        # Answered from the unmerged index meanwhile, and current.
        kept = cache.get()
        assert kept is not first
        assert answers(kept, points) == answers(fresh_index(store, cache), points)
    release.set()
    eventually(
        lambda: not any(t.name == "site index merge" for t in threading.enumerate()),
        "the merges end",
    )
    feeds.clear()
    merged = cache.get()
    assert not feeds, "the merged index missed changes applied while it was made"
    assert answers(merged, points) == answers(fresh_index(store, cache), points)


# -- PostGIS: LISTEN/NOTIFY ------------------------------------------------------------


@pytest.fixture
def pg_store(catalog) -> Iterator[Store]:
    store = open_store(_new_pg_location(_require_pg()), catalog)
    seed_store(store, catalog)
    yield store
    store.drop()
    store.close()


def _listener_pids(store: Store) -> list[int]:
    with store._reading() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'geo-service listener' "
            "AND query LIKE %s",
            (f"%{store.channel}%",),
        ).fetchall()
    return [row[0] for row in rows]


def _refuse(*args, **kwargs):
    raise psycopg.OperationalError("refused by the test")


def test_postgis_workers_learn_of_changes_by_notification(pg_store: Store, catalog, monkeypatch):
    store = pg_store
    asked: list[int] = []
    original_versions = store.layer_versions
    monkeypatch.setattr(store, "layer_versions", lambda: asked.append(1) or original_versions())
    cache = SiteIndexCache(store)
    eventually(lambda: store.change_token() is not None, "the listener listens")
    cache.get()
    asked.clear()
    for _ in range(50):
        cache.get()
    assert not asked, "an idle cache asked the database for layer versions"

    other = open_store(store.location, catalog)
    station = store.all_features("stations")[0]

    def move_and_wait(dlon: float) -> None:
        spot = (station.geometry.x + dlon, station.geometry.y)
        moved = ValidFeature(station.id, station.properties, type(station.geometry)(*spot))
        other.change("stations", station.id, moved, actor="other", action="update")
        eventually(
            lambda: nearest_sites(cache.get(), *spot, 1, ["stations"])[0].distance_m == 0.0,
            "the other store's write shows",
        )

    try:
        move_and_wait(0.01)
        assert asked, "the change was seen without its versions read"
        asked.clear()
        for _ in range(50):
            cache.get()
        assert not asked, "the cache kept asking after it caught up"

        # The listener's connection dies and cannot come back for now: the
        # cache falls back to asking, and still sees every change.
        (pid,) = _listener_pids(store)
        with monkeypatch.context() as refusing:
            refusing.setattr(psycopg, "connect", _refuse)
            with store._reading() as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            eventually(lambda: store.change_token() is None, "the dropped listener says so")
            asked.clear()
            move_and_wait(0.02)
            assert asked, "the change was seen without asking, with no listener"
        eventually(lambda: _listener_pids(store) not in ([], [pid]), "the listener reconnects")
        eventually(lambda: store.change_token() is not None, "the listener listens again")
        move_and_wait(0.03)
        cache.get()
        asked.clear()
        for _ in range(50):
            cache.get()
        assert not asked, "after reconnecting the cache still asks on every request"
    finally:
        other.close()

    store.close()
    eventually(lambda: not _listener_pids(store), "close() ends the listener's connection")


# -- a real server with three workers -------------------------------------------------


def test_every_worker_of_a_server_answers_with_a_write_soon(tmp_path, server_store):
    location = server_store["GEO_SERVICE_STORE"]
    with running_server(tmp_path, "--workers", "3", **server_store) as base:
        store = open_store(location, load_catalog())
        try:
            known = [town.id for town in store.all_features("towns")]
            token = issue_token(store, "office", "admin", [], known)
        finally:
            store.close()
        spot = {"lon": "118.0712", "lat": "36.7844", "layers": "stations", "k": "1"}
        # Fresh connections, so requests spread over the workers; each builds its index.
        plain = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=30, limits=plain) as http:
            for _ in range(15):
                assert http.get("/nearest", params=spot).status_code == 200
            site = {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [118.0712, 36.7844]},
                "properties": {
                    "name": "新建拥军服务站（测试）",
                    "kind": "support_post",
                    "address": "测试路1号",
                    "eligible": ["veteran"],
                    "status": "open",
                    "position_quality": "surveyed",
                },
            }
            created = http.post(
                "/collections/stations/items",
                json=site,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201, created.text
            new_id = created.json()["id"]

            def first(answer: httpx.Response) -> str:
                assert answer.status_code == 200, answer.text
                return answer.json()["features"][0]["id"]

            streak = 0
            deadline = time.monotonic() + 30
            while streak < 40:
                assert time.monotonic() < deadline, "some worker still answers without the site"
                streak = streak + 1 if first(http.get("/nearest", params=spot)) == new_id else 0


def test_a_store_from_before_the_feed_gets_its_audit_index_on_open(store: Store, catalog):
    """The feed reads the audit trail by (layer, seq): a store made before
    that index existed gets it when next opened."""
    with store._transaction() as conn:
        store._sql(conn, "DROP INDEX gs_audit_layer_seq")
    store.close()
    reopened = open_store(store.location, catalog)
    try:
        with reopened._reading() as conn:
            if isinstance(conn, sqlite3.Connection):
                found = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                    ("gs_audit_layer_seq",),
                ).fetchall()
            else:
                found = conn.execute(
                    "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                    (reopened.schema, "gs_audit_layer_seq"),
                ).fetchall()
        assert found
    finally:
        reopened.close()
