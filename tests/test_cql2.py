"""CQL2 filters (OGC API - Features Part 3) on both stores.

The oracle is ``cql2``'s own evaluator (``Expr.matches``, the reference
implementation's reading of the standard) applied to every feature in
Python: for each filter, both stores must return exactly the features it
matches. Hand-picked filters cover each operator; Hypothesis composes more.
Distances are checked against pyproj's geodesic on the WGS-84 ellipsoid.
Every bad filter is a 400 problem that names the fault, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator

import cql2
import orjson
import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geo_service.api.app import create_app
from geo_service.settings import Settings
from geo_service.sources.catalog import load_catalog
from geo_service.store import Store, open_store
from geo_service.store.filtering import parse_filter
from geo_service.store.seeding import seed_store
from tests.conftest import _new_pg_location, _require_pg
from tests.hostile import REFUSED, STORED

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Iterator[dict[str, Store]]:
    """Both backends seeded with the sample layers, side by side."""
    gpkg = open_store(tmp_path_factory.mktemp("cql2") / "store.gpkg", CATALOG)
    pg = open_store(_new_pg_location(_require_pg()), CATALOG)
    for store in (gpkg, pg):
        seed_store(store, CATALOG)
        _vary(store)
    yield {"geopackage": gpkg, "postgis": pg}
    gpkg.close()
    pg.drop()
    pg.close()


def _vary(store: Store) -> None:
    """The sample layers are uniform in places (every site a sample, no phone
    numbers, one date); vary a few sites so that every operator both keeps
    and drops something. The same edits on both stores."""
    towns = sorted(f.id for f in store.all_features("towns"))
    for layer in ("green_channels", "stations", "medical"):
        for n, site in enumerate(store.all_features(layer)):
            if n % 3:
                continue
            props = dict(site.properties)
            props.update(
                phone="0533-2181234" if n % 2 == 0 else None,
                sample=n % 4 != 0,
                updated_at=f"20{18 + n % 8}-0{1 + n % 9}-1{n % 10}",
                services=["priority_queue"] if n % 5 == 0 else props.get("services", []),
                name=f"ABC Bank {n}" if n % 7 == 0 else props["name"],
                status="planned" if n % 9 == 0 else props["status"],
            )
            _replace(store, layer, site, props)
    for n, town in enumerate(towns[:6]):
        site = store.get("towns", town)
        _replace(store, "towns", site, {**site.properties, "population": 40_000 * (n + 1)})


def _replace(store: Store, layer: str, site, props: dict) -> None:
    feature = {"type": "Feature", "id": site.id, "properties": props,
               "geometry": shapely.geometry.mapping(site.geometry)}  # fmt: skip
    valid = CATALOG.validate_feature(layer, feature)
    store.change(layer, site.id, valid, actor="test", action="update")


def _everything(store: Store, layer: str) -> list[dict]:
    return [f.geojson() for f in store.all_features(layer)]


def _oracle(text: str, features: list[dict], lang: str = "cql2-text") -> list[str]:
    expr = cql2.parse_text(text) if lang == "cql2-text" else cql2.parse_json(text)
    return sorted(f["id"] for f in features if _matches(expr, f))


def _matches(expr, feature: dict) -> bool:
    try:
        return bool(expr.matches(feature))
    except Exception as error:
        # cql2 cannot reduce a comparison with a missing value: "unknown",
        # which a filter (and SQL) treats as not matching.
        if "Could not reduce" not in str(error):
            raise
        return False


def _ids(store: Store, layer: str, text: str, lang: str | None = None) -> list[str]:
    where = parse_filter(text, lang, CATALOG.layer(layer), CATALOG)
    page = store.query(layer, where=where, limit=100_000)
    assert page.number_matched == len(page.features)
    return [f.id for f in page.features]


#: (layer, filter) pairs covering every supported operator.
CASES = [
    ("green_channels", "kind = 'bank'"),
    ("green_channels", "kind <> 'bank' AND status = 'open'"),
    ("green_channels", "kind IN ('bank', 'hospital') OR town_code = '370303002'"),
    ("green_channels", "NOT (kind IN ('bank', 'hospital'))"),
    ("green_channels", "name LIKE '%银行%'"),
    ("green_channels", "name LIKE '中国_业银行%'"),
    ("green_channels", "name NOT LIKE '%医院%'"),
    ("green_channels", "CASEI(name) LIKE CASEI('%ABC%')"),
    ("green_channels", "A_CONTAINS(eligible, ('veteran', 'military_family'))"),
    ("green_channels", "A_OVERLAPS(services, ('free_admission', 'discount'))"),
    (
        "green_channels",
        "A_CONTAINEDBY(services, ('priority_queue', 'dedicated_window', 'discount'))",
    ),
    ("green_channels", "sample = true AND position_quality <> 'surveyed'"),
    ("green_channels", "updated_at >= DATE('2024-01-01')"),
    ("green_channels", "updated_at BETWEEN DATE('2020-01-01') AND DATE('2030-12-31')"),
    ("green_channels", "id > 'gc-hospital' AND id < 'gc-p'"),
    ("green_channels", "name > address"),
    ("green_channels", "S_INTERSECTS(geometry, BBOX(118.0, 36.78, 118.06, 36.83))"),
    (
        "green_channels",
        "S_WITHIN(geometry, POLYGON((118.0 36.78, 118.06 36.78, 118.06 36.83, 118.0 36.78)))",
    ),
    ("green_channels", "S_DISJOINT(geometry, BBOX(118.0, 36.78, 118.06, 36.83))"),
    ("green_channels", "phone IS NULL"),
    ("green_channels", "phone IS NOT NULL AND kind = 'hospital'"),
    ("stations", "services IS NULL OR A_EQUALS(services, ('priority_queue'))"),
    ("stations", "kind = 'support_post' AND NOT (status = 'open')"),
    ("towns", "population > 100000"),
    ("towns", "population BETWEEN 50000 AND 200000 AND approximate = true"),
    ("towns", "S_INTERSECTS(geometry, POINT(118.05 36.81))"),
    ("towns", "S_CONTAINS(geometry, POINT(118.05 36.81))"),
    ("towns", "S_INTERSECTS(geometry, LINESTRING(118.0 36.75, 118.1 36.85))"),
    ("medical", "kind = 'partner_pharmacy' OR phone IS NOT NULL"),
    ("memorials", "name LIKE '%烈士%' OR sample = false"),
    ("education", "TRUE"),
    ("education", "FALSE OR id = 'nothing-has-this-id'"),
]


#: Filters the reference evaluator gets wrong, and the equivalent it asks
#: instead: cql2 0.6 answers False for BETWEEN on dates.
ORACLE_TEXT = {
    "updated_at BETWEEN DATE('2020-01-01') AND DATE('2030-12-31')": (
        "updated_at >= DATE('2020-01-01') AND updated_at <= DATE('2030-12-31')"
    ),
}


@pytest.mark.parametrize(("layer", "text"), CASES)
def test_each_operator_matches_the_reference_evaluator_on_both_stores(stores, layer, text):
    features = _everything(stores["geopackage"], layer)
    expected = _oracle(ORACLE_TEXT.get(text, text), features)
    for name, store in stores.items():
        assert _ids(store, layer, text) == expected, name


def test_the_cases_are_not_trivial(stores):
    """Most hand-picked filters keep some features and drop others, so a
    store that ignored the filter (or matched nothing) would fail above."""
    partial = 0
    for layer, text in CASES:
        features = _everything(stores["geopackage"], layer)
        if 0 < len(_oracle(ORACLE_TEXT.get(text, text), features)) < len(features):
            partial += 1
    assert partial >= len(CASES) - 2  # TRUE and FALSE


def test_cql2_json_gives_what_cql2_text_gives(stores):
    for layer, text in CASES:
        as_json = orjson.dumps(cql2.parse_text(text).to_json()).decode()
        for store in stores.values():
            assert _ids(store, layer, as_json, "cql2-json") == _ids(store, layer, text)


def test_a_quote_in_a_value_is_a_value_not_sql(stores):
    for store in stores.values():
        assert _ids(store, "green_channels", "name = 'x'' OR 1=1 --'") == []
        assert _ids(store, "green_channels", "name LIKE '%'' OR ''1''=''1'") == []
        assert len(_ids(store, "green_channels", "kind = 'bank'")) > 0


def test_like_escapes_and_wildcards_read_literally_when_escaped(stores):
    store = stores["geopackage"]
    site = store.get("green_channels", _ids(store, "green_channels", "kind = 'bank'")[0])
    name = site.properties["name"]
    for store in stores.values():
        assert _ids(store, "green_channels", f"name LIKE '{name}'") == [site.id]
        # "\%" is a literal per cent sign, which no name holds.
        assert _ids(store, "green_channels", f"name LIKE '{name}\\%'") == []
        assert _ids(store, "green_channels", f"name LIKE '{name[:-1]}_'") == [site.id]


# -- distances ------------------------------------------------------------------------

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize("metres", [0, 300, 1000, 2500, 8000])
def test_s_dwithin_is_geodesic_metres_on_both_stores(stores, metres):
    lon, lat = 118.05, 36.81
    features = _everything(stores["geopackage"], "green_channels")
    distances = {f["id"]: GEOD.inv(lon, lat, *f["geometry"]["coordinates"])[2] for f in features}
    # A site within a metre of the radius would test rounding, not the filter.
    assert all(abs(d - metres) > 1 for d in distances.values())
    expected = sorted(i for i, d in distances.items() if d <= metres)
    text = f"S_DWITHIN(geometry, POINT({lon} {lat}), {metres}, 'meters')"
    in_km = f"S_DWITHIN(geometry, POINT({lon} {lat}), {metres / 1000}, 'kilometers')"
    for store in stores.values():
        assert _ids(store, "green_channels", text) == expected
        assert _ids(store, "green_channels", in_km) == expected
    if metres == 2500:
        assert 0 < len(expected) < len(features)


def test_s_dwithin_to_a_town_boundary(stores):
    """A polygon layer: a town is within 500 m of a point when its boundary
    is, and every town containing the point is at distance 0."""
    point = "POINT(118.05 36.81)"
    for store in stores.values():
        inside = _ids(store, "towns", f"S_INTERSECTS(geometry, {point})")
        near = _ids(store, "towns", f"S_DWITHIN(geometry, {point}, 500)")
        assert inside and set(inside) <= set(near)


# -- Hypothesis: composed filters -----------------------------------------------------

LAYER = "green_channels"
_VALUES = CATALOG.values
_KINDS = list(CATALOG.layer(LAYER).kinds)


def _atoms() -> st.SearchStrategy[str]:
    quoted = st.sampled_from
    lists = st.lists(quoted(list(_VALUES["eligible"])), min_size=1, max_size=3, unique=True)
    services = st.lists(quoted(list(_VALUES["services"])), min_size=1, max_size=3, unique=True)

    def array(op, values):
        return f"{op}(eligible, ({', '.join(repr(v) for v in values)}))"

    return st.one_of(
        quoted(_KINDS).map(lambda k: f"kind = '{k}'"),
        st.lists(quoted(_KINDS), min_size=1, max_size=4).map(
            lambda ks: "kind IN (" + ", ".join(f"'{k}'" for k in ks) + ")"
        ),
        quoted(list(_VALUES["status"])).map(lambda s: f"status <> '{s}'"),
        st.booleans().map(lambda b: f"sample = {str(b).lower()}"),
        quoted(list(_VALUES["position_quality"])).map(lambda q: f"position_quality = '{q}'"),
        st.builds(array, quoted(["A_CONTAINS", "A_OVERLAPS", "A_CONTAINEDBY"]), lists),
        services.map(lambda vs: "A_OVERLAPS(services, (" + ", ".join(f"'{v}'" for v in vs) + "))"),
        quoted(["银行", "医院", "站", "中心", "淄博", "张店", "军人"]).map(
            lambda w: f"name LIKE '%{w}%'"
        ),
        st.integers(0, 9).map(lambda d: f"town_code >= '37030300{d}'"),
        st.dates().map(lambda d: f"updated_at < DATE('{d.isoformat()}')"),
        st.tuples(st.floats(117.95, 118.15), st.floats(36.70, 36.90), st.floats(0.01, 0.1)).map(
            lambda t: (
                f"S_INTERSECTS(geometry, BBOX({t[0]:.5f}, {t[1]:.5f}, "
                f"{t[0] + t[2]:.5f}, {t[1] + t[2]:.5f}))"
            )
        ),
    )


def _filters() -> st.SearchStrategy[str]:
    return st.recursive(
        _atoms(),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
                lambda t: f"({t[0]}) {t[1]} ({t[2]})"
            ),
            inner.map(lambda f: f"NOT ({f})"),
        ),
        max_leaves=6,
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=_filters())
def test_composed_filters_agree_with_the_reference_on_both_stores(stores, text):
    features = _everything(stores["geopackage"], LAYER)
    expected = _oracle(text, features)
    for name, store in stores.items():
        assert _ids(store, LAYER, text) == expected, (name, text)


# -- the API: parameters, queryables, problems -------------------------------------------


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def api(request, tmp_path_factory) -> Iterator[TestClient]:
    if request.param == "geopackage":
        location = str(tmp_path_factory.mktemp("cql2-api") / "store.gpkg")
    else:
        location = _new_pg_location(_require_pg())
    app = create_app(Settings(store=location))
    with TestClient(app) as client:
        yield client
    if request.param == "postgis":
        store = open_store(location, CATALOG)
        store.drop()
        store.close()


def _items(api: TestClient, layer: str, **params) -> list[str]:
    response = api.get(f"/collections/{layer}/items", params={"limit": 10000, **params})
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["features"]]


def test_items_filter_combines_with_bbox_and_property_parameters(api):
    box = "118.0,36.78,118.06,36.83"
    text = "A_CONTAINS(eligible, ('veteran'))"
    both = set(_items(api, LAYER, bbox=box)) & set(_items(api, LAYER, filter=text))
    assert _items(api, LAYER, bbox=box, filter=text) == sorted(both)
    banks = _items(api, LAYER, kind="bank", filter="name LIKE '%农业%'")
    assert banks and set(banks) <= set(_items(api, LAYER, kind="bank"))


def test_items_filter_lang_json_and_the_draft_text_name(api):
    text = "kind = 'bank' AND status = 'open'"
    as_json = orjson.dumps(cql2.parse_text(text).to_json()).decode()
    expected = _items(api, LAYER, filter=text)
    assert expected
    assert _items(api, LAYER, filter=as_json, **{"filter-lang": "cql2-json"}) == expected
    assert _items(api, LAYER, filter=text, **{"filter-lang": "cql-text"}) == expected


def test_filter_crs_epsg_4326_reads_latitude_first(api):
    lonlat = "S_INTERSECTS(geometry, BBOX(118.0, 36.78, 118.06, 36.83))"
    latlon = "S_INTERSECTS(geometry, BBOX(36.78, 118.0, 36.83, 118.06))"
    expected = _items(api, LAYER, filter=lonlat)
    assert expected
    epsg = "http://www.opengis.net/def/crs/EPSG/0/4326"
    assert _items(api, LAYER, filter=latlon, **{"filter-crs": epsg}) == expected


def test_next_links_keep_the_filter(api):
    text = "A_CONTAINS(eligible, ('veteran'))"
    everything = _items(api, LAYER, filter=text)
    seen: list[str] = []
    url, params = f"/collections/{LAYER}/items", {"filter": text, "limit": 5}
    while url:
        body = api.get(url, params=params).json()
        seen += [f["id"] for f in body["features"]]
        following = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url, params = (following[0], None) if following else (None, None)
    assert seen == everything and len(everything) > 5


@pytest.mark.parametrize("layer", list(CATALOG.layers))
def test_queryables_name_every_catalog_property_with_its_type(api, layer):
    response = api.get(f"/collections/{layer}/queryables")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    spec = CATALOG.layer(layer)
    assert list(schema["properties"]) == ["geometry", *spec.properties]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
    for name, prop in spec.properties.items():
        described = schema["properties"][name]
        assert prop.zh in described["title"]
        if prop.type == "kind":
            assert described["enum"] == list(spec.kinds)
        if prop.type == "list":
            assert described["type"] == "array"
        # What the schema offers, a filter accepts.
        value = _example(described)
        text = (
            f"A_OVERLAPS({name}, ('{value}'))"
            if described.get("type") == "array"
            else f"{name} = {value}"
        )
        assert api.get(f"/collections/{layer}/items", params={"filter": text}).status_code == 200
    links = api.get(f"/collections/{layer}").json()["links"]
    rel = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
    assert any(link["rel"] == rel and link["href"].endswith("/queryables") for link in links)


def _example(described: dict) -> str:
    if described.get("type") == "array":
        return described["items"]["enum"][0]
    if "enum" in described:
        return f"'{described['enum'][0]}'"
    if described.get("type") == "integer":
        return "1"
    if described.get("type") == "boolean":
        return "true"
    if described.get("format") == "date":
        return "DATE('2024-01-01')"
    return "'370303001'" if "pattern" in described else "'x'"


def test_conformance_declares_part_3_and_cql2(api):
    classes = api.get("/conformance").json()["conformsTo"]
    for suffix in [
        "ogcapi-features-3/1.0/conf/queryables",
        "ogcapi-features-3/1.0/conf/filter",
        "ogcapi-features-3/1.0/conf/features-filter",
        "cql2/1.0/conf/cql2-text",
        "cql2/1.0/conf/cql2-json",
        "cql2/1.0/conf/basic-cql2",
        "cql2/1.0/conf/advanced-comparison-operators",
        "cql2/1.0/conf/basic-spatial-functions",
        "cql2/1.0/conf/array-functions",
    ]:
        assert f"http://www.opengis.net/spec/{suffix}" in classes
    # Not implemented, so not declared.
    for suffix in ["temporal-functions", "arithmetic", "accent-insensitive-comparison"]:
        assert f"http://www.opengis.net/spec/cql2/1.0/conf/{suffix}" not in classes


#: (parameters, words the problem's detail must contain)
BAD = [
    ({"filter": "kind = 'bank' AND"}, ["cql2-text", "column 18"]),
    ({"filter": "colour = 'red'"}, ["'colour'", "not a queryable", "queryables:"]),
    ({"filter": "kind = 'bnak'"}, ["kind is never 'bnak'", "bank"]),
    ({"filter": "town_code = 370303001"}, ["quote the value"]),
    ({"filter": "eligible = 'veteran'"}, ["A_CONTAINS"]),
    ({"filter": "sample > true"}, ["only be compared with = or <>"]),
    ({"filter": "updated_at > DATE('2024-02-30')"}, ["not a date"]),
    ({"filter": "updated_at > 5"}, ["cannot compare"]),
    ({"filter": "T_AFTER(updated_at, DATE('2024-01-01'))"}, ["temporal"]),
    ({"filter": "id + 1 = 2"}, ["arithmetic"]),
    ({"filter": "ACCENTI(name) = ACCENTI('x')"}, ["ACCENTI"]),
    ({"filter": "S_INTERSECTS(geometry, POINT(36.8 118.05))"}, ["longitude first"]),
    ({"filter": "S_DWITHIN(geometry, POINT(118 36), 5, 'parsecs')"}, ["units"]),
    ({"filter": "S_DWITHIN(geometry, POINT(118 36), -5)"}, ["0 or more"]),
    ({"filter": "S_INTERSECTS(kind, POINT(118 36))"}, ["geometry"]),
    ({"filter": "'a' = 'a'"}, ["a property"]),
    ({"filter": "x" * 20_001}, ["longer than"]),
    ({"filter": "NOT (" * 60 + "kind = 'bank'" + ")" * 60}, ["deeper"]),
    ({"filter": "kind = 'bank'", "filter-lang": "sql"}, ["filter-lang", "cql2-json"]),
    ({"filter-lang": "cql2-text"}, ["without a filter"]),
    ({"filter": '{"op": "=", "args": [1]}', "filter-lang": "cql2-json"}, ["2 arguments"]),
    (
        {"filter": '{"op": "between", "args": [{"property": "id"}]}', "filter-lang": "cql2-json"},
        ["3"],
    ),
    ({"filter": "{not json", "filter-lang": "cql2-json"}, ["cql2-json"]),
    (
        {"filter": "kind = 'bank'", "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"},
        ["filter-crs"],
    ),
]


@pytest.mark.parametrize(("params", "words"), BAD)
def test_a_bad_filter_is_a_400_naming_the_fault(api, params, words):
    response = api.get(f"/collections/{LAYER}/items", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])
    assert problem["parameter"] in {"filter", "filter-lang", "filter-crs"}


@pytest.mark.parametrize("text", [text for _what, text in STORED + REFUSED])
def test_hostile_text_in_a_filter_is_a_value_or_a_400(api, text):
    quoted = text.replace("'", "''")
    for filter_text in (f"name = '{quoted}'", text):
        response = api.get(f"/collections/{LAYER}/items", params={"filter": filter_text})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert response.json()["features"] == []
