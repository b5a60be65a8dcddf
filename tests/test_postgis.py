"""The PostGIS store against the embedded one: the same data gives the same
answers (features, pages, filters, nearest order and distances), and the
database commands and the server work on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import numpy as np
import pytest

from geo_service.analysis.nearest import SiteIndexCache, nearest_sites
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import ROOT, TEST_PG, running_server


@pytest.fixture
def pg_url():
    if not TEST_PG:
        if os.environ.get("CI") == "true":
            pytest.fail("GEO_SERVICE_TEST_PG is not set (CI=true: the PostGIS tests must run)")
        pytest.skip("no PostGIS database (set GEO_SERVICE_TEST_PG=postgresql://...)")
    separator = "&" if "?" in TEST_PG else "?"
    url = f"{TEST_PG}{separator}schema=t_{uuid.uuid4().hex[:12]}"
    yield url
    from geo_service.sources.catalog import load_catalog

    store = open_store(url, load_catalog())
    store.drop()
    store.close()


@pytest.fixture
def both(pg_url, tmp_path, catalog):
    embedded = open_store(tmp_path / "same.gpkg", catalog)
    postgis = open_store(pg_url, catalog)
    for store in (embedded, postgis):
        seed_store(store, catalog)
    yield embedded, postgis
    embedded.close()
    postgis.close()


def test_same_features_pages_and_filters(both, catalog):
    embedded, postgis = both
    for layer in catalog.layers:
        assert embedded.count(layer) == postgis.count(layer)
        a, b = embedded.all_features(layer), postgis.all_features(layer)
        assert [f.id for f in a] == [f.id for f in b]
        assert [f.properties for f in a] == [f.properties for f in b]
        assert all(x.geometry.equals_exact(y.geometry, 1e-12) for x, y in zip(a, b, strict=True))
        assert [f.etag for f in a] == [f.etag for f in b]
        assert embedded.extent(layer) == pytest.approx(postgis.extent(layer))
    for kwargs in (
        {"bbox": (118.0, 36.78, 118.1, 36.83)},
        {"bbox": (118.0, 36.78, 118.1, 36.83), "filters": {"kind": ["hospital", "bank"]}},
        {"filters": {"services": ["priority_queue"], "sample": ["false"]}},
        {"limit": 7, "offset": 7},
    ):
        for layer in ("green_channels", "towns"):
            if layer == "towns" and "filters" in kwargs:
                continue
            x, y = embedded.query(layer, **kwargs), postgis.query(layer, **kwargs)
            assert x.number_matched == y.number_matched, (layer, kwargs)
            assert [f.id for f in x.features] == [f.id for f in y.features], (layer, kwargs)


def test_same_nearest_answers(both):
    embedded, postgis = both
    a, b = SiteIndexCache(embedded).get(), SiteIndexCache(postgis).get()
    rng = np.random.default_rng(8)
    for lon, lat in zip(rng.uniform(117.9, 118.25, 100), rng.uniform(36.7, 36.9, 100), strict=True):
        x = [(r.feature.id, r.distance_m) for r in nearest_sites(a, lon, lat, 7)]
        y = [(r.feature.id, r.distance_m) for r in nearest_sites(b, lon, lat, 7)]
        assert x == y


def test_db_init_and_load_copy_an_embedded_store(pg_url, tmp_path, catalog):
    source = tmp_path / "office.gpkg"
    seeded = open_store(source, catalog)
    seed_store(seeded, catalog)
    counts = {layer: seeded.count(layer) for layer in catalog.layers}
    seeded.close()
    run = [sys.executable, "-m", "geo_service.cli", "db"]
    done = subprocess.run(
        [*run, "init", "--store", pg_url], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*run, "load", "--from", str(source), "--store", pg_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    loaded = open_store(pg_url, catalog)
    assert {layer: loaded.count(layer) for layer in catalog.layers} == counts
    assert loaded.audit_records()[0]["action"] == "load"
    loaded.close()
    refused = subprocess.run(
        [*run, "init", "--store", str(tmp_path / "x.gpkg")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert refused.returncode == 2 and "postgresql://" in refused.stderr


def test_the_server_seeds_an_empty_database(pg_url, tmp_path):
    with running_server(tmp_path, GEO_SERVICE_STORE=pg_url) as base:
        collections = httpx.get(f"{base}/collections", params={"f": "json"}).json()
        counts = {
            c["id"]: httpx.get(f"{base}/collections/{c['id']}/items", params={"limit": 1}).json()[
                "numberMatched"
            ]
            for c in collections["collections"]
        }
        assert counts["towns"] == 13 and counts["stations"] > 0
        nearest = httpx.get(f"{base}/nearest", params={"lon": 118.0427, "lat": 36.8101}).json()
        assert nearest["numberReturned"] == 5


def test_a_bad_database_url_is_a_clear_error(catalog):
    from geo_service.errors import StoreError

    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        open_store("postgresql://nobody:wrong@127.0.0.1:1/none", catalog)


@pytest.mark.parametrize("backend", ["geopackage", "postgis"])
def test_several_workers_all_see_a_change_at_once(backend, pg_url, tmp_path, catalog):
    """serve --workers 3: a change written by another process is answered by
    every worker on the next request (no restart, no stale index)."""
    from geo_service.sources.catalog import ValidFeature

    location = pg_url if backend == "postgis" else str(tmp_path / "shared.gpkg")
    store = open_store(location, catalog)
    seed_store(store, catalog)
    with running_server(tmp_path, "--workers", "3", GEO_SERVICE_STORE=location) as base:
        site = store.query("green_channels", filters={"kind": ["bank"]}, limit=1).features[0]
        lon, lat = site.geometry.x, site.geometry.y
        before = httpx.get(f"{base}/nearest", params={"lon": lon, "lat": lat, "k": 1}).json()
        assert before["features"][0]["properties"]["name"] == site.properties["name"]
        renamed = dict(site.properties, name=site.properties["name"] + "（已更名）")
        store.write("green_channels", [ValidFeature(site.id, renamed, site.geometry)], actor="test")
        with httpx.Client() as client:  # new connections spread over the workers
            for _ in range(30):
                answer = httpx.get(
                    f"{base}/nearest",
                    params={"lon": lon, "lat": lat, "k": 1},
                    headers={"Connection": "close"},
                ).json()
                assert answer["features"][0]["properties"]["name"] == renamed["name"]
                item = client.get(f"{base}/collections/green_channels/items/{site.id}").json()
                assert item["properties"]["name"] == renamed["name"]
    store.close()


def _tile_of(lon, lat, z):
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.mark.parametrize("z", [11, 13, 14, 15])
def test_vector_tiles_from_both_backends_hold_the_same_sites(both, z):
    import mapbox_vector_tile

    from geo_service.store.tiles import DETAIL_ZOOM, tile_bounds

    embedded, postgis = both
    x, y = _tile_of(118.045, 36.807, z)
    tiles = []
    for store in (embedded, postgis):
        content = store.tile("green_channels", z, x, y)
        layer = mapbox_vector_tile.decode(content).get("green_channels", {"features": []})
        tiles.append(sorted((f["properties"]["id"], f["properties"]) for f in layer["features"]))
        # Names from DETAIL_ZOOM on; below it, thinned dots with their counts.
        named = [bool(f["properties"].get("name")) for f in layer["features"]]
        assert named and all(named) == (z >= DETAIL_ZOOM) and any(named) == (z >= DETAIL_ZOOM)
        assert all(("count" in f["properties"]) == (z < DETAIL_ZOOM) for f in layer["features"])
    assert tiles[0] == tiles[1]
    _, (west, south, east, north) = tile_bounds(z, x, y)
    inside = {
        f.id
        for f in embedded.query(
            "green_channels", bbox=(west, south, east, north), limit=1000
        ).features
    }
    ids = {i for i, _ in tiles[0]}
    if z >= DETAIL_ZOOM:
        assert inside <= ids  # every site in the tile is drawn (plus the buffer's)
    else:
        assert sum(p["count"] for _, p in tiles[0]) >= len(inside)


def test_vector_tile_endpoint(client):
    x, y = _tile_of(118.045, 36.807, 12)
    answer = client.get(f"/collections/stations/tiles/12/{x}/{y}.mvt")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert len(answer.content) > 50
    assert client.get("/collections/stations/tiles/12/0/0.mvt").content == b""  # mid-Pacific
    assert client.get("/collections/stations/tiles/30/0/0.mvt").status_code == 400
    assert client.get("/collections/stations/tiles/2/9/0.mvt").status_code == 400
    assert client.get("/collections/shops/tiles/2/1/1.mvt").status_code == 404
    assert client.get("/collections/stations/tiles/2/a/1.mvt").status_code == 400
