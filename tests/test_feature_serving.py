"""One feature and bbox pages answered from memory (``services.features``),
on both backends: the same answers as the store's own path, and never an
answer older than a write, from this process or another."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from geo_service.api import create_app
from geo_service.outputs.geojson import collection_bytes, feature_collection, feature_fragments
from geo_service.services.access import issue_token
from geo_service.services.features import BoundedCache, FeatureServing
from geo_service.settings import Settings
from geo_service.sources.catalog import ValidFeature, load_catalog
from geo_service.sources.crs import CoordinateSystem, CrsReference
from geo_service.store import Store, open_store
from tests.conftest import eventually, running_server

MASHANG = "370303009"  # 马尚街道
MASHANG_SITE = "st-town-mashang"
#: Where the added green channels lie: a corner of the district.
AREA = (118.00, 36.76, 118.06, 36.80)
CRSES = [
    CrsReference(),
    CrsReference(CoordinateSystem.wgs84, lat_first=True),
    CrsReference(CoordinateSystem.gcj02),
]


def add_green_channels(store: Store, n: int, seed: int = 21) -> list[Point]:
    """``n`` more green channels in ``AREA``: copies of a real one, a quarter
    of them on a 0.01° grid (so boxes can have an edge exactly on a site)."""
    rng = random.Random(seed)
    template = store.all_features("green_channels")[0].properties
    points, features = [], []
    for i in range(n):
        if i % 4 == 0:
            lon = AREA[0] + 0.01 * rng.randint(0, 6)
            lat = AREA[1] + 0.01 * rng.randint(0, 4)
        else:
            lon, lat = rng.uniform(AREA[0], AREA[2]), rng.uniform(AREA[1], AREA[3])
        site_id = f"gc-test-{i:04d}"
        point = Point(round(lon, 7), round(lat, 7))
        points.append(point)
        props = {**template, "id": site_id, "name": f"测试窗口{i}"}
        features.append(ValidFeature(site_id, props, point))
    store.write("green_channels", features, actor="test")
    return points


def boxes(points: list[Point], rng: random.Random, n: int) -> Iterator[tuple]:
    """Random boxes over ``AREA``, and boxes with an edge on a site, exactly
    or a hair beside it (where a store's float32 index and an exact test part)."""
    for _ in range(n):
        w, s = rng.uniform(AREA[0] - 0.01, AREA[2]), rng.uniform(AREA[1] - 0.01, AREA[3])
        size = rng.uniform(0.001, 0.04)
        yield (w, s, w + size, s + size)
    for point in points[::7]:
        for nudge in (0.0, 1e-9, -1e-9, 5e-6):
            x, y = point.x + nudge, point.y - nudge
            yield (x, y, x + 0.003, y + 0.003)
            yield (x - 0.003, y - 0.003, x, y)


def the_stores_page(store: Store, box, limit: int, offset: int, crs: CrsReference):
    page = store.query("green_channels", bbox=box, limit=limit, offset=offset)
    return feature_fragments(page.features, crs), page.number_matched


def test_a_page_from_memory_is_the_stores_own_page(store: Store):
    points = add_green_channels(store, 240)
    serving = FeatureServing(store)
    rng = random.Random(5)
    compared = 0
    for box, (limit, offset), crs in zip(
        boxes(points, rng, 120),
        itertools.cycle([(10, 0), (3, 2), (100, 0), (5, 40), (1, 1000)]),
        itertools.cycle(CRSES),
        strict=False,
    ):
        page = serving.page("green_channels", box, limit, offset, crs)
        assert page is not None
        expected, matched = the_stores_page(store, box, limit, offset, crs)
        assert (page.fragments, page.number_matched) == (expected, matched), box
        compared += matched
    assert compared > 1000, "the boxes held too few sites to compare"
    # Without a box: every feature, paged by id.
    page = serving.page("green_channels", None, 50, 200, CrsReference())
    assert (page.fragments, page.number_matched) == the_stores_page(
        store, None, 50, 200, CrsReference()
    )


def test_assembled_pages_are_the_collection_serialised_whole(store: Store):
    features = store.all_features("stations")[:7]
    for crs in CRSES:
        members = {"numberMatched": 7, "numberReturned": 7, "links": [{"href": "x?a=1&b=<"}]}
        whole = orjson.dumps(feature_collection(features, crs, **members))
        assert collection_bytes(feature_fragments(features, crs), crs, **members) == whole
        assert collection_bytes([], crs) == orjson.dumps(feature_collection([], crs))


def test_the_caches_are_bounded_by_bytes_oldest_use_first():
    cache: BoundedCache[bytes] = BoundedCache(1000, len)
    for i in range(10):
        cache.put(i, bytes(150))
    assert cache.bytes <= 1000 and len(cache) == 6
    assert cache.get(0) is None and cache.get(4) is not None
    cache.put("big", bytes(600))  # 4 was used last: it stays, 5..8 go
    assert [k for k in (4, 5, 6, 7, 8, 9, "big") if cache.get(k) is not None] == [4, 9, "big"]
    cache.put("huge", bytes(5000))  # larger than the bound: kept alone
    assert len(cache) == 1 and cache.get("huge") is not None


# -- through the API (both stores have a change token) ----------------------------------


class Counted:
    """Counts the app store's reads of one feature (``Store.get``)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch):
        self.gets = 0
        original = store.get

        def get(layer_id: str, feature_id: str):
            self.gets += 1
            return original(layer_id, feature_id)

        monkeypatch.setattr(store, "get", get)


@pytest.fixture
def office(store: Store, monkeypatch) -> Iterator[tuple[TestClient, dict, Counted]]:
    app = create_app(Settings(store=store.location))
    with TestClient(app) as client:
        known = [town.id for town in store.all_features("towns")]
        bearer = issue_token(store, "office", "admin", [], known)
        counted = Counted(app.state.runtime.store, monkeypatch)
        eventually(
            lambda: app.state.runtime.store.change_token() is not None, "the store has a token"
        )
        yield client, {"Authorization": f"Bearer {bearer}"}, counted


def read(client: TestClient, feature_id: str = MASHANG_SITE) -> httpx.Response:
    response = client.get(f"/collections/stations/items/{feature_id}")
    assert response.status_code == 200, response.text
    return response


def test_one_feature_is_read_once_then_answered_from_memory(office):
    client, _, counted = office
    first = read(client)
    before = counted.gets
    again = read(client)
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Content-Crs"] == first.headers["Content-Crs"]
    assert counted.gets == before, "the second read went to the store"
    # Another CRS is another answer, read once.
    gcj = client.get(f"/collections/stations/items/{MASHANG_SITE}", params={"crs": "gcj02"})
    assert gcj.json()["coordinate_system"] == "gcj02"
    assert gcj.json()["geometry"] != first.json()["geometry"]


def test_if_none_match_is_a_304_from_memory(office):
    client, _, counted = office
    etag = read(client).headers["ETag"]
    before = counted.gets
    response = client.get(
        f"/collections/stations/items/{MASHANG_SITE}", headers={"If-None-Match": etag}
    )
    assert response.status_code == 304
    assert response.headers["ETag"] == etag
    assert response.content == b""
    assert counted.gets == before
    stale = client.get(
        f"/collections/stations/items/{MASHANG_SITE}", headers={"If-None-Match": '"nope"'}
    )
    assert stale.status_code == 200


def test_a_write_through_the_api_is_read_back_at_once(office):
    client, auth, _ = office
    etag = read(client).headers["ETag"]
    page = {"bbox": "117.93,36.70,118.18,36.90", "limit": "1000"}
    assert MASHANG_SITE in [
        f["id"] for f in client.get("/collections/stations/items", params=page).json()["features"]
    ]
    patched = client.patch(
        f"/collections/stations/items/{MASHANG_SITE}",
        json={"properties": {"name": "马尚街道退役军人服务站（改）"}},
        headers={**auth, "If-Match": etag},
    )
    assert patched.status_code == 200, patched.text
    after = read(client)
    assert after.json()["properties"]["name"] == "马尚街道退役军人服务站（改）"
    assert after.headers["ETag"] != etag
    # The old ETag is no longer current: a 200, not a 304.
    revalidated = client.get(
        f"/collections/stations/items/{MASHANG_SITE}", headers={"If-None-Match": etag}
    )
    assert revalidated.status_code == 200
    listed = client.get("/collections/stations/items", params=page).json()["features"]
    assert {f["id"]: f for f in listed}[MASHANG_SITE]["properties"]["name"].endswith("（改）")
    deleted = client.delete(
        f"/collections/stations/items/{MASHANG_SITE}",
        headers={**auth, "If-Match": after.headers["ETag"]},
    )
    assert deleted.status_code == 204, deleted.text
    gone = client.get(f"/collections/stations/items/{MASHANG_SITE}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    listed = client.get("/collections/stations/items", params=page).json()
    assert MASHANG_SITE not in [f["id"] for f in listed["features"]]


def test_a_write_by_another_store_on_the_same_data_is_read_back(office, store: Store):
    """``store`` is a second Store on the app's file or schema, as another
    process's would be: its write moves the app store's change token."""
    client, _, _ = office
    first = read(client).json()
    page = {"bbox": "117.93,36.70,118.18,36.90", "limit": "1000"}
    count = client.get("/collections/stations/items", params=page).json()["numberMatched"]
    stored = store.get("stations", MASHANG_SITE)
    moved = ValidFeature(
        MASHANG_SITE, {**stored.properties, "name": "另一进程改的名字"}, Point(118.3, 36.95)
    )
    store.write("stations", [moved], actor="other process")

    def renamed() -> bool:
        return read(client).json()["properties"]["name"] == "另一进程改的名字"

    eventually(renamed, "the item still answers the old name")
    assert read(client).json()["geometry"] != first["geometry"]

    def left_the_box() -> bool:
        return (
            client.get("/collections/stations/items", params=page).json()["numberMatched"]
            == count - 1
        )

    eventually(left_the_box, "the page still counts the site that moved out of its box")


def test_pages_from_memory_equal_the_store_path_through_the_api(office, store, monkeypatch):
    client, _, _ = office
    points = add_green_channels(store, 120)
    rng = random.Random(8)
    queries = []
    for box, crs in zip(boxes(points, rng, 40), itertools.cycle(["wgs84", "gcj02"]), strict=False):
        if box[0] < box[2] and box[1] < box[3]:
            queries.append({"bbox": ",".join(map(repr, box)), "limit": "7", "crs": crs})
    queries.append({"bbox": "118.0,36.76,118.06,36.8", "limit": "5", "offset": "10"})
    queries.append({"limit": "20", "offset": "30"})
    fast = [client.get("/collections/green_channels/items", params=q) for q in queries]
    for response in fast:
        assert response.status_code == 200
    monkeypatch.setattr(FeatureServing, "cached_page", lambda self, *a: None)
    monkeypatch.setattr(FeatureServing, "page", lambda self, *a: None)
    for query, response in zip(queries, fast, strict=True):
        slow = client.get("/collections/green_channels/items", params=query)
        assert slow.content == response.content, query
        assert slow.headers.get("Content-Crs") == response.headers.get("Content-Crs")


def test_hostile_names_come_back_intact_from_memory(office, store):
    client, auth, _ = office
    hostile = '</script><img src=x onerror=alert(1)>"},{"id":"x'
    etag = read(client).headers["ETag"]
    patched = client.patch(
        f"/collections/stations/items/{MASHANG_SITE}",
        json={"properties": {"name": hostile}},
        headers={**auth, "If-Match": etag},
    )
    assert patched.status_code == 200, patched.text
    for _ in range(2):  # read, then from memory
        assert read(client).json()["properties"]["name"] == hostile
        page = client.get(
            "/collections/stations/items",
            params={"bbox": "117.93,36.70,118.18,36.90", "limit": "1000"},
        ).json()
        assert {f["id"]: f for f in page["features"]}[MASHANG_SITE]["properties"]["name"] == hostile
    html = client.get(f"/collections/stations/items/{MASHANG_SITE}", params={"f": "html"}).text
    assert "<img src=x" not in html and "</script><img" not in html


# -- a real server with three workers -------------------------------------------------


def test_every_worker_answers_a_write_to_an_item_and_a_page_soon(tmp_path, server_store):
    location = server_store["GEO_SERVICE_STORE"]
    with running_server(tmp_path, "--workers", "3", **server_store) as base:
        store = open_store(location, load_catalog())
        try:
            known = [town.id for town in store.all_features("towns")]
            token = issue_token(store, "office", "admin", [], known)
        finally:
            store.close()
        item = f"/collections/stations/items/{MASHANG_SITE}"
        page = (
            "/collections/stations/items",
            {"bbox": "117.93,36.70,118.18,36.90", "limit": "500"},
        )
        # Fresh connections, so requests spread over the workers and fill each one's memory.
        plain = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=30, limits=plain) as http:
            for _ in range(15):
                etag = http.get(item).headers["ETag"]
                assert http.get(page[0], params=page[1]).status_code == 200
            patched = http.patch(
                item,
                json={"properties": {"name": "三个进程都要看到的新名字"}},
                headers={"Authorization": f"Bearer {token}", "If-Match": etag},
            )
            assert patched.status_code == 200, patched.text

            def names() -> tuple[str, str]:
                one = http.get(item).json()["properties"]["name"]
                listed = http.get(page[0], params=page[1]).json()["features"]
                return one, {f["id"]: f for f in listed}[MASHANG_SITE]["properties"]["name"]

            streak = 0
            deadline = time.monotonic() + 30
            while streak < 30:
                assert time.monotonic() < deadline, "some worker still answers the old name"
                new = names() == ("三个进程都要看到的新名字",) * 2
                streak = streak + 1 if new else 0


SHORTCUT_QUERIES = [
    ("/collections/stations/items/st-town-mashang", ""),
    ("/collections/stations/items/st-town-mashang", "crs=gcj02"),
    (
        "/collections/stations/items/st-town-mashang",
        "crs=http://www.opengis.net/def/crs/EPSG/0/4326",
    ),
    ("/collections/stations/items/st-town-mashang", "f=json"),
    ("/collections/stations/items/st-town-mashang", "f=xml"),
    ("/collections/stations/items/st-town-mashang", "crs=epsg:4326"),
    ("/collections/stations/items/st-town-mashang", "crs="),
    ("/collections/stations/items/st-town-mashang", "crs=gcj02&crs=bd09"),
    ("/collections/stations/items/st-town-mashang", "colour=red"),
    ("/collections/stations/items/no-such-site", ""),
    ("/collections/spaceports/items/st-town-mashang", ""),
    ("/collections/stations/items", "bbox=117.93,36.70,118.18,36.90&limit=7&offset=3"),
    (
        "/collections/stations/items",
        "bbox=36.70,117.93,36.90,118.18&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/4326",
    ),
    ("/collections/stations/items", "bbox=117.93,36.70,118.18,36.90&bbox-crs=gcj02&crs=bd09"),
    ("/collections/stations/items", "bbox=117.93,36.70,0,118.18,36.90,10"),
    ("/collections/stations/items", "limit=0"),
    ("/collections/stations/items", "limit=10001"),
    ("/collections/stations/items", "limit=1e3"),
    ("/collections/stations/items", "limit=+5"),
    ("/collections/stations/items", "limit=%205"),
    ("/collections/stations/items", "limit=5&limit=6"),
    ("/collections/stations/items", "offset=-1"),
    ("/collections/stations/items", "offset=10000001"),
    ("/collections/stations/items", "offset=99999"),
    ("/collections/stations/items", "bbox=1,2,3"),
    ("/collections/stations/items", "bbox=1,2,3,4,5,6,7"),
    ("/collections/stations/items", "bbox=118,36,117,37"),
    ("/collections/stations/items", "bbox=118,36.8,118,36.9"),
    ("/collections/stations/items", "bbox=nan,1,2,3"),
    ("/collections/stations/items", "bbox="),
    ("/collections/stations/items", "bbox-crs=mars"),
    ("/collections/stations/items", "f=html"),
    ("/collections/stations/items", "kind=bank"),
    ("/collections/district/items", "bbox=117.93,36.70,118.18,36.90"),
    ("/collections/spaceports/items", "bbox=117.93,36.70,118.18,36.90"),
]


def test_the_shortcut_answers_as_the_declared_route(office, monkeypatch):
    """Every answer, good or bad, the same with the shortcut as without it."""
    from geo_service.api import ogc

    client, _, _ = office
    with_shortcut = [client.get(f"{path}?{query}") for path, query in SHORTCUT_QUERIES]
    monkeypatch.setattr(ogc, "_SHORTCUTS", {})
    for (path, query), fast in zip(SHORTCUT_QUERIES, with_shortcut, strict=True):
        declared = client.get(f"{path}?{query}")
        assert (fast.status_code, fast.content) == (declared.status_code, declared.content), query
        for header in ("content-type", "ETag", "Content-Crs", "Vary"):
            assert fast.headers.get(header) == declared.headers.get(header), (query, header)
    assert {r.status_code for r in with_shortcut} >= {200, 400, 404}


def test_without_a_token_every_read_asks_the_store_and_sees_every_write(office, store, monkeypatch):
    """A store that cannot tell (PostGIS while its listener reconnects) is
    read in a thread on every request, and no write is missed."""
    client, _, _ = office
    monkeypatch.setattr(client.app.state.runtime.store, "change_token", lambda: None)
    page = {"bbox": "117.93,36.70,118.18,36.90", "limit": "1000"}
    read(client)
    client.get("/collections/stations/items", params=page)
    stored = store.get("stations", MASHANG_SITE)
    renamed = ValidFeature(
        MASHANG_SITE, {**stored.properties, "name": "无令牌也要看到"}, stored.geometry
    )
    store.write("stations", [renamed], actor="other process")
    assert read(client).json()["properties"]["name"] == "无令牌也要看到"
    listed = client.get("/collections/stations/items", params=page).json()["features"]
    assert {f["id"]: f for f in listed}[MASHANG_SITE]["properties"]["name"] == "无令牌也要看到"
