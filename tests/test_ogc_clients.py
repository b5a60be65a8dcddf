"""Real OGC API - Features clients against a real server: GDAL's OAPIF driver
(what QGIS, ogr2ogr and geopandas use) through pyogrio, and OWSLib; and the
Part 2 CRS parameters they send, over HTTP."""

from __future__ import annotations

import httpx
import pytest
from shapely.geometry import shape

from geo_service.sources.catalog import load_catalog
from tests.conftest import missing

CATALOG = load_catalog()
LAYERS = list(CATALOG.layers)
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
PART2 = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs"


@pytest.fixture(scope="module")
def server(seeded_server: str) -> str:
    return seeded_server


@pytest.fixture(scope="module")
def pyogrio():
    try:
        import pyogrio
    except ImportError:
        missing("pyogrio is not installed")
    if "OAPIF" not in pyogrio.list_drivers():
        missing(f"GDAL {pyogrio.__gdal_version_string__} in pyogrio has no OAPIF driver")
    return pyogrio


def _api_features(base: str, layer: str, **params) -> list[dict]:
    response = httpx.get(f"{base}/collections/{layer}/items", params={"limit": 10000, **params})
    assert response.status_code == 200, response.text
    return response.json()["features"]


def test_gdal_lists_every_layer(server, pyogrio):
    layers = pyogrio.list_layers("OAPIF:" + server)
    assert sorted(name for name, _geometry in layers) == sorted(LAYERS)


#: Layers with features as shipped (the office supplies the context layer).
SHIPPED = [layer.id for layer in CATALOG.layers.values() if not layer.is_context]


@pytest.mark.parametrize("layer", SHIPPED)
def test_gdal_reads_every_layer_as_the_api_serves_it(server, pyogrio, layer):
    frame = pyogrio.read_dataframe("OAPIF:" + server, layer=layer)
    api = {f["id"]: shape(f["geometry"]) for f in _api_features(server, layer)}
    assert len(frame) == len(api) > 0
    assert sorted(frame["id"]) == sorted(api)
    assert frame.crs is not None and frame.crs.to_string() == "OGC:CRS84"
    for feature_id, geometry in zip(frame["id"], frame.geometry, strict=True):
        # Same axis order (lon, lat) and the same vertices to 1e-7 degrees.
        assert geometry.equals_exact(api[feature_id], tolerance=1e-7), feature_id


def test_gdal_reads_a_bbox(server, pyogrio):
    box = (118.0, 36.78, 118.06, 36.83)
    frame = pyogrio.read_dataframe("OAPIF:" + server, layer="stations", bbox=box)
    api = _api_features(server, "stations", bbox=",".join(map(str, box)))
    everything = _api_features(server, "stations")
    assert 0 < len(api) < len(everything)
    assert sorted(frame["id"]) == sorted(f["id"] for f in api)


def test_owslib_reads_collections_and_items(server):
    try:
        from owslib.ogcapi.features import Features
    except ImportError:
        missing("OWSLib is not installed")
    client = Features(server)
    ids = [c["id"] for c in client.collections()["collections"]]
    assert sorted(ids) == sorted(LAYERS)
    assert PART2 in client.conformance()["conformsTo"]
    for layer in LAYERS:
        collection = client.collection(layer)
        assert collection["storageCrs"] == CRS84
        assert set(collection["crs"]) >= {CRS84, EPSG4326}
        items = client.collection_items(layer, limit=10000)
        assert sorted(f["id"] for f in items["features"]) == sorted(
            f["id"] for f in _api_features(server, layer)
        )


