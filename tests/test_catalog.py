"""The layer catalog and the validator every feature passes through."""

from __future__ import annotations

import copy

import pytest

from geo_service.errors import CatalogError, CollectionNotFound, InvalidFeature
from geo_service.sources.catalog import load_catalog

GOOD = {
    "type": "Feature",
    "id": "gc-test-bank",
    "geometry": {"type": "Point", "coordinates": [118.05, 36.80]},
    "properties": {
        "id": "gc-test-bank",
        "name": "测试银行 军人优先窗口",
        "kind": "bank",
        "address": "张店区测试路1号",
        "town_code": "370303002",
        "phone": "0533-2180000",
        "opening_hours": "Mo-Fr 09:00-17:00",
        "services": ["priority_queue"],
        "eligible": ["veteran", "active_duty"],
        "status": "open",
        "responsible_unit": "测试单位",
        "source": "test fixture",
        "updated_at": "2026-11-29",
        "sample": True,
        "position_quality": "approximate",
        "window": "3号窗口",
    },
}


def with_props(**changes):
    feature = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            feature["properties"].pop(key)
        else:
            feature["properties"][key] = value
    return feature


def test_catalog_lists_the_eight_layers_with_titles_in_both_languages(catalog):
    assert list(catalog.layers) == [
        "stations",
        "green_channels",
        "medical",
        "memorials",
        "education",
        "towns",
        "district",
        "context",  # the office's roads, water and landmarks; empty as shipped
    ]
    for layer in catalog.layers.values():
        assert layer.zh and layer.en and layer.kinds
    assert "window" in catalog.layer("green_channels").properties
    assert "window" not in catalog.layer("stations").properties


def test_a_good_feature_validates_and_is_normalised(catalog):
    valid = catalog.validate_feature("green_channels", GOOD)
    assert valid.id == "gc-test-bank"
    assert valid.properties["services"] == ["priority_queue"]
    assert valid.geometry.x == 118.05


def test_every_bad_field_is_named_at_once(catalog):
    bad = with_props(
        name=...,
        kind="spaceport",
        town_code="12345",
        phone="call me",
        opening_hours="whenever",
        eligible=["aliens"],
        status="gone",
        updated_at="yesterday",
        sample="yes",
    )
    with pytest.raises(InvalidFeature) as caught:
        catalog.validate_feature("green_channels", bad)
    fields = {p.field for p in caught.value.problems}
    assert fields == {
        "name",
        "kind",
        "town_code",
        "phone",
        "opening_hours",
        "eligible",
        "status",
        "updated_at",
        "sample",
    }
    assert "spaceport" in str(caught.value)


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (None, "required"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "must be Point"),
        ({"type": "Point", "coordinates": [200, 36.8]}, "out of range"),
        ({"type": "Point", "coordinates": [118.0, 95]}, "out of range"),
        ({"type": "Point", "coordinates": ["a", "b"]}, "malformed"),
        ({"type": "Point", "coordinates": []}, "empty"),
    ],
)
def test_bad_geometries_are_rejected_with_a_reason(catalog, geometry, message):
    feature = copy.deepcopy(GOOD)
    feature["geometry"] = geometry
    with pytest.raises(InvalidFeature, match=message):
        catalog.validate_feature("green_channels", feature)


def test_town_code_must_be_a_known_town_when_towns_are_given(catalog):
    with pytest.raises(InvalidFeature, match="unknown town code"):
        catalog.validate_feature(
            "green_channels", with_props(town_code="370303999"), town_codes={"370303001"}
        )


def test_extra_columns_are_kept_as_properties(catalog):
    valid = catalog.validate_feature("green_channels", with_props(联系人="王先生", floor=2))
    assert valid.properties["联系人"] == "王先生"
    assert valid.properties["floor"] == 2


def test_list_values_may_come_as_separated_text(catalog):
    valid = catalog.validate_feature(
        "green_channels", with_props(eligible="veteran；military_family")
    )
    assert valid.properties["eligible"] == ["veteran", "military_family"]


def test_unknown_layer_is_a_not_found(catalog):
    with pytest.raises(CollectionNotFound):
        catalog.layer("spaceports")


def test_a_broken_catalog_file_is_a_clear_error(tmp_path):
    (tmp_path / "catalog.toml").write_text("[district\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(tmp_path)
    with pytest.raises(CatalogError, match=r"no catalog\.toml"):
        load_catalog(tmp_path / "missing")
