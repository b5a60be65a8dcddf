"""Coordinate systems: published reference pairs, round trips, the Zhangdian offset."""

from __future__ import annotations

import numpy as np
import pytest

from geo_service.errors import InvalidParameter
from geo_service.sources import crs
from geo_service.sources.crs import CoordinateSystem

# Reference pairs published with the open "coordtransform" implementations
# (input 116.404, 39.915 in Beijing), which use the same forward formulas.
REFERENCE = [
    (crs.wgs84_to_gcj02, (116.404, 39.915), (116.41024449916938, 39.91640428150164)),
    (crs.gcj02_to_bd09, (116.404, 39.915), (116.41036949371029, 39.92133699351021)),
]


@pytest.mark.parametrize(("function", "given", "expected"), REFERENCE)
def test_forward_formulas_match_published_pairs(function, given, expected):
    assert function(*given) == pytest.approx(expected, abs=1e-9)


def test_inverses_match_published_pairs_within_half_a_metre():
    # Published one-step inverses are approximations; ours are exact, so compare in metres.
    lon, lat = crs.gcj02_to_wgs84(116.404, 39.915)
    assert crs.geodesic_distance(lon, lat, 116.39775550083061, 39.91359571849836) < 0.5
    lon, lat = crs.bd09_to_gcj02(116.404, 39.915)
    assert crs.geodesic_distance(lon, lat, 116.39762729119315, 39.90865673957631) < 0.5


@pytest.fixture(scope="module")
def shandong_grid():
    lon, lat = np.meshgrid(np.linspace(114.8, 122.7, 60), np.linspace(34.4, 38.4, 40))
    return lon.ravel(), lat.ravel()


@pytest.mark.parametrize("via", [CoordinateSystem.gcj02, CoordinateSystem.bd09])
def test_round_trips_over_shandong_stay_under_half_a_metre(shandong_grid, via):
    lon, lat = shandong_grid
    there = crs.convert(lon, lat, CoordinateSystem.wgs84, via)
    back = crs.convert(*there, via, CoordinateSystem.wgs84)
    error = crs.geodesic_distance(lon, lat, *back)
    assert error.max() < 0.5
    # ...and the conversion really moved the points (this test could otherwise pass vacuously)
    assert crs.geodesic_distance(lon, lat, *there).min() > 100


def test_gcj02_in_zhangdian_lies_about_540_m_east():
    lon, lat = crs.wgs84_to_gcj02(118.05, 36.80)
    azimuth, distance = crs.geodesic_inverse(118.05, 36.80, lon, lat)
    assert 500 < distance < 600
    assert 75 < azimuth < 90  # east, a little north


def test_points_outside_china_pass_through_unchanged():
    assert crs.wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert crs.gcj02_to_wgs84(-74.0, 40.7) == (-74.0, 40.7)


def test_vectorised_and_scalar_agree():
    lons, lats = np.array([118.0, 118.1]), np.array([36.7, 36.9])
    vector = crs.gcj02_to_wgs84(lons, lats)
    for i in range(2):
        assert crs.gcj02_to_wgs84(lons[i], lats[i]) == pytest.approx((vector[0][i], vector[1][i]))


def test_known_point_from_the_raw_research_converts_as_compiled():
    # 红军师师史馆: GCJ-02 118.040405,36.81465; the research notes derived 118.034371,36.814171.
    lon, lat = crs.gcj02_to_wgs84(118.040405, 36.81465)
    assert crs.geodesic_distance(lon, lat, 118.034371, 36.814171) < 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wgs84", CoordinateSystem.wgs84),
        ("GCJ-02", CoordinateSystem.gcj02),
        ("bd09", CoordinateSystem.bd09),
        (None, CoordinateSystem.wgs84),
    ],
)
def test_parse_names(text, expected):
    assert CoordinateSystem.parse(text) is expected


def test_parse_rejects_unknown_names():
    with pytest.raises(InvalidParameter, match="crs"):
        CoordinateSystem.parse("mercator")


def test_metric_crs_is_gauss_kruger_117_in_zibo_and_utm_elsewhere():
    assert crs.metric_crs((117.9, 36.7, 118.2, 36.9)).to_epsg() == 4548
    assert crs.metric_crs((120.0, 36.0, 120.5, 36.5)).to_epsg() == 32651


@pytest.mark.parametrize("target", [CoordinateSystem.gcj02, CoordinateSystem.bd09])
def test_empty_arrays_convert_to_empty_arrays(target):
    empty = np.array([], dtype="float64")
    for source, dest in ((CoordinateSystem.wgs84, target), (target, CoordinateSystem.wgs84)):
        lon, lat = crs.convert(empty, empty, source, dest)
        assert lon.shape == lat.shape == (0,)


@pytest.mark.parametrize(
    ("text", "system", "lat_first", "uri"),
    [
        (crs.CRS84_URI, CoordinateSystem.wgs84, False, crs.CRS84_URI),
        (crs.EPSG4326_URI, CoordinateSystem.wgs84, True, crs.EPSG4326_URI),
        (None, CoordinateSystem.wgs84, False, crs.CRS84_URI),
        ("wgs84", CoordinateSystem.wgs84, False, crs.CRS84_URI),
        ("gcj02", CoordinateSystem.gcj02, False, None),
        ("BD-09", CoordinateSystem.bd09, False, None),
    ],
)
def test_crs_reference_parses_part_2_uris_and_short_names(text, system, lat_first, uri):
    ref = crs.CrsReference.parse(text)
    assert (ref.system, ref.lat_first, ref.uri) == (system, lat_first, uri)


@pytest.mark.parametrize(
    "text", ["http://www.opengis.net/def/crs/EPSG/0/3857", "urn:ogc:def:crs:EPSG::3857", "x"]
)
def test_crs_reference_rejects_other_crs_naming_the_parameter(text):
    with pytest.raises(InvalidParameter, match=r"bbox-crs.*CRS84"):
        crs.CrsReference.parse(text, "bbox-crs")


def test_epsg_4326_bbox_is_latitude_first():
    from geo_service.services.queries import parse_bbox

    lat_first = crs.CrsReference.parse(crs.EPSG4326_URI)
    assert parse_bbox("36.78,118.0,36.83,118.06", lat_first) == (118.0, 36.78, 118.06, 36.83)
    assert parse_bbox("118.0,36.78,118.06,36.83", crs.CrsReference()) == (
        118.0,
        36.78,
        118.06,
        36.83,
    )
    with pytest.raises(InvalidParameter, match="latitudes"):
        parse_bbox("118.0,36.78,118.06,36.83", lat_first)


@pytest.mark.parametrize("target", ["gcj02", "bd09"])
def test_one_position_at_a_time_equals_the_array_formula(target):
    """A nearest answer converts its sites one at a time through the
    formulas' float path; it must give what the array path gives, in China,
    at its box's edges and outside it."""
    rng = np.random.default_rng(20261205)
    lon = np.concatenate([rng.uniform(60.0, 150.0, 500), [72.004, 137.8347, 118.05]])
    lat = np.concatenate([rng.uniform(0.0, 60.0, 500), [0.8293, 55.8271, 36.8]])
    together = np.column_stack(crs.convert(lon, lat, "wgs84", target))
    one_by_one = [
        crs.convert(float(x), float(y), "wgs84", target) for x, y in zip(lon, lat, strict=True)
    ]
    assert all(isinstance(v, float) for pair in one_by_one for v in pair)
    np.testing.assert_allclose(np.array(one_by_one), together, rtol=0, atol=1e-12)
