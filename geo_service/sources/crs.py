"""Coordinate systems: WGS-84, GCJ-02 (Amap, Tencent, WeChat) and BD-09 (Baidu); metres.

The service stores and serves WGS-84 (EPSG:4326, lon/lat order). Chinese web
maps use two obfuscated systems derived from it: GCJ-02 adds a smooth,
position-dependent offset (about 540 m east and 55 m north in Zhangdian), and
BD-09 rotates and shifts GCJ-02 again. The forward formulas are the published
ones used by every open implementation; the inverses are solved iteratively
to well under a millimetre, so round trips stay far below the 0.5 m budget.
Points outside China pass through GCJ-02 unchanged, as the convention is.

All functions take scalars or numpy arrays and are vectorised, because the
API converts whole feature collections at once.

Example
-------
>>> lon, lat = wgs84_to_gcj02(118.05, 36.80)
>>> round(float(geodesic_distance(118.05, 36.80, lon, lat)))  # the famous offset
545
>>> wgs84_to_gcj02(2.35, 48.85)  # Paris is outside China: unchanged
(2.35, 48.85)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import InvalidParameter

__all__ = [
    "CHINA_LAT",
    "CHINA_LON",
    "CRS84_URI",
    "EPSG4326_URI",
    "GEOD",
    "OGC_CRS_URIS",
    "CoordinateSystem",
    "CrsReference",
    "bd09_to_gcj02",
    "convert",
    "convert_geometry",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "geodesic_distance",
    "geodesic_inverse",
    "metric_crs",
    "wgs84_to_gcj02",
]

#: The WGS-84 ellipsoid; every distance the service reports is measured on it.
GEOD = pyproj.Geod(ellps="WGS84")

# Krasovsky 1940 ellipsoid, which the GCJ-02 formula is defined on.
_A = 6378245.0
_EE = 0.00669342162296594323
#: The conventional "inside China" rectangle of open GCJ-02 implementations:
#: the offsets apply inside it only.
CHINA_LON = (72.004, 137.8347)
CHINA_LAT = (0.8293, 55.8271)
_BD_PI = np.pi * 3000.0 / 180.0


class CoordinateSystem(StrEnum):
    """Coordinate systems accepted on input and offered on output."""

    wgs84 = "wgs84"
    gcj02 = "gcj02"
    bd09 = "bd09"

    @classmethod
    def parse(cls, value: str | None, parameter: str = "crs") -> CoordinateSystem:
        """Parse a user-supplied name (case-insensitive; EPSG:4326 means WGS-84)."""
        if value is None or value == "":
            return cls.wgs84
        key = value.strip().lower().replace("-", "").replace("_", "")
        aliases = {
            "wgs84": cls.wgs84,
            "epsg:4326": cls.wgs84,
            "4326": cls.wgs84,
            "gcj02": cls.gcj02,
            "amap": cls.gcj02,
            "bd09": cls.bd09,
            "baidu": cls.bd09,
        }
        if key not in aliases:
            raise InvalidParameter(
                parameter, f"unknown coordinate system {value!r}; use wgs84, gcj02 or bd09"
            )
        return aliases[key]


#: WGS-84 with longitude first, as GeoJSON (RFC 7946) orders it.
CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
#: WGS-84 in the EPSG axis order: latitude first (OGC API - Features Part 2).
EPSG4326_URI = "http://www.opengis.net/def/crs/EPSG/0/4326"
#: The CRS URIs the OGC endpoints accept in ``crs`` and ``bbox-crs``.
OGC_CRS_URIS = [CRS84_URI, EPSG4326_URI]


@dataclass(frozen=True)
class CrsReference:
    """A ``crs`` or ``bbox-crs`` of the OGC endpoints: a coordinate system and
    its axis order. OGC API - Features Part 2 names WGS-84 by URI, and the
    EPSG:4326 URI puts latitude first; the service's short names (``wgs84``,
    ``gcj02``, ``bd09``; GCJ-02 and BD-09 have no standard URI) stay
    longitude first.

    >>> CrsReference.parse("http://www.opengis.net/def/crs/EPSG/0/4326").lat_first
    True
    >>> CrsReference.parse("gcj02").uri is None
    True
    """

    system: CoordinateSystem = CoordinateSystem.wgs84
    lat_first: bool = False

    @property
    def uri(self) -> str | None:
        """The URI for ``Content-Crs``; None for GCJ-02 and BD-09, which have none."""
        if self.system != CoordinateSystem.wgs84:
            return None
        return EPSG4326_URI if self.lat_first else CRS84_URI

    @classmethod
    def parse(cls, value: str | None, parameter: str = "crs") -> CrsReference:
        """A CRS URI (exact, as Part 2 spells it) or a short name (``CoordinateSystem.parse``)."""
        if value is not None and value.strip() == EPSG4326_URI:
            return cls(CoordinateSystem.wgs84, lat_first=True)
        if value is not None and value.strip() == CRS84_URI:
            return cls(CoordinateSystem.wgs84)
        if value is not None and value.strip().lower() in {"epsg:4326", "4326"}:
            # Where geometries and boxes are written in it, "EPSG:4326" is
            # ambiguous: the EPSG definition puts latitude first, most web
            # tools write longitude first. Neither guess is safe.
            raise InvalidParameter(
                parameter,
                f"{value.strip()!r} does not say which axis comes first: use {EPSG4326_URI} "
                f"(latitude first) or {CRS84_URI} / wgs84 (longitude first)",
            )
        try:
            return cls(CoordinateSystem.parse(value, parameter))
        except InvalidParameter:
            raise InvalidParameter(
                parameter,
                f"unknown coordinate system {value!r}; use {CRS84_URI}, {EPSG4326_URI} "
                "(latitude first), wgs84, gcj02 or bd09",
            ) from None


def _as_arrays(lon, lat):
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")


def _unwrap(lon, lat, scalar: bool):
    if scalar:
        return float(lon), float(lat)
    return lon, lat


def _inside_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (
        (lon >= CHINA_LON[0])
        & (lon <= CHINA_LON[1])
        & (lat >= CHINA_LAT[0])
        & (lat <= CHINA_LAT[1])
    )


def _gcj_offset(lon, lat, m=np):
    """The GCJ-02 offset (degrees) to add to a WGS-84 position: arrays with
    ``m=np``, or finite floats with ``m=math`` (one position at a time, as a
    nearest answer asks, numpy's per-call cost is most of the work)."""
    x = lon - 105.0
    y = lat - 35.0
    pi = m.pi
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * m.sqrt(abs(x))
    d_lat += (20.0 * m.sin(6.0 * x * pi) + 20.0 * m.sin(2.0 * x * pi)) * 2.0 / 3.0
    d_lat += (20.0 * m.sin(y * pi) + 40.0 * m.sin(y / 3.0 * pi)) * 2.0 / 3.0
    d_lat += (160.0 * m.sin(y / 12.0 * pi) + 320.0 * m.sin(y * pi / 30.0)) * 2.0 / 3.0
    d_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * m.sqrt(abs(x))
    d_lon += (20.0 * m.sin(6.0 * x * pi) + 20.0 * m.sin(2.0 * x * pi)) * 2.0 / 3.0
    d_lon += (20.0 * m.sin(x * pi) + 40.0 * m.sin(x / 3.0 * pi)) * 2.0 / 3.0
    d_lon += (150.0 * m.sin(x / 12.0 * pi) + 300.0 * m.sin(x / 30.0 * pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * pi
    magic = 1.0 - _EE * m.sin(rad_lat) ** 2
    sqrt_magic = m.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * m.cos(rad_lat) * pi)
    if m is math:
        inside = CHINA_LON[0] <= lon <= CHINA_LON[1] and CHINA_LAT[0] <= lat <= CHINA_LAT[1]
        return (d_lon, d_lat) if inside else (0.0, 0.0)
    inside = _inside_china(lon, lat)
    return np.where(inside, d_lon, 0.0), np.where(inside, d_lat, 0.0)


def _finite_floats(lon, lat) -> bool:
    """Two plain finite numbers: the ``math`` path of the formulas applies."""
    return (
        isinstance(lon, float | int)
        and isinstance(lat, float | int)
        and math.isfinite(lon)
        and math.isfinite(lat)
    )


def wgs84_to_gcj02(lon, lat):
    """WGS-84 to GCJ-02 (the published forward formula)."""
    if _finite_floats(lon, lat):
        d_lon, d_lat = _gcj_offset(lon, lat, math)
        return lon + d_lon, lat + d_lat
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    lon, lat = _as_arrays(lon, lat)
    d_lon, d_lat = _gcj_offset(lon, lat)
    return _unwrap(lon + d_lon, lat + d_lat, scalar)


def gcj02_to_wgs84(lon, lat):
    """GCJ-02 to WGS-84 by fixed-point iteration (converges to < 1e-9 degrees)."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    g_lon, g_lat = _as_arrays(lon, lat)
    w_lon, w_lat = g_lon.copy(), g_lat.copy()
    for _ in range(30):
        f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
        e_lon, e_lat = g_lon - f_lon, g_lat - f_lat
        w_lon = w_lon + e_lon
        w_lat = w_lat + e_lat
        # Done when no coordinate moved by 1e-10 degrees (NaN and empty input included).
        if not (np.any(np.abs(e_lon) >= 1e-10) or np.any(np.abs(e_lat) >= 1e-10)):
            break
    return _unwrap(w_lon, w_lat, scalar)


def gcj02_to_bd09(lon, lat):
    """GCJ-02 to BD-09 (Baidu's published forward formula)."""
    if _finite_floats(lon, lat):
        return _bd09_of(float(lon), float(lat), math)
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    x, y = _as_arrays(lon, lat)
    return _unwrap(*_bd09_of(x, y, np), scalar)


def _bd09_of(x, y, m):
    """Baidu's forward formula on arrays (``m=np``) or floats (``m=math``)."""
    z = m.sqrt(x * x + y * y) + 0.00002 * m.sin(y * _BD_PI)
    theta = (np.arctan2 if m is np else math.atan2)(y, x) + 0.000003 * m.cos(x * _BD_PI)
    return z * m.cos(theta) + 0.0065, z * m.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat):
    """BD-09 to GCJ-02: the usual closed-form estimate, refined by iteration."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    b_lon, b_lat = _as_arrays(lon, lat)
    x, y = b_lon - 0.0065, b_lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _BD_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_PI)
    g_lon, g_lat = z * np.cos(theta), z * np.sin(theta)
    for _ in range(10):
        f_lon, f_lat = gcj02_to_bd09(g_lon, g_lat)
        g_lon = g_lon + (b_lon - f_lon)
        g_lat = g_lat + (b_lat - f_lat)
    return _unwrap(g_lon, g_lat, scalar)


def _on_the_globe(lon, lat):
    """WGS-84 as it must be: BD-09's formula, which (unlike GCJ-02) applies
    worldwide, moves a point at a pole or on the antimeridian a few metres
    past it. Latitudes are clamped to the poles, longitudes wrapped."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    lon, lat = _as_arrays(lon, lat)
    lat = np.clip(lat, -90.0, 90.0)
    lon = np.where(np.abs(lon) > 180.0, (lon + 180.0) % 360.0 - 180.0, lon)
    return _unwrap(lon, lat, scalar)


def convert(lon, lat, source: CoordinateSystem | str, target: CoordinateSystem | str):
    """Convert positions between any two of WGS-84, GCJ-02 and BD-09."""
    source, target = CoordinateSystem(source), CoordinateSystem(target)
    if source == target:
        scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
        return _unwrap(*_as_arrays(lon, lat), scalar)
    if source == CoordinateSystem.bd09:
        lon, lat = bd09_to_gcj02(lon, lat)
        source = CoordinateSystem.gcj02
    if source == CoordinateSystem.gcj02 and target != CoordinateSystem.gcj02:
        lon, lat = gcj02_to_wgs84(lon, lat)
        source = CoordinateSystem.wgs84
    if target == CoordinateSystem.wgs84:
        return _on_the_globe(lon, lat)
    if source == CoordinateSystem.wgs84:
        lon, lat = wgs84_to_gcj02(lon, lat)
    if target == CoordinateSystem.bd09:
        lon, lat = gcj02_to_bd09(lon, lat)
    return lon, lat


def convert_geometry(
    geometry: BaseGeometry, source: CoordinateSystem | str, target: CoordinateSystem | str
) -> BaseGeometry:
    """Convert every vertex of a shapely geometry (array or single) between systems."""
    if CoordinateSystem(source) == CoordinateSystem(target):
        return geometry

    def _convert(coords: np.ndarray) -> np.ndarray:
        lon, lat = convert(coords[:, 0], coords[:, 1], source, target)
        return np.column_stack([lon, lat])

    return shapely.transform(geometry, _convert)


def geodesic_inverse(lon1, lat1, lon2, lat2):
    """Forward azimuth (degrees, 0..360 clockwise from north) and distance (metres)."""
    az, _back, dist = GEOD.inv(lon1, lat1, lon2, lat2)
    return np.mod(az, 360.0), dist


def geodesic_distance(lon1, lat1, lon2, lat2):
    """Geodesic distance in metres on the WGS-84 ellipsoid."""
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def metric_crs(bounds: tuple[float, float, float, float]) -> pyproj.CRS:
    """A projected CRS in metres for buffers and areas over WGS-84 ``bounds``.

    Inside the 3-degree Gauss-Kruger zone centred on 117E (which holds all of
    Zibo) this is CGCS2000 / 3-degree GK CM 117E (EPSG:4548), the projection
    Chinese surveying offices use; elsewhere the UTM zone of the centre.
    """
    west, south, east, north = bounds
    if west >= 115.5 and east <= 118.5 and south >= 0 and north <= 84:
        return pyproj.CRS.from_epsg(4548)
    lon, lat = (west + east) / 2.0, (south + north) / 2.0
    zone = int((lon + 180.0) // 6.0) + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
