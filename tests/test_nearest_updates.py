"""The columnar nearest index: built from the store's columns it answers as
the index of features did, and after incremental updates (``applied``, with
or without ``merged``) it still gives the exact nearest places, checked
against brute force on the ellipsoid over every live site."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections import defaultdict

import numpy as np
import orjson
import pytest
from shapely.geometry import Point

import geo_service.analysis.nearest
from geo_service.analysis.nearest import (
    LOCAL_TIME,
    WINDOW_GROUP_RADIUS_M,
    NearestFilters,
    SiteIndex,
    SiteIndexCache,
    institution_name,
    nearest_sites,
    window_groups,
)
from geo_service.sources.crs import GEOD
from geo_service.store import StoredFeature, open_store

MONDAY_10AM = dt.datetime(2026, 11, 30, 10, 0, tzinfo=LOCAL_TIME)
GROUPED = frozenset({"green_channels"})
FILTER_CASES = [
    NearestFilters(),
    NearestFilters(kinds=frozenset({"bank", "hospital", "support_post"})),
    NearestFilters(eligible="martyr_family"),
    NearestFilters(services=frozenset({"priority_queue"})),
    NearestFilters(statuses=frozenset({"open", "planned", "suspended"}), max_distance=2500),
    NearestFilters(statuses=frozenset({"planned"})),
]
LAYER_CASES = [None, ["green_channels"], ["medical", "stations"]]


def _passes(feature: StoredFeature, filters: NearestFilters, layers) -> bool:
    props = feature.properties
    return (
        (layers is None or feature.layer_id in layers)
        and (filters.kinds is None or props.get("kind") in filters.kinds)
        and (not filters.statuses or props.get("status") in filters.statuses)
        and filters.services <= set(props.get("services") or ())
        and (filters.eligible is None or filters.eligible in (props.get("eligible") or ()))
    )


def pairwise_places(features, grouped=GROUPED):
    """The reference for window groups: every pair of sites of one
    institution compared (same address, spaces and width ignored, or within
    the radius on the ellipsoid), closed transitively; the first site of a
    group stands for it."""
    grouped_layers = grouped
    parent = list(range(len(features)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, feature in enumerate(features):
        if feature.layer_id in grouped_layers:
            name = institution_name(feature.properties.get("name"))
            if name:
                buckets[(feature.layer_id, name)].append(row)
    for rows in buckets.values():
        for i, a in enumerate(rows):
            fa = features[a]
            for b in rows[i + 1 :]:
                fb = features[b]
                same_address = bool(address_key(fa.properties.get("address"))) and (
                    address_key(fa.properties.get("address"))
                    == address_key(fb.properties.get("address"))
                )
                if not same_address:
                    metres = GEOD.inv(fa.geometry.x, fa.geometry.y, fb.geometry.x, fb.geometry.y)[2]
                    if metres > WINDOW_GROUP_RADIUS_M:
                        continue
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(len(features))]


def address_key(address):
    return "".join(unicodedata.normalize("NFKC", str(address or "")).casefold().split())


def brute_force(features, lon, lat, k, filters, layers=None):
    """The k nearest places as (metres, id, [window ids]) by measuring every
    live site: windows of one institution grouped as ``window_groups`` says."""
    groups = pairwise_places(features)
    ranked = []
    for row, feature in enumerate(features):
        if not _passes(feature, filters, layers):
            continue
        metres = GEOD.inv(lon, lat, feature.geometry.x, feature.geometry.y)[2]
        if filters.max_distance is None or metres <= filters.max_distance:
            ranked.append((metres, feature.id, groups[row]))
    ranked.sort()
    places, seen = [], set()
    for metres, feature_id, group in ranked:
        if group not in seen:
            seen.add(group)
            windows = [i for _, i, g in ranked if g == group]  # those passing
            several = groups.count(group) > 1  # an institution's windows, passing or not
            places.append((round(metres, 6), feature_id, windows if several else None))
    return places[:k]


def answered(index, lon, lat, k, filters, layers=None):
    return [
        (
            round(r.distance_m, 6),
            r.feature.id,
            None if r.windows is None else [w.feature.id for w in r.windows],
        )
        for r in nearest_sites(index, lon, lat, k, layers, filters, now=MONDAY_10AM)
    ]


def live_features(store, layer_ids):
    return [f for layer_id in layer_ids for f in store.all_features(layer_id)]


# -- built from the store's columns ---------------------------------------------------


def test_from_store_answers_as_the_index_of_features(seeded_path, catalog):
    """On the shipped data, for random points, layers and filters (opening
    hours included), the columnar index and the one built from features give
    the same places, windows and open states."""
    store = open_store(seeded_path, catalog)
    try:
        cache = SiteIndexCache(store)
        columnar = cache.get()
        assert columnar._given is None  # no feature kept per site
        features = live_features(store, cache.layer_ids)
        of_features = SiteIndex(features, grouped_layers=cache.grouped_layers)
        assert len(columnar) == len(of_features) == len(features)
        rng = np.random.default_rng(20)
        cases = [
            *FILTER_CASES,
            NearestFilters(open_at=MONDAY_10AM),
            NearestFilters(hours_known=True),
        ]
        for lon, lat in zip(
            rng.uniform(117.9, 118.25, 60), rng.uniform(36.7, 36.95, 60), strict=True
        ):
            for filters in cases:
                layers = LAYER_CASES[int(rng.integers(len(LAYER_CASES)))]
                k = int(rng.integers(1, 15))
                got = nearest_sites(columnar, lon, lat, k, layers, filters, now=MONDAY_10AM)
                expected = nearest_sites(of_features, lon, lat, k, layers, filters, now=MONDAY_10AM)
                assert [(r.feature, r.distance_m, r.open_state) for r in got] == [
                    (r.feature, r.distance_m, r.open_state) for r in expected
                ]
                assert [[w.feature.id for w in r.windows or ()] for r in got] == [
                    [w.feature.id for w in r.windows or ()] for r in expected
                ]
    finally:
        store.close()


def test_a_district_index_goes_to_the_store_only_once_per_site(store, monkeypatch):
    """Hot queries over a district-scale index are served from the fetched
    features: the store is asked once for each site answered, then never."""
    index = SiteIndexCache(store).get()
    calls = []
    original = store.get_many
    monkeypatch.setattr(store, "get_many", lambda *a: calls.append(a) or original(*a))
    rng = np.random.default_rng(3)
    points = list(zip(rng.uniform(117.95, 118.2, 30), rng.uniform(36.75, 36.9, 30), strict=True))
    for lon, lat in points:
        nearest_sites(index, lon, lat, 8)
    assert calls  # the first answers fetched their features
    fetched = sum(len(ids) for _layer, ids in calls)
    calls.clear()
    for lon, lat in points:
        assert len(nearest_sites(index, lon, lat, 8)) == 8
    assert calls == []
    assert fetched <= len(index)


def test_a_site_deleted_after_the_build_is_skipped_and_the_search_goes_on(store, catalog):
    """A site deleted after the index was built (the update not yet applied),
    never fetched before: found missing, it is left out and the next one answers."""
    cache = SiteIndexCache(store)
    index = cache.get()
    park = (118.042742, 36.810131)
    live = live_features(store, cache.layer_ids)
    gone = brute_force(live, *park, 1, NearestFilters())[0][1]
    layer_id = next(f.layer_id for f in live if f.id == gone)
    store.change(layer_id, gone, None, actor="test", action="delete")
    after = answered(index, *park, 3, NearestFilters())  # the old index, not yet updated
    assert gone not in [i for _, i, _ in after]
    assert after == brute_force(live_features(store, cache.layer_ids), *park, 3, NearestFilters())


# -- incremental updates against brute force --------------------------------------------


def _edit(rng, store, catalog, live, step):
    """One random write to the store: create, move, delete, change of kind or
    status, or a rename into or out of an institution. Returns (upserted
    (layer, id) or None, deleted (layer, id) or None)."""
    layer_ids = ["stations", "green_channels", "medical"]
    op = rng.choice(["create", "move", "delete", "kind", "status", "join", "leave", "twin"])
    by_layer = {layer_id: [f for f in live if f.layer_id == layer_id] for layer_id in layer_ids}
    layer_id = layer_ids[int(rng.integers(3))]
    if op in {"join", "leave"}:
        layer_id = "green_channels"
    sites = by_layer[layer_id]
    template = sites[int(rng.integers(len(sites)))]
    props = dict(template.properties)
    x, y = template.geometry.x, template.geometry.y
    if op == "delete" and len(sites) > 3:
        store.change(layer_id, template.id, None, actor="test", action="delete")
        return None, (layer_id, template.id)
    if op in {"create", "twin"}:
        props["id"] = f"new-{step}"
        props["name"] = f"新站点{step}"
        if op == "create":  # somewhere near another site
            x, y, _ = GEOD.fwd(x, y, float(rng.uniform(0, 360)), float(rng.uniform(5, 3000)))
        # a twin stands exactly on its template: a tie broken by id
    elif op == "move":
        x, y, _ = GEOD.fwd(x, y, float(rng.uniform(0, 360)), float(rng.uniform(1, 4000)))
    elif op == "kind":
        props["kind"] = rng.choice(sorted(catalog.layer(layer_id).kinds))
    elif op == "status":
        props["status"] = rng.choice(["open", "planned", "suspended"])
    elif op == "join":  # a window of another site's institution, 10 m from it
        host = sites[int(rng.integers(len(sites)))]
        props["name"] = f"{host.properties['name'].split()[0]} 新窗口{step}"
        x, y, _ = GEOD.fwd(host.geometry.x, host.geometry.y, 45.0, 10.0)
    elif op == "leave":
        props["name"] = f"独立机构{step} 窗口"
    feature = catalog.validate_feature(
        layer_id,
        {
            "type": "Feature",
            "properties": props,
            "geometry": {"type": "Point", "coordinates": [x, y]},
        },
    )
    store.write(layer_id, [feature], actor="test")
    return (layer_id, feature.id), None


@pytest.mark.parametrize("trees", ["sorted", "kd-tree"])
def test_applied_updates_stay_exact(store, catalog, monkeypatch, trees):
    """Sixty random writes, each applied to the index as the change feed
    would (the latest state of the site, or its deletion), with a merge now
    and then: after every one the answers equal brute force over the store's
    live sites, for random points, layers, filters and k (up to more than
    there are sites)."""
    if trees == "kd-tree":
        monkeypatch.setattr(geo_service.analysis.nearest, "SMALL_GROUP", 0)
    cache = SiteIndexCache(store)
    index = cache.get()
    rng = np.random.default_rng(2026 if trees == "sorted" else 12)
    live = live_features(store, cache.layer_ids)
    for step in range(60):
        upserted, deleted = _edit(rng, store, catalog, live, step)
        upserts = [store.get(*upserted)] if upserted else []
        index = index.applied(
            upserts, [deleted] if deleted else [], versions=index.versions, marks=index.marks
        )
        if step % 17 == 16:
            index = index.merged()
            assert index.delta_size == 0
        live = live_features(store, cache.layer_ids)
        assert len(index) == len(live)
        for _ in range(6):
            lon, lat = rng.uniform(117.95, 118.2), rng.uniform(36.72, 36.92)
            filters = FILTER_CASES[int(rng.integers(len(FILTER_CASES)))]
            layers = LAYER_CASES[int(rng.integers(len(LAYER_CASES)))]
            k = int(rng.choice([1, 3, 7, 200]))
            got = answered(index, lon, lat, k, filters, layers)
            assert got == brute_force(live, lon, lat, k, filters, layers), (step, lon, lat, k)


def test_applied_on_an_index_of_features_and_its_merge():
    """Without a store: sites at one spot (ties), a window joining and leaving
    an institution, deletions of delta and base sites."""

    def site(site_id, lon, lat, name=None, **props):
        base = {
            "id": site_id,
            "name": name or site_id,
            "kind": "bank",
            "status": "open",
            "services": [],
            "eligible": ["veteran"],
            "opening_hours": None,
            "address": f"{site_id}路",
        }
        base.update(props)
        return StoredFeature("green_channels", site_id, base, Point(lon, lat))

    park = (118.04, 36.81)
    east = [GEOD.fwd(*park, 90, d)[:2] for d in (100, 200, 300)]
    index = SiteIndex([site("a", *east[0], "医院 一"), site("b", *east[1]), site("c", *east[2])])
    assert [i for _, i, _ in answered(index, *park, 5, NearestFilters())] == ["a", "b", "c"]
    # d stands on b (a tie, d after b) and e joins a's institution 10 m from a.
    e_spot = GEOD.fwd(*east[0], 0, 10)[:2]
    after = index.applied(
        [site("d", *east[1]), site("e", *e_spot, "医院 二")], [], versions={}, marks={}
    )
    got = answered(after, *park, 5, NearestFilters())
    assert [(i, w) for _, i, w in got] == [("a", ["a", "e"]), ("b", None), ("d", None), ("c", None)]
    assert after.delta_size == 2 and len(after) == 5
    # e leaves the institution, b is deleted, a moves beyond c.
    moved_a = site("a", *GEOD.fwd(*park, 90, 400)[:2], "医院 一")
    later = after.applied(
        [site("e", *e_spot, "诊所 二"), moved_a], [("green_channels", "b")], versions={}, marks={}
    )
    got = answered(later, *park, 5, NearestFilters())
    assert [(i, w) for _, i, w in got] == [("e", None), ("d", None), ("c", None), ("a", None)]
    assert answered(later.merged(), *park, 5, NearestFilters()) == got
    # The earlier indexes are as they were.
    assert [i for _, i, _ in answered(index, *park, 5, NearestFilters())] == ["a", "b", "c"]
    assert next((i, w) for _, i, w in answered(after, *park, 5, NearestFilters())) == (
        "a",
        ["a", "e"],
    )


# -- the store's reads for the index ------------------------------------------------------


def test_site_rows_hold_exactly_what_the_features_say(store):
    """Streamed in small batches, every site once, with its exact position
    (not the GeoPackage R-tree's float32 box) and the columns the index reads."""
    for layer_id in ("stations", "green_channels"):
        features = {f.id: f for f in store.all_features(layer_id)}
        batches = list(store.site_rows(layer_id, names=layer_id == "green_channels", batch=7))
        assert len(batches) == -(-len(features) // 7)
        seen = []
        for rows in batches:
            for i, site_id in enumerate(rows.ids):
                feature, props = features[site_id], features[site_id].properties
                seen.append(site_id)
                assert (rows.lon[i], rows.lat[i]) == (feature.geometry.x, feature.geometry.y)
                assert rows.kind[i] == props["kind"] and rows.status[i] == props["status"]
                assert orjson.loads(rows.services[i]) == props["services"]
                assert orjson.loads(rows.eligible[i]) == props["eligible"]
                assert rows.opening_hours[i] == props["opening_hours"]
                if rows.name is not None:
                    assert (rows.name[i], rows.address[i]) == (props["name"], props["address"])
        assert sorted(seen) == sorted(features)
        assert all(rows.name is None for rows in batches) == (layer_id == "stations")


def test_get_many_answers_the_live_ids_asked(store):
    features = store.all_features("medical")
    asked = [features[3].id, "no-such-site", features[0].id, features[3].id]
    found = store.get_many("medical", asked)
    assert found == {features[0].id: features[0], features[3].id: features[3]}
    store.change("medical", features[0].id, None, actor="test", action="delete")
    assert set(store.get_many("medical", asked)) == {features[3].id}
    assert store.get_many("medical", []) == {}


def test_an_answer_after_an_update_serializes_the_site_as_it_is_now(store, catalog):
    """The serialized site fragments are kept across updates, per site
    revision: a renamed site is answered with its new name at once."""
    from geo_service.services.nearest import nearest_geojson, parse_nearest_query

    class Current:  # the cache as the feed keeps it: the newest index
        def get(self):
            return index

    park = (118.042742, 36.810131)
    query = parse_nearest_query({"lon": str(park[0]), "lat": str(park[1]), "k": "3"}, catalog)
    index = SiteIndexCache(store).get()
    first = orjson.loads(nearest_geojson(query, Current()))["features"][0]
    layer_id = first["properties"]["layer"]
    stored = store.get(layer_id, first["id"])
    props = {**stored.properties, "name": "改名后的站点 窗口"}
    renamed = catalog.validate_feature(
        layer_id,
        {
            "type": "Feature",
            "properties": props,
            "geometry": {"type": "Point", "coordinates": [stored.geometry.x, stored.geometry.y]},
        },
    )
    store.write(layer_id, [renamed], actor="test")
    before = index
    index = index.applied(
        [store.get(layer_id, first["id"])], [], versions=index.versions, marks=index.marks
    )
    again = orjson.loads(nearest_geojson(query, Current()))["features"][0]
    assert again["id"] == first["id"]
    assert again["properties"]["name"] == "改名后的站点 窗口"
    assert "%E6%94%B9%E5%90%8D" in again["properties"]["navigation"]["amap"]  # 改名, URL-encoded
    assert {k: v for k, v in again.items() if k != "properties"} == {
        k: v for k, v in first.items() if k != "properties"
    }
    assert before is not index


def test_institutions_sharing_one_spot_stay_apart_and_their_windows_together():
    """Sites geocoded to one spot (a town's centre): 300 institutions with
    three windows each, and addresses all different; each institution is one
    place, as the pairwise rule says."""
    spot = Point(118.05, 36.80)
    features = [
        StoredFeature(
            "green_channels",
            f"s{i:03d}-{w}",
            {"name": f"机构{i} 窗口{w}", "address": f"路{i}-{w}号"},
            spot,
        )
        for i in range(300)
        for w in range(3)
    ]
    groups = window_groups(features)
    assert groups == pairwise_places(features)
    assert len(set(groups)) == 300
