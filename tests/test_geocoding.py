"""The offline geocoder: gazetteer matches, house numbers on roads, reverse
geocoding, the HTTP and CLI faces, nearest by address, and import by address."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest
from shapely.geometry import Point

from geo_service.runtime import GeocoderCache
from geo_service.services.importing import plan_import
from geo_service.sources.crs import GEOD, CoordinateSystem, convert
from geo_service.sources.geocoding import Geocoder, load_gazetteer
from geo_service.sources.importing import RowStatus
from tests.conftest import ROOT


@pytest.fixture
def geocoder(store, catalog):
    return GeocoderCache(store, catalog).get()


def gazetteer_place(catalog, name):
    places, _ = load_gazetteer(catalog.directory / "gazetteer.csv")
    return next(p for p in places if p.name == name)


def test_a_known_place_is_found_where_the_gazetteer_has_it(geocoder, catalog):
    lake = gazetteer_place(catalog, "小西湖公园")
    best = geocoder.geocode("张店区小西湖公园")[0]
    assert best.level == "place" and best.matched == "小西湖公园"
    assert GEOD.inv(best.lon, best.lat, lake.lon, lake.lat)[2] < 1
    assert best.town_code == "370303002"


def test_a_name_that_starts_with_the_city_is_still_a_name(geocoder):
    best = geocoder.geocode("淄博市中心医院")[0]
    assert best.level == "place" and best.matched == "淄博市中心医院"


def test_a_stored_address_geocodes_to_its_site(geocoder, store, catalog):
    site = next(
        s
        for layer in catalog.facility_layers
        for s in store.all_features(layer.id)
        if s.properties.get("position_quality") in {"surveyed", "address"}
        and s.properties.get("address")
    )
    best = geocoder.geocode(site.properties["address"])[0]
    assert best.level == "address" and best.confidence >= 0.9
    assert GEOD.inv(best.lon, best.lat, site.geometry.x, site.geometry.y)[2] < 1


def test_a_house_number_is_placed_on_its_road(geocoder, catalog):
    _, roads = load_gazetteer(catalog.directory / "gazetteer.csv")
    road = next(r for r in roads if r.name == "王舍路")
    best = geocoder.geocode("张店区王舍路100号")[0]
    assert best.level == "road"
    assert road.line.distance(Point(best.lon, best.lat)) < 1e-6
    west = geocoder.geocode("共青团西路20号")[0]
    east = geocoder.geocode("共青团东路20号")[0]
    assert west.lon < east.lon  # the 西 and 东 halves


def test_an_intersection_is_where_two_roads_cross(geocoder):
    best = geocoder.geocode("北京路与人民路交叉口")[0]
    assert best.level == "intersection"


def test_a_town_alone_gives_its_centre_and_another_district_nothing(geocoder):
    town = geocoder.geocode("沣水镇")
    assert [c.level for c in town] == ["town"] and town[0].town_code == "370303102"
    assert geocoder.geocode("淄川区松龄路1号") == []
    assert geocoder.geocode("火星基地") == []


def test_reverse_names_the_town_and_the_nearest_place(geocoder):
    answer = geocoder.reverse(118.0427, 36.8101)
    assert answer["town"]["name"] == "公园街道"
    assert answer["nearest_place"]["distance_m"] < 500
    assert geocoder.reverse(116.4, 39.9)["town"] is None


def test_the_geocoder_follows_the_store(store, catalog):
    cache = GeocoderCache(store, catalog)
    assert cache.get().geocode("示例新建驿站") == []
    site = store.query("stations", limit=1).features[0]
    from geo_service.sources.catalog import ValidFeature

    props = dict(site.properties, id="st-new-post", name="示例新建驿站")
    store.write("stations", [ValidFeature("st-new-post", props, site.geometry)], actor="test")
    assert cache.get().geocode("示例新建驿站")[0].matched == "示例新建驿站"


def test_the_http_geocoder(client):
    body = client.get("/geocode", params={"q": "小西湖公园", "limit": 3}).json()
    assert body["features"][0]["properties"]["level"] == "place"
    wgs = body["features"][0]["geometry"]["coordinates"]
    gcj = client.get("/geocode", params={"q": "小西湖公园", "crs": "gcj02"}).json()
    expected = convert(*wgs, "wgs84", "gcj02")
    assert gcj["features"][0]["geometry"]["coordinates"] == pytest.approx(list(expected), abs=1e-6)
    reverse = client.get("/reverse", params={"lon": 118.0427, "lat": 36.8101}).json()
    assert reverse["town"]["code"] == "370303002"
    for params, parameter in (
        ({"q": ""}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "公园", "limit": "0"}, "limit"),
        ({"q": "公园", "limit": "²"}, "limit"),  # a digit to str.isdigit, not to int()
        ({"q": "公园", "colour": "red"}, "colour"),
    ):
        problem = client.get("/geocode", params=params)
        assert problem.status_code == 400 and problem.json()["parameter"] == parameter
    for params, parameter in (
        ({"lon": "abc", "lat": "36.8"}, "lon"),
        ({"lon": "118", "lat": "95"}, "lat"),
        ({"lat": "36.8"}, "lon"),
    ):
        problem = client.get("/reverse", params=params)
        assert problem.status_code == 400 and problem.json()["parameter"] == parameter


def test_nearest_by_address(client):
    body = client.get("/nearest", params={"address": "小西湖公园", "k": 3}).json()
    placed = body["geocoded"]
    assert placed["properties"]["matched"] == "小西湖公园"
    lon, lat = placed["geometry"]["coordinates"]
    direct = client.get("/nearest", params={"lon": lon, "lat": lat, "k": 3}).json()
    assert [f["id"] for f in body["features"]] == [f["id"] for f in direct["features"]]
    assert client.get("/nearest", params={"lon": 118, "lat": 36.8, "k": "²"}).status_code == 400
    for params in (
        {"address": "火星基地"},
        {"address": "小西湖公园", "lon": "118", "lat": "36"},
        {"address": "路" * 300},
    ):
        problem = client.get("/nearest", params=params)
        assert problem.status_code == 400 and problem.json()["parameter"] == "address"


def test_the_cli_geocodes_and_answers_nearest_by_address(store):
    run = [sys.executable, "-m", "geo_service.cli"]
    done = subprocess.run(
        [*run, "geocode", "小西湖公园", "--store", store.location],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "place" in done.stdout
    missing = subprocess.run(
        [*run, "geocode", "火星基地", "--store", store.location],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 1
    nearest = subprocess.run(
        [
            *run,
            "nearest",
            "--address",
            "小西湖公园",
            "-k",
            "2",
            "--json",
            "--store",
            store.location,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert nearest.returncode == 0, nearest.stderr
    assert '"geocoded"' in nearest.stdout


def _csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8-sig")
    return path


def test_rows_without_coordinates_are_placed_from_their_address(tmp_path, store, catalog, geocoder):
    path = _csv(
        tmp_path / "no_coords.csv",
        ["名称", "类型", "地址"],
        [
            ["小西湖公园拥军驿站", "拥军服务驿站", "张店区小西湖公园"],
            ["沣水镇某驿站", "拥军服务驿站", "沣水镇"],
        ],
    )
    result = plan_import(path, "stations", catalog, store, geocoder=geocoder, actor="test")
    placed, town_only = result.rows
    assert placed.status == RowStatus.warning and "offline geocoder" in placed.reasons[0]
    feature = result.features[placed.line]
    assert feature.properties["position_quality"] == "approximate"  # a place centre, not an address
    assert town_only.status == RowStatus.error and "only its town" in town_only.reasons[0]


def test_gcj02_declared_as_wgs84_is_suspected(tmp_path, store, catalog, geocoder):
    names = ["小西湖公园", "淄博人民公园", "火炬公园", "新华公园", "张店儿童公园"]
    rows = []
    for number, name in enumerate(names):
        place = gazetteer_place(catalog, name)
        lon, lat = convert(place.lon, place.lat, "wgs84", "gcj02")  # as Amap shows them
        rows.append([f"拥军驿站{number}", "拥军服务驿站", name, f"{lon:.6f}", f"{lat:.6f}"])
    path = _csv(tmp_path / "amap.csv", ["名称", "类型", "地址", "经度", "纬度"], rows)
    as_wgs = plan_import(path, "stations", catalog, store, geocoder=geocoder, actor="test")
    assert any("probably GCJ-02" in note for note in as_wgs.notes), as_wgs.notes
    as_gcj = plan_import(
        path,
        "stations",
        catalog,
        store,
        geocoder=geocoder,
        actor="test",
        crs=CoordinateSystem.gcj02,
    )
    assert not any("probably GCJ-02" in note for note in as_gcj.notes)


def test_the_gazetteer_never_reads_shared_data():
    text = (ROOT / "geo_service" / "sources" / "geocoding.py").read_text(encoding="utf-8")
    assert "shared" not in text
    assert Geocoder  # the module loads without the build script's inputs
