"""Bad input gets a 400 (or 404) problem+json that names what was wrong; never a 500."""

from __future__ import annotations

import pytest

BAD_ITEMS_QUERIES = [
    ("bbox", "1,2,3"),
    ("bbox", "a,b,c,d"),
    ("bbox", "118,36,nan,37"),
    ("bbox", "118,36,inf,37"),
    ("bbox", "118.1,36.7,118.0,36.9"),  # west east of east
    ("bbox", "118.0,36.9,118.1,36.7"),  # south north of north
    ("bbox", "-200,36,118,37"),
    ("bbox", "118,-91,118.1,36"),
    ("bbox", ""),
    ("bbox-crs", "mercator"),
    ("limit", "0"),
    ("limit", "10001"),
    ("limit", "-5"),
    ("limit", "ten"),
    ("limit", "1e3"),
    ("offset", "-1"),
    ("offset", "x"),
    ("crs", "epsg:3857"),
    ("kind", "spaceport"),
    ("kind", ""),
    ("status", "closed"),
    ("town_code", "12"),
    ("sample", "maybe"),
    ("services", "teleport"),
    ("f", "xml"),
    ("colour", "red"),  # unknown parameter
]


@pytest.mark.parametrize(("parameter", "value"), BAD_ITEMS_QUERIES)
def test_bad_items_parameter_is_a_400_naming_it(client, parameter, value):
    response = client.get("/collections/stations/items", params={parameter: value})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400
    assert problem["parameter"] == parameter
    assert parameter in problem["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/collections/spaceports",
        "/collections/spaceports/items",
        "/collections/stations/items/no-such-site",
        "/collections/stations/items/%2e%2e%2fetc%2fpasswd",
        "/no/such/path",
    ],
)
def test_unknown_things_are_404_problems(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_unknown_format_on_landing_is_400(client):
    response = client.get("/?f=pdf")
    assert response.status_code == 400
    assert response.json()["parameter"] == "f"


def test_wrong_method_is_a_problem_not_a_crash(client):
    response = client.delete("/collections")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_no_problem_leaks_internals(client):
    for path, params in [("/collections/stations/items", {"bbox": "x"}), ("/collections/nope", {})]:
        text = client.get(path, params=params).text
        assert "Traceback" not in text and "/work/" not in text and ".py" not in text
