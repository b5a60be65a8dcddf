"""OGC API - Features over the shipped data, through the ASGI app."""

from __future__ import annotations

import httpx
import pytest
import shapely
from shapely.geometry import shape

from geo_service.sources.catalog import load_catalog
from geo_service.sources.crs import convert, geodesic_distance

CATALOG = load_catalog()
FACILITY_LAYERS = [layer.id for layer in CATALOG.facility_layers]


def _all(client, layer_id):
    return client.get(f"/collections/{layer_id}/items", params={"limit": 10000}).json()


def _assert_geojson_feature(feature):
    assert feature["type"] == "Feature"
    assert isinstance(feature["id"], str)
    geometry = shape(feature["geometry"])
    assert geometry.is_valid and not geometry.is_empty
    lon, lat = shapely.get_coordinates(geometry).T
    assert ((lon >= -180) & (lon <= 180)).all() and ((lat >= -90) & (lat <= 90)).all()
    assert isinstance(feature["properties"], dict)


def test_landing_is_json_for_api_clients_and_html_for_browsers(client):
    for headers in ({}, {"accept": "*/*"}, {"accept": "application/json"}):
        response = client.get("/", headers=headers)
        assert response.headers["content-type"] == "application/json"
        rels = {link["rel"] for link in response.json()["links"]}
        assert {"self", "service-desc", "conformance", "data"} <= rels
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert (
        client.get("/", headers={"accept": browser}).headers["content-type"].startswith("text/html")
    )
    assert client.get("/?f=html").headers["content-type"].startswith("text/html")
    assert (
        client.get("/?f=json", headers={"accept": browser}).headers["content-type"]
        == "application/json"
    )


def test_conformance_declares_core_and_geojson(client):
    classes = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in classes


def test_collections_lists_the_seven_layers(client):
    body = client.get("/collections").json()
    assert [c["id"] for c in body["collections"]] == list(CATALOG.layers)
    stations = body["collections"][0]
    assert stations["title"] == "服务站点"
    assert stations["numberOfFeatures"] == 25
    west, south, east, north = stations["extent"]["spatial"]["bbox"][0]
    assert 117.9 < west < east < 118.25 and 36.7 < south < north < 36.95


@pytest.mark.parametrize("layer_id", list(CATALOG.layers))
def test_every_layer_answers_valid_geojson_that_passes_the_catalog(client, layer_id):
    response = client.get(f"/collections/{layer_id}/items", params={"limit": 10000})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["type"] == "FeatureCollection"
    shipped = 0 if CATALOG.layer(layer_id).is_context else 1  # the office supplies context
    assert body["numberReturned"] == len(body["features"]) == body["numberMatched"] >= shipped
    for feature in body["features"]:
        _assert_geojson_feature(feature)
        CATALOG.validate_feature(layer_id, feature)


def test_bbox_returns_exactly_the_features_inside(client):
    box = (118.03, 36.79, 118.07, 36.82)
    everything = _all(client, "green_channels")["features"]
    expected = sorted(
        f["id"] for f in everything if shapely.box(*box).intersects(shape(f["geometry"]))
    )
    body = client.get(
        "/collections/green_channels/items", params={"bbox": ",".join(map(str, box))}
    ).json()
    assert sorted(f["id"] for f in body["features"]) == expected
    assert body["numberMatched"] == len(expected) > 0


def _filter_cases():
    for layer in CATALOG.facility_layers:
        kinds = list(layer.kinds)
        yield layer.id, {"kind": kinds[0]}, "kind", {kinds[0]}
        yield layer.id, {"kind": ",".join(kinds[:2])}, "kind", set(kinds[:2])
        yield layer.id, {"status": "open"}, "status", {"open"}
        yield layer.id, {"town_code": "370303009"}, "town_code", {"370303009"}


@pytest.mark.parametrize(("layer_id", "params", "key", "accepted"), list(_filter_cases()))
def test_property_filters_return_exactly_the_matching_features(
    client, layer_id, params, key, accepted
):
    everything = _all(client, layer_id)["features"]
    expected = sorted(f["id"] for f in everything if f["properties"][key] in accepted)
    body = client.get(f"/collections/{layer_id}/items", params={**params, "limit": 10000}).json()
    assert sorted(f["id"] for f in body["features"]) == expected
    assert body["numberMatched"] == len(expected)


def test_status_filter_finds_the_planned_sites(client):
    planned = client.get("/collections/stations/items", params={"status": "planned"}).json()
    assert [f["properties"]["status"] for f in planned["features"]] == ["planned"]


def test_filters_combine_with_bbox(client):
    body = client.get(
        "/collections/medical/items",
        params={"kind": "partner_pharmacy", "bbox": "117.9,36.7,118.05,36.95"},
    ).json()
    assert body["features"]
    for feature in body["features"]:
        assert feature["properties"]["kind"] == "partner_pharmacy"
        assert feature["geometry"]["coordinates"][0] <= 118.05


def test_paging_links_walk_every_feature_once(client):
    seen = []
    url = "/collections/green_channels/items?limit=10"
    while url:
        body = client.get(url).json()
        seen += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert len(seen) == len(set(seen)) == 29
    page2 = client.get("/collections/green_channels/items?limit=10&offset=10").json()
    assert any(link["rel"] == "prev" for link in page2["links"])


def test_crs_gcj02_shifts_output_coordinates(client):
    wgs = client.get("/collections/stations/items/st-post-01").json()
    gcj = client.get("/collections/stations/items/st-post-01?crs=gcj02").json()
    assert gcj["coordinate_system"] == "gcj02"
    lon, lat = wgs["geometry"]["coordinates"]
    expected = convert(lon, lat, "wgs84", "gcj02")
    assert gcj["geometry"]["coordinates"] == pytest.approx(list(expected), abs=1e-6)
    assert 500 < geodesic_distance(lon, lat, *gcj["geometry"]["coordinates"]) < 600
    bd = client.get("/collections/stations/items", params={"crs": "bd09", "limit": 1}).json()
    assert bd["coordinate_system"] == "bd09"


def test_single_feature_has_etag_and_links(client):
    response = client.get("/collections/towns/items/370303001")
    assert response.status_code == 200
    assert response.headers["etag"].startswith('"')
    assert response.json()["properties"]["name"] == "车站街道"


def test_items_html_shows_the_sample_notice(client):
    response = client.get("/collections/medical/items?f=html")
    assert "示例数据" in response.text
    assert "拥军药店" in response.text


def test_openapi_describes_every_items_parameter(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/collections/{collectionId}/items"]["get"]
    for parameter in operation["parameters"]:
        assert parameter.get("description"), parameter["name"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"bbox", "limit", "offset", "kind", "town_code", "status", "crs"} <= names


# -- a real server ------------------------------------------------------------------


@pytest.mark.server
def test_a_real_uvicorn_server_serves_the_shipped_data(live_server):
    collections = httpx.get(f"{live_server}/collections", timeout=10).json()["collections"]
    assert len(collections) == 8
    body = httpx.get(
        f"{live_server}/collections/green_channels/items",
        params={"kind": "railway_station"},
        timeout=10,
    )
    assert body.headers["content-type"] == "application/geo+json"
    assert {f["properties"]["kind"] for f in body.json()["features"]} == {"railway_station"}
    missing = httpx.get(f"{live_server}/collections/nope/items", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