def test_crs_uris_axis_order_and_content_crs(server):
    plain = _api_features(server, "stations")
    site = plain[0]
    lon, lat = site["geometry"]["coordinates"]
    url = f"{server}/collections/stations/items"
    for crs, expected in [(CRS84, [lon, lat]), (EPSG4326, [lat, lon]), (None, [lon, lat])]:
        params = {"limit": 10000} | ({"crs": crs} if crs else {})
        response = httpx.get(url, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-crs"] == f"<{crs or CRS84}>"
        first = next(f for f in response.json()["features"] if f["id"] == site["id"])
        assert first["geometry"]["coordinates"] == expected
        one = httpx.get(f"{url}/{site['id']}", params={"crs": crs} if crs else {})
        assert one.status_code == 200
        assert one.headers["content-crs"] == f"<{crs or CRS84}>"
        assert one.json()["geometry"]["coordinates"] == expected
    # GCJ-02 has no CRS URI: no Content-Crs, the body says which system it is.
    gcj = httpx.get(url, params={"crs": "gcj02", "limit": 1})
    assert "content-crs" not in gcj.headers and gcj.json()["coordinate_system"] == "gcj02"


def test_bbox_crs_uris_and_epsg_4326_latitude_first(server):
    url = f"{server}/collections/stations/items"
    lonlat = "118.0,36.78,118.06,36.83"
    latlon = "36.78,118.0,36.83,118.06"

    def ids(**params) -> list[str]:
        response = httpx.get(url, params={"limit": 10000, **params})
        assert response.status_code == 200, response.text
        return sorted(f["id"] for f in response.json()["features"])

    expected = ids(bbox=lonlat)
    assert expected
    assert ids(bbox=lonlat, **{"bbox-crs": CRS84}) == expected
    assert ids(bbox=latlon, **{"bbox-crs": EPSG4326}) == expected
    # Read lon-first, the lat-first box is out of range: a 400, never a silent miss.
    assert httpx.get(url, params={"bbox": latlon}).status_code == 400


@pytest.mark.parametrize("parameter", ["crs", "bbox-crs"])
@pytest.mark.parametrize(
    "value",
    [
        "http://www.opengis.net/def/crs/EPSG/0/3857",
        "http://www.opengis.net/def/crs/OGC/1.3/CRS83",
        "EPSG:3857",
        "mercator",
    ],
)
def test_unknown_crs_is_a_400_naming_the_parameter(server, parameter, value):
    params = {parameter: value}
    if parameter == "bbox-crs":
        params["bbox"] = "118.0,36.78,118.06,36.83"
    response = httpx.get(f"{server}/collections/stations/items", params=params)
    assert response.status_code == 400
    problem = response.json()
    assert parameter in str(problem) and "CRS84" in str(problem)


# -- Part 3: a CQL2 filter through the clients -------------------------------------------

CQL2_TEXT = "kind IN ('bank', 'hospital') AND name LIKE '%淄博%'"


def test_gdal_sends_an_attribute_filter_to_the_server_as_cql2(server, pyogrio, capfd):
    """GDAL turns an OGR ``where`` into a CQL text filter when the service
    offers one, so the server does the filtering: the debug log shows the
    request, and the answer is what the API's own filter gives."""
    pyogrio.set_gdal_config_options({"CPL_DEBUG": "ON"})
    try:
        frame = pyogrio.read_dataframe(
            "OAPIF:" + server,
            layer="green_channels",
            where="kind IN ('bank', 'hospital') AND name LIKE '%淄博%'",
        )
    finally:
        pyogrio.set_gdal_config_options({"CPL_DEBUG": None})
    log = capfd.readouterr().err
    assert "filter=" in log and "filter-lang=cql-text" in log
    api = _api_features(server, "green_channels", filter=CQL2_TEXT)
    everything = _api_features(server, "green_channels")
    assert 0 < len(api) < len(everything)
    assert sorted(frame["id"]) == sorted(f["id"] for f in api)


def test_owslib_reads_queryables_and_filters_in_both_encodings(server):
    try:
        from owslib.ogcapi.features import Features
    except ImportError:
        missing("OWSLib is not installed")
    client = Features(server)
    queryables = client.collection_queryables("green_channels")
    assert {"kind", "name", "eligible", "geometry"} <= set(queryables["properties"])
    expected = sorted(f["id"] for f in _api_features(server, "green_channels", filter=CQL2_TEXT))
    assert expected
    as_text = client.collection_items(
        "green_channels", limit=10000, filter=CQL2_TEXT, **{"filter-lang": "cql2-text"}
    )
    assert sorted(f["id"] for f in as_text["features"]) == expected
    as_json = client.collection_items(
        "green_channels",
        limit=10000,
        filter=(
            '{"op": "and", "args": [{"op": "in", "args": [{"property": "kind"}, '
            '["bank", "hospital"]]}, {"op": "like", "args": [{"property": "name"}, "%淄博%"]}]}'
        ),
        **{"filter-lang": "cql2-json"},
    )
    assert sorted(f["id"] for f in as_json["features"]) == expected


@pytest.mark.parametrize("parameter", ["crs", "bbox-crs", "filter-crs"])
@pytest.mark.parametrize("value", ["EPSG:4326", "epsg:4326", "4326"])
def test_the_axis_ambiguous_epsg_4326_name_is_refused_with_both_choices(server, parameter, value):
    params = {parameter: value, "bbox": "118.0,36.78,118.06,36.83"}
    if parameter == "filter-crs":
        params = {parameter: value, "filter": "S_INTERSECTS(geometry, POINT(118.05 36.81))"}
    response = httpx.get(f"{server}/collections/stations/items", params=params)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert EPSG4326 in detail and CRS84 in detail and "latitude first" in detail
