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
