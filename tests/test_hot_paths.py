"""The hot paths answered from memory on the event loop (issue 21), and the
parts that make that safe: the store's change token, the nearest answer made
without reading the store, the query contract in front of the router, and
compression only for the clients that ask for it."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import orjson
import pytest
from shapely.geometry import Point

from geo_service.analysis.nearest import NotInMemory, SiteIndexCache, memory_only, nearest_sites
from geo_service.services.nearest import (
    nearest_geojson,
    nearest_geojson_in_memory,
    parse_nearest_query,
)
from geo_service.sources.catalog import ValidFeature
from geo_service.store import Store, open_store
from geo_service.store.seeding import seed_store
from tests.conftest import ROOT, eventually

DISTRICT = (117.93, 36.70, 118.18, 36.90)


def _query(store: Store, rng: random.Random, **extra: str):
    params = {
        "lon": f"{rng.uniform(DISTRICT[0], DISTRICT[2]):.6f}",
        "lat": f"{rng.uniform(DISTRICT[1], DISTRICT[3]):.6f}",
        "k": str(rng.randint(1, 10)),
        **extra,
    }
    return parse_nearest_query(params, store.catalog)


def _without_clock(body: bytes) -> dict:
    """The answer without what depends on the minute it was made in."""
    answer = orjson.loads(body)
    for feature in answer["features"]:
        for name in ("open_now", "windows"):
            feature["properties"].pop(name, None)
    return answer


def _move(store: Store, layer_id: str, feature_id: str, lon: float, lat: float) -> None:
    feature = store.get(layer_id, feature_id)
    moved = ValidFeature(feature.id, feature.properties, Point(lon, lat))
    store.change(layer_id, feature.id, moved, actor="test", action="update")


# -- the embedded store's change token ------------------------------------------------


def test_the_embedded_token_moves_with_every_commit_of_any_process(tmp_path, catalog):
    store = open_store(tmp_path / "store.gpkg", catalog)
    try:
        before = store.change_token()
        assert before is not None and before == store.change_token()
        store.all_features("stations")  # reading changes nothing
        assert store.change_token() == before
        seed_store(store, catalog)
        seeded = store.change_token()
        assert seeded != before
        station = store.all_features("stations")[0]
        # Another process, with its own connections and its own mapping of the token.
        script = textwrap.dedent(
            f"""
            from shapely.geometry import Point
            from geo_service.sources.catalog import ValidFeature, load_catalog
            from geo_service.store import open_store
            store = open_store({str(store.location)!r}, load_catalog())
            site = store.get("stations", {station.id!r})
            moved = ValidFeature(site.id, site.properties, Point(118.1, 36.8))
            store.change("stations", site.id, moved, actor="other", action="update")
            store.close()
            """
        )
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=120)
        assert store.change_token() not in (seeded, before)
    finally:
        store.close()


def test_a_store_in_a_folder_it_cannot_write_has_no_token_and_still_works(tmp_path, catalog):
    location = tmp_path / "store.gpkg"
    open_store(location, catalog).close()
    signal = tmp_path / "store.gpkg-changes"
    signal.unlink()
    signal.mkdir()  # stands in for a file that cannot be opened for writing
    store = open_store(location, catalog)
    try:
        assert store.change_token() is None
        cache = SiteIndexCache(store)
        assert cache.get() is not None and cache.current() is None  # always asks the store
    finally:
        store.close()


# -- nearest answers made in memory --------------------------------------------------


def test_in_memory_answers_equal_the_store_path_and_never_read_the_store(store, monkeypatch):
    cache = SiteIndexCache(store)
    rng = random.Random(21)
    query = _query(store, rng)
    # Nothing built yet: no answer from memory, and nothing was read for it.
    assert nearest_geojson_in_memory(query, cache) is None
    index = cache.get()
    if store.change_token() is None:
        pytest.fail("both stores give a change token once listening")
    # Built, but the sites' features never fetched: the search would read them.
    with memory_only(), pytest.raises(NotInMemory):
        nearest_sites(index, query.lon, query.lat, query.k)
    assert nearest_geojson_in_memory(query, cache) is None

    answered = 0
    for _ in range(120):
        query = _query(
            store, rng, **rng.choice([{}, {"layers": "green_channels"}, {"crs": "gcj02"}])
        )
        from_store = nearest_geojson(query, cache)
        in_memory = nearest_geojson_in_memory(query, cache)
        if in_memory is not None:
            answered += 1
            assert _without_clock(in_memory) == _without_clock(from_store)
    assert answered >= 100  # once fetched, sites stay in memory

    def no_reads(*args, **kwargs):
        raise AssertionError("the store was read")

    monkeypatch.setattr(store, "get_many", no_reads)
    monkeypatch.setattr(store, "layer_versions", no_reads)
    assert nearest_geojson_in_memory(_query(store, rng), cache) is not None


def test_after_a_write_memory_answers_nothing_until_the_index_is_brought_up_to_date(store):
    cache = SiteIndexCache(store)
    rng = random.Random(5)
    for _ in range(50):
        nearest_geojson(_query(store, rng), cache)  # fetch the sites
    station = store.all_features("stations")[0]
    far = (118.17, 36.89)
    query = parse_nearest_query(
        {"lon": str(far[0]), "lat": str(far[1]), "k": "1", "layers": "stations"}, store.catalog
    )
    if store.change_token() is None:
        pytest.fail("both stores give a change token once listening")
    _move(store, "stations", station.id, *far)
    # The token moved (at once on the embedded store, on notification on PostGIS).
    eventually(lambda: cache.current() is None, "the index stops passing for current", 10.0)
    assert nearest_geojson_in_memory(query, cache) is None
    body = orjson.loads(nearest_geojson(query, cache))  # in a thread, in the route
    assert body["features"][0]["id"] == station.id
    assert body["features"][0]["properties"]["distance_m"] == 0.0


# -- the routes ------------------------------------------------------------------------


def test_nearest_over_http_is_the_same_from_memory_and_after_a_write(client):
    url = "/nearest?lon=118.05&lat=36.80&k=5"
    first = client.get(url)
    assert first.status_code == 200
    again = client.get(url)  # the index is current now: made in memory
    assert _without_clock(again.content) == _without_clock(first.content)
    bad = client.get("/nearest?lon=118.05&lat=36.80&k=five")
    assert bad.status_code == 400 and bad.json()["parameter"] == "k"
    unknown = client.get("/nearest?lon=118.05&lat=36.80&colour=red")
    assert unknown.status_code == 400 and unknown.json()["parameter"] == "colour"
    assert "unknown parameter" in unknown.json()["detail"]


def test_the_query_contract_holds_for_templated_paths_and_ignores_other_methods(client):
    page = client.get("/collections/stations/items?limit=1&colour=red")
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("application/problem+json")
    assert page.json()["parameter"] == "colour"
    assert page.json()["instance"] == "/collections/stations/items"
    blank = client.get("/collections/stations/items?kind=")
    assert blank.status_code == 400 and "needs a value" in blank.json()["detail"]
    many = client.get("/nearest?lon=118&lat=36.8&kind=" + ",".join(["bank"] * 200))
    assert many.status_code == 400 and "at most" in many.json()["detail"]
    assert client.get("/collections/nowhere/items?colour=red").status_code in (400, 404)
    assert client.get("/no/such/path?colour=red").status_code == 404


def test_gzip_for_the_clients_that_ask_and_vary_for_all(client):
    url = "/collections/green_channels/items?limit=50"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert "Accept-Encoding" in [v.strip() for v in plain.headers["vary"].split(",")]
    packed = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in [v.strip() for v in packed.headers["vary"].split(",")]
    assert orjson.loads(packed.content) == orjson.loads(plain.content)  # httpx unpacked it
    assert int(packed.headers["content-length"]) < len(plain.content) / 3
