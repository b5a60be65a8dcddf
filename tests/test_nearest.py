"""Nearest-service queries: answers known by construction, and agreement with brute force."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from shapely.geometry import Point

from geo_service.analysis.nearest import (
    LOCAL_TIME,
    SMALL_GROUP,
    NearestFilters,
    OpenState,
    SiteIndex,
    SiteIndexCache,
    navigation_links,
    nearest_sites,
)
from geo_service.sources.crs import GEOD
from geo_service.store import StoredFeature

# A resident at 人民公园 (WGS-84, converted from the Amap point of the park).
PARK = (118.042742, 36.810131)
MONDAY_10AM = dt.datetime(2026, 11, 30, 10, 0, tzinfo=LOCAL_TIME)
SUNDAY_10AM = dt.datetime(2026, 11, 29, 10, 0, tzinfo=LOCAL_TIME)


def site(site_id, lon, lat, kind="bank", **props):
    base = {
        "id": site_id,
        "name": site_id,
        "kind": kind,
        "status": "open",
        "services": ["priority_queue"],
        "eligible": ["veteran", "military_family"],
        "opening_hours": "Mo-Fr 09:00-17:00",
    }
    base.update(props)
    return StoredFeature("green_channels", site_id, base, Point(lon, lat))


def east_of(origin, metres):
    lon, lat, _ = GEOD.fwd(origin[0], origin[1], 90, metres)
    return lon, lat


def north_of(origin, metres):
    lon, lat, _ = GEOD.fwd(origin[0], origin[1], 0, metres)
    return lon, lat


@pytest.fixture
def banks():
    return SiteIndex(
        [
            site("bank-300e", *east_of(PARK, 300)),
            site("bank-500n", *north_of(PARK, 500)),
            site("bank-800e", *east_of(PARK, 800)),
            site("bank-1200e", *east_of(PARK, 1200), eligible=["active_duty"]),
            site("hosp-100e", *east_of(PARK, 100), kind="hospital", opening_hours="24/7"),
        ],
    )


def ids(results):
    return [r.feature.id for r in results]


def test_a_resident_at_the_park_gets_three_banks_nearest_first(banks):
    results = nearest_sites(banks, *PARK, k=3, filters=NearestFilters(kinds=frozenset({"bank"})))
    assert ids(results) == ["bank-300e", "bank-500n", "bank-800e"]
    assert [round(r.distance_m, 3) for r in results] == [300.0, 500.0, 800.0]
    assert results[0].bearing_deg == pytest.approx(90, abs=0.01)
    assert results[1].bearing_deg == pytest.approx(0, abs=0.01)
    # 300 m x 1.3 / 75 m per minute
    assert results[0].walk_minutes == pytest.approx(5.2)


def test_filters_that_exclude_the_nearest_still_return_k(banks):
    results = nearest_sites(banks, *PARK, k=1, filters=NearestFilters(eligible="active_duty"))
    assert ids(results) == ["bank-1200e"]


def test_services_must_all_be_offered(banks):
    wanted = NearestFilters(services=frozenset({"priority_queue", "free_admission"}))
    assert nearest_sites(banks, *PARK, k=5, filters=wanted) == []


def test_ties_are_broken_by_id():
    index = SiteIndex(
        [
            site("b", *east_of(PARK, 400)),
            site("a", *north_of(PARK, 400)),
            site("c", *east_of(PARK, 400)),
        ],
    )
    assert ids(nearest_sites(index, *PARK, k=3)) == ["a", "b", "c"]


def test_a_site_exactly_at_the_point_is_zero_metres_away(banks):
    results = nearest_sites(
        banks, *east_of(PARK, 300), k=1, filters=NearestFilters(kinds=frozenset({"bank"}))
    )
    assert ids(results) == ["bank-300e"]
    assert results[0].distance_m == pytest.approx(0, abs=1e-6)


def test_max_distance_with_no_hit_is_an_empty_answer(banks):
    assert nearest_sites(banks, *PARK, k=3, filters=NearestFilters(max_distance=50)) == []
    within = nearest_sites(banks, *PARK, k=10, filters=NearestFilters(max_distance=500))
    assert ids(within) == ["hosp-100e", "bank-300e", "bank-500n"]


def test_a_point_far_outside_the_district_still_gets_the_nearest(banks):
    beijing = (116.404, 39.915)
    results = nearest_sites(banks, *beijing, k=2)
    assert len(results) == 2
    expected = sorted(
        (GEOD.inv(*beijing, f.geometry.x, f.geometry.y)[2], f.id) for f in banks.features
    )[:2]
    assert [(round(r.distance_m, 3), r.feature.id) for r in results] == [
        (round(d, 3), i) for d, i in expected
    ]


def test_open_at_uses_the_opening_hours(banks):
    monday = nearest_sites(banks, *PARK, k=2, filters=NearestFilters(open_at=MONDAY_10AM))
    assert ids(monday) == ["hosp-100e", "bank-300e"]
    sunday = nearest_sites(banks, *PARK, k=2, filters=NearestFilters(open_at=SUNDAY_10AM))
    assert ids(sunday) == ["hosp-100e"]  # only the 24/7 hospital is open on Sunday
    states = nearest_sites(banks, *PARK, k=2, now=SUNDAY_10AM)
    assert [r.open_state for r in states] == [OpenState.open, OpenState.closed]


def test_unknown_hours_are_reported_and_left_out_when_open_is_asked():
    index = SiteIndex([site("no-hours", *PARK, opening_hours=None)])
    assert nearest_sites(index, *PARK, k=1)[0].open_state == OpenState.unknown
    assert nearest_sites(index, *PARK, k=1, filters=NearestFilters(open_at=MONDAY_10AM)) == []


def test_status_defaults_to_open_only():
    index = SiteIndex([site("planned", *PARK, status="planned")])
    assert nearest_sites(index, *PARK, k=1) == []
    planned = NearestFilters(statuses=frozenset({"planned"}))
    assert ids(nearest_sites(index, *PARK, k=1, filters=planned)) == ["planned"]


def test_an_empty_layer_answers_nothing():
    assert nearest_sites(SiteIndex([]), *PARK, k=3) == []


def test_navigation_links_carry_each_apps_coordinates(banks):
    feature = banks.features[0]
    links = navigation_links(feature)
    assert "coordinate=gaode" in links["amap"]
    assert "coord_type=bd09ll" in links["baidu"]
    # Amap wants GCJ-02: about 0.006 degrees east of the WGS-84 position
    amap_lon = float(links["amap"].split("position=")[1].split(",")[0])
    assert 0.005 < amap_lon - feature.geometry.x < 0.007


# -- agreement with brute force on the shipped data -----------------------------------


@pytest.fixture(scope="module", params=["sorted", "kd-tree"])
def shipped(request, seeded_path, catalog):
    """The shipped sites, indexed both ways: small groups are sorted whole;
    with the threshold at 0 every group goes through a KD-tree."""
    import geo_service.analysis.nearest
    from geo_service.store import open_store

    store = open_store(seeded_path, catalog)
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "kd-tree":
            patch.setattr(geo_service.analysis.nearest, "SMALL_GROUP", 0)
        index = SiteIndexCache(store).get()
    assert all(tree.small == (request.param == "sorted") for tree in index._trees.values())
    yield index
    store.close()


def brute_force(index, lon, lat, k, filters, layers=None):
    rows = []
    for row, feature in enumerate(index.features):
        if layers is not None and feature.layer_id not in layers:
            continue
        if filters.kinds and feature.properties["kind"] not in filters.kinds:
            continue
        if not index.passes(row, filters):
            continue
        distance = GEOD.inv(lon, lat, feature.geometry.x, feature.geometry.y)[2]
        if filters.max_distance is None or distance <= filters.max_distance:
            rows.append((distance, feature.id))
    return sorted(rows)[:k]


FILTER_CASES = [
    NearestFilters(),
    NearestFilters(kinds=frozenset({"bank", "hospital", "partner_pharmacy"})),
    NearestFilters(eligible="martyr_family"),
    NearestFilters(services=frozenset({"priority_queue"})),
    NearestFilters(open_at=SUNDAY_10AM),
    NearestFilters(statuses=frozenset({"open", "planned", "suspended"}), max_distance=3000),
]


@pytest.mark.parametrize("filters", FILTER_CASES)
def test_agrees_with_brute_force_over_random_points(shipped, filters):
    rng = np.random.default_rng(20261129)
    lons = rng.uniform(117.85, 118.30, 400)
    lats = rng.uniform(36.65, 36.98, 400)
    for lon, lat in zip(lons, lats, strict=True):
        k = int(rng.integers(1, 12))
        got = [
            (round(r.distance_m, 6), r.feature.id)
            for r in nearest_sites(shipped, lon, lat, k, filters=filters)
        ]
        expected = [(round(d, 6), i) for d, i in brute_force(shipped, lon, lat, k, filters)]
        assert got == expected, (lon, lat, k)


LAYER_CASES = [
    (["green_channels"], NearestFilters()),
    (["medical", "stations"], NearestFilters()),
    (["green_channels", "medical"], NearestFilters(kinds=frozenset({"bank", "hospital"}))),
    (["stations"], NearestFilters(kinds=frozenset({"support_post"}), eligible="veteran")),
]


@pytest.mark.parametrize(("layers", "filters"), LAYER_CASES)
def test_layer_subsets_agree_with_brute_force(shipped, layers, filters):
    rng = np.random.default_rng(7)
    for lon, lat in zip(
        rng.uniform(117.85, 118.30, 200), rng.uniform(36.65, 36.98, 200), strict=True
    ):
        k = int(rng.integers(1, 8))
        got = [
            (round(r.distance_m, 6), r.feature.id)
            for r in nearest_sites(shipped, lon, lat, k, layers, filters)
        ]
        expected = brute_force(shipped, lon, lat, k, filters, layers)
        assert got == [(round(d, 6), i) for d, i in expected], (lon, lat, k)
        assert {r.feature.layer_id for r in nearest_sites(shipped, lon, lat, k, layers)} <= set(
            layers
        )


def test_trees_of_interleaved_kinds_agree_with_brute_force():
    """Kinds and layers given interleaved, each big enough for a KD-tree (the
    index keeps them as slices of one array): every layer and kind question
    answers as a scan of the features given."""
    rng = np.random.default_rng(21)
    layers, kinds = ["stations", "green_channels"], ["bank", "park", "hospital"]
    count = 3 * (SMALL_GROUP + 40) * len(layers)
    lons, lats = rng.uniform(117.9, 118.2, count), rng.uniform(36.7, 36.9, count)
    features = [
        StoredFeature(
            layers[i % 2],
            f"s{i}",
            {
                "id": f"s{i}",
                "kind": kinds[(i // 2) % 3],
                "status": "open",
                "services": [],
                "eligible": [],
                "opening_hours": None,
            },
            Point(lons[i], lats[i]),
        )
        for i in rng.permutation(count).tolist()
    ]
    index = SiteIndex(features, grouped_layers=())
    for lon, lat in zip(rng.uniform(117.9, 118.2, 60), rng.uniform(36.7, 36.9, 60), strict=True):
        for chosen in (None, ["green_channels"], ["stations"]):
            for wanted in (None, frozenset({"park"}), frozenset({"bank", "hospital"})):
                got = [
                    (round(r.distance_m, 6), r.feature.id)
                    for r in nearest_sites(index, lon, lat, 4, chosen, NearestFilters(kinds=wanted))
                ]
                expected = sorted(
                    (round(GEOD.inv(lon, lat, f.geometry.x, f.geometry.y)[2], 6), f.id)
                    for f in features
                    if (chosen is None or f.layer_id in chosen)
                    and (wanted is None or f.properties["kind"] in wanted)
                )[:4]
                assert got == expected, (lon, lat, chosen, wanted)


def test_one_answer_mixes_layers(shipped):
    mixed = nearest_sites(shipped, *PARK, k=30)
    assert len({r.feature.layer_id for r in mixed}) >= 3
    assert [r.distance_m for r in mixed] == sorted(r.distance_m for r in mixed)


def test_the_cache_rebuilds_when_the_store_changes(store, catalog):
    cache = SiteIndexCache(store)
    before = cache.get()
    assert cache.get() is before  # nothing changed: the same index
    nearest = nearest_sites(before, *PARK, k=1)[0].feature
    moved = catalog.validate_feature(
        nearest.layer_id,
        {
            "type": "Feature",
            "properties": {**nearest.properties, "status": "suspended"},
            "geometry": {"type": "Point", "coordinates": [nearest.geometry.x, nearest.geometry.y]},
        },
    )
    store.write(nearest.layer_id, [moved], actor="test")
    after = cache.get()
    assert after is not before
    assert nearest_sites(after, *PARK, k=1)[0].feature.id != nearest.id


def test_co_located_sites_in_a_large_tree_are_each_found_once(monkeypatch):
    """Sites sharing a position come back from a KD-tree in any order between
    rounds of the search; none may be lost or repeated."""
    rng = np.random.default_rng(11)
    sites = []
    for i, (lon, lat) in enumerate(
        zip(rng.uniform(118.0, 118.1, 400), rng.uniform(36.75, 36.85, 400), strict=True)
    ):
        for copy in range(3):  # three sites at each position
            sites.append(site(f"s{i:03d}-{copy}", lon, lat, status="open" if copy else "planned"))
    index = SiteIndex(sites)
    assert not index._trees[(None, None)].small
    for lon, lat in zip(rng.uniform(118.0, 118.1, 50), rng.uniform(36.75, 36.85, 50), strict=True):
        for k in (1, 4, 9, 40):
            got = [
                (round(r.distance_m, 6), r.feature.id) for r in nearest_sites(index, lon, lat, k)
            ]
            expected = brute_force(index, lon, lat, k, NearestFilters())
            assert got == [(round(d, 6), i) for d, i in expected]
            assert len({i for _, i in got}) == len(got) == k


# -- windows of one institution are one place -----------------------------------------

from geo_service.analysis.nearest import (  # noqa: E402
    WINDOW_GROUP_RADIUS_M,
    DistrictOutline,
    institution_name,
    opening_phrase,
    window_groups,
)


def window(site_id, lon, lat, name, address="某路1号", layer="green_channels", **props):
    feature = site(site_id, lon, lat, kind="hospital", name=name, address=address, **props)
    return StoredFeature(layer, site_id, feature.properties, feature.geometry)


def test_institution_name_is_the_name_before_the_first_space():
    assert institution_name("淄博市中心医院 门诊大厅军人优先窗口") == "淄博市中心医院"
    assert institution_name("淄博市中心医院\u3000住院部窗口") == "淄博市中心医院"  # full-width
    assert institution_name("淄博北站长途客运站") == "淄博北站长途客运站"
    assert institution_name(None) == ""


def test_window_groups_need_the_same_institution_and_either_nearness_or_the_address():
    near = east_of(PARK, WINDOW_GROUP_RADIUS_M - 5)
    far = east_of(PARK, 200)
    features = [
        window("a", *PARK, "中心医院 门诊窗口", address="共青团西路54号"),
        window("b", *near, "中心医院 住院窗口", address="另一个地址"),  # near: same place
        window("c", *far, "中心医院 体检窗口", address="共青团西路 54 号"),  # same address
        # 400 m on, another address: another place (c is 200 m from it)
        window("d", *east_of(PARK, 400), "中心医院 急诊窗口", address="别处"),
        window("e", *near, "中心医院分院 窗口", address="共青团西路54号"),  # other institution
        window("f", *near, "淄博北站长途客运站 售票", address="x"),  # a shared prefix only
        window("g", *PARK, "淄博北站 售票", address="y"),
        window("h", *PARK, "中心医院 药房", layer="medical"),  # not a layer of windows
    ]
    groups = window_groups(features)
    assert groups == [0, 0, 0, 3, 4, 5, 6, 7]


def test_a_hospital_with_two_windows_fills_one_of_the_places():
    index = SiteIndex(
        [
            window("hosp-a", *east_of(PARK, 100), "中心医院 门诊窗口"),
            window("hosp-b", *east_of(PARK, 110), "中心医院 住院窗口", opening_hours="24/7"),
            window("other", *north_of(PARK, 400), "第七医院 窗口", address="别处"),
        ]
    )
    places = nearest_sites(index, *PARK, k=2, now=SUNDAY_10AM)
    assert ids(places) == ["hosp-a", "other"]
    assert ids(places[0].windows) == ["hosp-a", "hosp-b"]
    assert [round(w.distance_m) for w in places[0].windows] == [100, 110]
    assert [w.open_state for w in places[0].windows] == [OpenState.closed, OpenState.open]
    assert places[1].windows is None
    ungrouped = nearest_sites(index, *PARK, k=2, group_windows=False)
    assert ids(ungrouped) == ["hosp-a", "hosp-b"]
    # Open on Sunday: only the 24/7 window answers for the hospital, alone in it.
    sunday = nearest_sites(index, *PARK, k=2, filters=NearestFilters(open_at=SUNDAY_10AM))
    assert ids(sunday) == ["hosp-b"] and ids(sunday[0].windows) == ["hosp-b"]


def test_grouped_places_agree_with_brute_force():
    """Three windows of one institution at each of 400 positions (one of them
    planned): the k nearest places are the first k institutions in the sorted
    list of passing windows, through a KD-tree."""
    rng = np.random.default_rng(12)
    sites = []
    for i, (lon, lat) in enumerate(
        zip(rng.uniform(118.0, 118.1, 400), rng.uniform(36.75, 36.85, 400), strict=True)
    ):
        for copy in range(3):
            wlon, wlat = east_of((lon, lat), copy * 8.0)
            sites.append(
                window(
                    f"s{i:03d}-{copy}",
                    wlon,
                    wlat,
                    f"机构{i} 窗口{copy}",
                    address=f"路{i}号",
                    status="planned" if copy == 0 else "open",
                )
            )
    index = SiteIndex(sites)
    assert not index._trees[(None, None)].small
    for lon, lat in zip(rng.uniform(118.0, 118.1, 40), rng.uniform(36.75, 36.85, 40), strict=True):
        for k in (1, 3, 10):
            windows = brute_force(index, lon, lat, 10 * k, NearestFilters())
            expected, seen = [], set()
            for distance, site_id in windows:
                if site_id[:4] not in seen:
                    seen.add(site_id[:4])
                    expected.append((round(distance, 6), site_id))
            got = nearest_sites(index, lon, lat, k)
            assert [(round(r.distance_m, 6), r.feature.id) for r in got] == expected[:k]
            for place in got:  # the planned window is filtered out of every place
                assert [w.feature.id[-1] for w in place.windows] in (["1", "2"], ["2", "1"])


def test_shipped_stations_sharing_a_name_prefix_stay_two_places(shipped):
    """淄博北站 (railway) and 淄博北站长途客运站 (coach station) share a prefix
    but are two institutions ~230 m apart: both answer."""
    north = (118.021, 36.8947)
    places = nearest_sites(shipped, *north, k=2, layers=["green_channels"])
    assert set(ids(places)) == {"gc-rail-zibo-north", "gc-bus-zibo-north-coach"}
    assert all(place.windows is None for place in places)


# -- outside the district, next opening ----------------------------------------------


def test_outside_the_district_the_distance_to_its_boundary(shipped):
    district = shipped.district
    assert district is not None and district.contains(*PARK)
    beijing = (116.404, 39.915)
    assert not district.contains(*beijing)
    # Brute force: the nearest of the boundary's vertices, densified to ~10 m.
    boundary = district.geometry.boundary.segmentize(0.0001)
    coords = np.array([c for line in getattr(boundary, "geoms", [boundary]) for c in line.coords])
    _, _, metres = GEOD.inv(
        np.full(len(coords), beijing[0]),
        np.full(len(coords), beijing[1]),
        coords[:, 0],
        coords[:, 1],
    )
    assert district.distance_to_boundary_m(*beijing) == pytest.approx(metres.min(), abs=15)
    # Near the antipode the projection degenerates: still a true boundary distance.
    antipode = (-61.9, -36.8)
    farthest_site = min(
        GEOD.inv(*antipode, f.geometry.x, f.geometry.y)[2] for f in shipped.features
    )
    assert farthest_site - 40_000 < district.distance_to_boundary_m(*antipode) <= farthest_site
    just_east = east_of((118.201761, 36.857821), 500)  # 500 m east of an eastern vertex
    assert not district.contains(*just_east)
    assert 100 < district.distance_to_boundary_m(*just_east) <= 500.01


def test_a_box_district_measures_true_metres():
    outline = DistrictOutline(Point(*PARK).buffer(0.01).envelope)
    outside = east_of((PARK[0] + 0.01, PARK[1]), 1000)
    assert outline.distance_to_boundary_m(*outside) == pytest.approx(1000, abs=0.5)


def test_next_open_and_the_phrase_a_resident_reads():
    index = SiteIndex(
        [
            site("weekdays", *PARK),  # Mo-Fr 09:00-17:00
            site("always", *PARK, opening_hours="24/7"),
            site("never", *PARK, opening_hours="off"),
            site("unknown", *PARK, opening_hours=None),
        ]
    )
    sunday_evening = dt.datetime(2026, 11, 29, 20, 0)
    saturday = dt.datetime(2026, 11, 28, 20, 0)
    monday_9 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=LOCAL_TIME)
    assert index.next_open(0, sunday_evening) == monday_9
    assert index.next_open(0, saturday) == monday_9
    assert index.next_open(1, saturday) == saturday.replace(tzinfo=LOCAL_TIME)
    assert index.next_open(2, saturday) is None
    assert index.next_open(3, saturday) is None
    assert opening_phrase(monday_9, sunday_evening.replace(tzinfo=LOCAL_TIME)) == (
        "明天 09:00 开放",
        "tomorrow 09:00",
    )
    assert opening_phrase(monday_9, saturday.replace(tzinfo=LOCAL_TIME))[0] == "周一 09:00 开放"
    assert opening_phrase(monday_9, monday_9.replace(hour=7))[0] == "今天 09:00 开放"
    later = monday_9 + dt.timedelta(days=9)
    assert opening_phrase(later, monday_9) == ("12月9日 09:00 开放", "2026-12-09 09:00")


def test_hours_known_leaves_out_sites_without_hours():
    index = SiteIndex([site("no-hours", *PARK, opening_hours=None), site("z", *east_of(PARK, 50))])
    assert ids(nearest_sites(index, *PARK, k=1)) == ["no-hours"]
    assert ids(nearest_sites(index, *PARK, k=1, filters=NearestFilters(hours_known=True))) == ["z"]


# -- the grid beside a KD-tree ----------------------------------------------------------


def test_the_grid_finds_what_the_tree_finds_or_leaves_it_to_the_tree(monkeypatch):
    """A large group answers from the cells around the point (``_Grid``)
    only when they prove the answer, else from its KD-tree: scattered sites
    from the tropics to the far north (where a degree of longitude is
    short), a dense cluster (a block too full for the grid), points outside
    the grid and on its edges. The grid's candidates are the tree's, and the
    answers agree with brute force."""
    import geo_service.analysis.nearest as nearest_module

    rng = np.random.default_rng(2026)
    lons = np.concatenate([rng.uniform(100, 130, 2500), rng.uniform(116.40, 116.41, 1500)])
    lats = np.concatenate([rng.uniform(20, 70, 2500), rng.uniform(39.90, 39.91, 1500)])
    features = [
        site(f"s{i:04d}", lon, lat, opening_hours=None)
        for i, (lon, lat) in enumerate(zip(lons.tolist(), lats.tolist(), strict=True))
    ]
    index = SiteIndex(features, grouped_layers=())
    tree = index._trees[(None, None)]
    assert tree._grid is not None
    outcomes = []
    original = nearest_module._Grid.nearest

    def counted(self, *args):
        found = original(self, *args)
        outcomes.append(found is not None)
        return found

    monkeypatch.setattr(nearest_module._Grid, "nearest", counted)
    points = [
        *zip(rng.uniform(99, 131, 100).tolist(), rng.uniform(19, 71, 100).tolist(), strict=True),
        *zip(
            rng.uniform(116.39, 116.42, 30).tolist(),
            rng.uniform(39.89, 39.92, 30).tolist(),
            strict=True,
        ),
        (100.0, 20.0),
        (130.0, 70.0),
        (float(lons.min()), float(lats.max())),
    ]
    for lon, lat in points:
        origin = nearest_module.ecef_point(lon, lat)
        for want in (2, 6, 12):
            chords, _ = tree.nearest(origin, want, np.inf, lon, lat)
            expected, _ = tree._tree.query(origin, k=want)
            assert chords == pytest.approx(expected, abs=1e-6), (lon, lat, want)
    for lon, lat in points:
        for k in (1, 5, 11):
            got = [
                (round(r.distance_m, 6), r.feature.id) for r in nearest_sites(index, lon, lat, k)
            ]
            expected = brute_force(index, lon, lat, k, NearestFilters())
            assert got == [(round(d, 6), i) for d, i in expected], (lon, lat, k)
    assert any(outcomes) and not all(outcomes)  # both ways were taken


def test_the_grid_proves_only_the_true_nearest():
    """Each side of a block bounds the chord to the sites beyond it; a side
    left out lets a nearer site outside pass unseen (one in ~2,000 answers
    here), so many cheap points are checked against the KD-tree."""
    import geo_service.analysis.nearest as nearest_module

    rng = np.random.default_rng(2026)
    lons, lats = rng.uniform(100, 130, 2500), rng.uniform(20, 70, 2500)
    xyz = nearest_module._ecef(lons, lats)
    grid = nearest_module._Grid.of(lons, lats)
    tree = nearest_module._kd_tree(xyz)
    answered = declined = 0
    for lon, lat in zip(rng.uniform(99, 131, 20_000), rng.uniform(19, 71, 20_000), strict=True):
        origin = nearest_module.ecef_point(lon, lat)
        for want in (2, 6, 12):
            found = grid.nearest(xyz, origin, lon, lat, want)
            if found is None:
                declined += 1
                continue
            answered += 1
            expected, _ = tree.query(origin, k=want)
            assert found[0] == pytest.approx(expected, abs=1e-6), (lon, lat, want)
    assert answered > declined > 0


def test_no_grid_for_sites_on_a_line_or_around_the_globe():
    on_a_meridian = [site(f"m{i}", 118.0, 36.0 + i / 1000) for i in range(SMALL_GROUP + 10)]
    around = [site(f"g{i}", -179.0 + i, 36.0 + (i % 7) / 10) for i in range(SMALL_GROUP + 10)]
    for features in (on_a_meridian, around):
        index = SiteIndex(features)
        assert index._trees[(None, None)]._grid is None
        got = [r.feature.id for r in nearest_sites(index, 118.0, 36.05, 3)]
        expected = brute_force(index, 118.0, 36.05, 3, NearestFilters())
        assert got == [i for _, i in expected]


def test_open_states_remembered_per_minute_change_at_the_minute():
    index = SiteIndex([site("a", *PARK)])  # Mo-Fr 09:00-17:00
    closing = dt.datetime(2026, 11, 30, 16, 59, tzinfo=LOCAL_TIME)
    states = [
        nearest_sites(index, *PARK, k=1, now=closing + dt.timedelta(seconds=s))[0].open_state
        for s in (0, 59.999, 60, 61, 0)
    ]
    assert states == ["open", "open", "closed", "closed", "open"]
    opening = dt.datetime(2026, 11, 30, 8, 59, 59, tzinfo=LOCAL_TIME)
    assert nearest_sites(index, *PARK, k=1, now=opening)[0].open_state == "closed"
    assert (
        nearest_sites(index, *PARK, k=1, now=opening.replace(hour=9, second=0))[0].open_state
        == "open"
    )
