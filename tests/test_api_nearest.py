"""GET /nearest through the app and the CLI: the resident's question, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from geo_service.sources.crs import convert, geodesic_distance

PARK = {"lon": "118.042742", "lat": "36.810131"}


def test_nearest_hospital_windows_nearest_first_with_everything_a_resident_needs(client):
    response = client.get(
        "/nearest", params={**PARK, "k": 3, "layers": "green_channels", "kind": "hospital"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["query"]["k"] == 3 and body["query"]["kind"] == ["hospital"]
    assert "detour factor" in body["walking_assumption"]
    distances = [f["properties"]["distance_m"] for f in body["features"]]
    assert len(distances) == 3 and distances == sorted(distances)
    for feature in body["features"]:
        props = feature["properties"]
        assert props["kind"] == "hospital" and props["layer"] == "green_channels"
        lon, lat = feature["geometry"]["coordinates"]
        assert props["distance_m"] == pytest.approx(
            geodesic_distance(float(PARK["lon"]), float(PARK["lat"]), lon, lat), rel=1e-3
        )
        assert set(props["navigation"]) == {"amap", "baidu", "tencent"}
        assert props["open_now"] in (True, False, None)


def test_several_layers_in_one_answer(client):
    body = client.get("/nearest", params={**PARK, "k": 20, "layers": "stations,medical"}).json()
    assert {f["properties"]["layer"] for f in body["features"]} == {"stations", "medical"}


def test_gcj02_applies_to_the_input_point_and_the_output(client):
    gcj_lon, gcj_lat = convert(float(PARK["lon"]), float(PARK["lat"]), "wgs84", "gcj02")
    wgs = client.get("/nearest", params={**PARK, "k": 1}).json()
    gcj = client.get(
        "/nearest", params={"lon": gcj_lon, "lat": gcj_lat, "k": 1, "crs": "gcj02"}
    ).json()
    assert gcj["coordinate_system"] == "gcj02"
    assert gcj["features"][0]["id"] == wgs["features"][0]["id"]
    assert gcj["features"][0]["properties"]["distance_m"] == pytest.approx(
        wgs["features"][0]["properties"]["distance_m"], abs=0.5
    )
    w_lon, w_lat = wgs["features"][0]["geometry"]["coordinates"]
    assert gcj["features"][0]["geometry"]["coordinates"] == pytest.approx(
        list(convert(w_lon, w_lat, "wgs84", "gcj02")), abs=1e-6
    )


def test_eligible_and_services_filters_hold_in_every_result(client):
    body = client.get(
        "/nearest",
        params={**PARK, "k": 10, "eligible": "martyr_family", "services": "priority_queue"},
    ).json()
    assert body["features"]
    for feature in body["features"]:
        assert "martyr_family" in feature["properties"]["eligible"]
        assert "priority_queue" in feature["properties"]["services"]


def test_open_at_sunday_morning_keeps_only_sites_open_then(client):
    body = client.get("/nearest", params={**PARK, "k": 10, "open_at": "2026-11-29T08:00"}).json()
    assert body["features"]
    assert all(f["properties"]["open_now"] is True for f in body["features"])


BAD = [
    ({"lat": "36.8"}, "lon"),
    ({"lon": "118", "lat": "91"}, "lat"),
    ({"lon": "181", "lat": "36"}, "lon"),
    ({"lon": "abc", "lat": "36"}, "lon"),
    ({"lon": "nan", "lat": "36"}, "lon"),
    ({"lon": "118", "lat": "inf"}, "lat"),
    ({"lon": "118", "lat": "36", "k": "0"}, "k"),
    ({"lon": "118", "lat": "36", "k": "101"}, "k"),
    ({"lon": "118", "lat": "36", "k": "2.5"}, "k"),
    ({"lon": "118", "lat": "36", "max_distance": "-1"}, "max_distance"),
    ({"lon": "118", "lat": "36", "max_distance": "1e12"}, "max_distance"),
    ({"lon": "118", "lat": "36", "max_distance": "nan"}, "max_distance"),
    ({"lon": "118", "lat": "36", "layers": "towns"}, "layers"),
    ({"lon": "118", "lat": "36", "layers": "spaceports"}, "layers"),
    ({"lon": "118", "lat": "36", "kind": "spaceport"}, "kind"),
    ({"lon": "118", "lat": "36", "layers": "medical", "kind": "bank"}, "kind"),
    ({"lon": "118", "lat": "36", "services": "teleport"}, "services"),
    ({"lon": "118", "lat": "36", "eligible": "everyone"}, "eligible"),
    ({"lon": "118", "lat": "36", "open_at": "tomorrow"}, "open_at"),
    ({"lon": "118", "lat": "36", "open_now": "perhaps"}, "open_now"),
    ({"lon": "118", "lat": "36", "status": "closed"}, "status"),
    ({"lon": "118", "lat": "36", "crs": "utm"}, "crs"),
    ({"lon": "118", "lat": "36", "radius": "5"}, "radius"),
]


@pytest.mark.parametrize(("params", "parameter"), BAD)
def test_bad_input_is_a_400_naming_the_parameter(client, params, parameter):
    response = client.get("/nearest", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == parameter


def test_cli_prints_a_table_and_json(tmp_path):
    store = tmp_path / "cli.gpkg"
    base = [
        sys.executable,
        "-m",
        "geo_service.cli",
        "nearest",
        "--lon",
        "118.05",
        "--lat",
        "36.80",
        "--layers",
        "green_channels",
        "--kind",
        "bank",
        "-k",
        "3",
        "--store",
        str(store),
    ]
    table = subprocess.run(
        base, capture_output=True, text=True, check=True, env={"COLUMNS": "160", "PATH": ""}
    ).stdout
    assert "银行" in table and "walk" in table
    answer = json.loads(
        subprocess.run([*base, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert [f["properties"]["kind"] for f in answer["features"]] == ["bank"] * 3
    bad = subprocess.run(
        [*base[:-2], "--lat", "99", "--store", str(store)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "lat" in bad.stderr


# -- better answers (issue 18) --------------------------------------------------------

import re  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from geo_service.api import create_app  # noqa: E402
from geo_service.settings import Settings  # noqa: E402


def test_by_default_the_layers_a_resident_means(client):
    # At the Donggao martyr's residence: the memorial is nearest of all, but
    # only answered when memorials are asked for.
    at_memorial = {"lon": "118.118791", "lat": "36.757308", "k": "10"}
    body = client.get("/nearest", params=at_memorial).json()
    assert body["query"]["layers"] == ["stations", "green_channels", "medical"]
    layers = {f["properties"]["layer"] for f in body["features"]}
    assert layers and layers <= {"stations", "green_channels", "medical"}
    asked = client.get("/nearest", params={**at_memorial, "layers": "memorials"}).json()
    assert asked["features"][0]["id"] == "mm-donggao-martyrs-residence"
    assert asked["features"][0]["properties"]["distance_m"] < 1
    assert (
        "memorials" in client.get("/openapi.json").json()["paths"]["/nearest"]["get"]["description"]
    )


def test_inside_the_district_walking_stops_at_five_km(client):
    body = client.get("/nearest", params={**PARK, "k": 29, "layers": "green_channels"}).json()
    assert body["outside_district"] is False and body["district_boundary_m"] is None
    assert body["notes"] == [] and body["walking_limit_m"] == 5000
    walks = [
        (f["properties"]["distance_m"], f["properties"]["walk_minutes"]) for f in body["features"]
    ]
    assert any(d > 5000 for d, _ in walks) and any(d <= 5000 for d, _ in walks)
    for feature in body["features"]:
        props = feature["properties"]
        if props["distance_m"] > 5000:
            assert props["walk_minutes"] is None and "5 km" in props["walk_note"]["en"]
        else:
            assert props["walk_minutes"] == pytest.approx(props["distance_m"] * 1.3 / 75, abs=0.1)
            assert "walk_note" not in props


def test_a_point_outside_the_district_says_so(client):
    body = client.get("/nearest", params={"lon": "116.404", "lat": "39.915", "k": 2}).json()
    assert body["outside_district"] is True
    assert 300_000 < body["district_boundary_m"] < body["features"][0]["properties"]["distance_m"]
    [note] = body["notes"]
    assert note["code"] == "outside_district" and "张店区" in note["zh"] and note["en"]
    for feature in body["features"]:
        assert feature["properties"]["walk_minutes"] is None
        assert "outside" in feature["properties"]["walk_note"]["en"]
    # Just outside: a few hundred metres from the boundary, no walking time either.
    near = client.get("/nearest", params={"lon": "118.207", "lat": "36.8578", "k": 1}).json()
    assert near["outside_district"] is True and 0 < near["district_boundary_m"] < 1000
    assert near["features"][0]["properties"]["walk_minutes"] is None


def test_nothing_open_answers_the_nearest_with_when_they_open(client):
    # Sunday 20:00: every bank's green channel has closed (Sa,Su 09:00-16:00).
    params = {**PARK, "k": 3, "layers": "green_channels", "kind": "bank"}
    body = client.get("/nearest", params={**params, "open_at": "2026-11-29T20:00"}).json()
    assert body["none_open"] is True and body["numberReturned"] == 3
    assert [n["code"] for n in body["notes"]] == ["none_open"]
    plain = client.get("/nearest", params=params).json()
    assert [f["id"] for f in body["features"]] == [f["id"] for f in plain["features"]]
    for feature in body["features"]:
        props = feature["properties"]
        assert props["open_now"] is False
        assert props["opening_hours"] == "Mo-Fr 09:00-17:00; Sa,Su 09:00-16:00"
        assert props["next_open"] == "2026-11-30T09:00+08:00"
        assert props["next_open_text"] == {"zh": "明天 09:00 开放", "en": "tomorrow 09:00"}
    # Saturday night: they open again on Sunday morning.
    saturday = client.get("/nearest", params={**params, "open_at": "2026-11-28T23:00"}).json()
    assert saturday["features"][0]["properties"]["next_open_text"]["zh"] == "明天 09:00 开放"
    # When something is open, the answer is as before.
    open_ = client.get("/nearest", params={**params, "open_at": "2026-11-30T10:00"}).json()
    assert open_["none_open"] is False and open_["features"]
    assert all("next_open" not in f["properties"] for f in open_["features"])


def test_open_now_with_nothing_open_says_none_open_and_when(client):
    # open_now within 1 m of a point where no site stands: nothing is open there.
    body = client.get(
        "/nearest",
        params={
            **PARK,
            "k": 2,
            "open_now": "true",
            "kind": "bank",
            "layers": "green_channels",
            "max_distance": "1",
        },
    ).json()
    assert body["none_open"] is True and body["features"] == []
    body = client.get(
        "/nearest",
        params={**PARK, "k": 1, "open_now": "true", "layers": "green_channels", "kind": "museum"},
    ).json()
    for feature in body["features"]:
        props = feature["properties"]
        if body["none_open"]:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d\+08:00", props["next_open"])
            assert props["next_open_text"]["zh"].endswith("开放")
        else:
            assert props["open_now"] is True


def test_two_windows_of_one_hospital_are_one_place(store, catalog):
    """A second window of 淄博市中心医院, 15 m from the first, written through
    the store: the hospital fills one of five places, with both windows in it."""
    first = next(
        f for f in store.all_features("green_channels") if f.id == "gc-hospital-zibo-central"
    )
    lon, lat = first.geometry.x, first.geometry.y
    from geo_service.sources.crs import GEOD

    w_lon, w_lat, _ = GEOD.fwd(lon, lat, 90, 15)
    second = catalog.validate_feature(
        "green_channels",
        {
            "type": "Feature",
            "properties": {
                **first.properties,
                "id": "gc-hospital-zibo-central-inpatient",
                "name": "淄博市中心医院 住院部军人优先窗口",
                "window": "住院部军人优先窗口",
                "opening_hours": "Mo-Fr 08:00-12:00",
            },
            "geometry": {"type": "Point", "coordinates": [w_lon, w_lat]},
        },
    )
    store.write("green_channels", [second], actor="test")
    app = create_app(Settings(store=str(store.location)))
    with TestClient(app) as http:
        body = http.get(
            "/nearest",
            params={"lon": lon, "lat": lat, "k": 5, "layers": "green_channels", "kind": "hospital"},
        ).json()
        sunday_night = http.get(
            "/nearest",
            params={
                "lon": lon,
                "lat": lat,
                "k": 5,
                "layers": "green_channels",
                "kind": "hospital",
                "open_at": "2026-11-29T03:00",
            },
        ).json()
    found = [f["id"] for f in body["features"]]
    assert len(found) == 5 and len(set(found)) == 5
    assert found[0] == "gc-hospital-zibo-central"
    assert "gc-hospital-zibo-central-inpatient" not in found
    windows = body["features"][0]["properties"]["windows"]
    assert [w["id"] for w in windows] == [
        "gc-hospital-zibo-central",
        "gc-hospital-zibo-central-inpatient",
    ]
    assert windows[1]["window"] == "住院部军人优先窗口"
    assert windows[1]["distance_m"] == pytest.approx(15, abs=0.1)
    assert all(f["properties"]["windows"] is None for f in body["features"][1:])
    assert windows[0]["open_now"] is True
    # At 3 a.m. on Sunday only the 24/7 window is open: it alone is in the place.
    first_open = sunday_night["features"][0]
    assert first_open["id"] == "gc-hospital-zibo-central"
    assert [w["id"] for w in first_open["properties"]["windows"]] == [first_open["id"]]


def test_the_openapi_document_declares_the_new_answer_fields(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    answer = schemas["NearestResult"]["properties"]
    for name in (
        "outside_district",
        "district_boundary_m",
        "none_open",
        "notes",
        "walking_limit_m",
    ):
        assert name in answer
    site = answer["features"]["items"]["properties"]["properties"]["properties"]
    assert "null" in site["walk_minutes"]["type"]  # no walking time far away or outside
    for name in ("walk_note", "windows", "next_open", "next_open_text"):
        assert name in site
