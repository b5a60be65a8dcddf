"""Nearest-service queries: the true k nearest sites that serve a resident, nearest first.

Pure functions over store snapshots; no web code. Each facility layer is held
as a ``SiteIndex``: positions as earth-centred (ECEF) metres in one KD-tree per
kind, plus the columns the filters read. A query walks the trees in
increasing straight-line (chord) distance and measures candidates on the
WGS-84 ellipsoid. A chord is never longer than the geodesic between the same
two points, so once the k-th best geodesic distance found is shorter than the
chord of every site not yet measured, no unmeasured site can beat it: the
answer is exact, whatever the filters exclude.

Example
-------
>>> from shapely.geometry import Point
>>> from geo_service.store import Store, StoredFeature
>>> def site(i, lon):
...     props = {"id": i, "name": i, "kind": "bank", "status": "open", "services": [],
...              "eligible": ["veteran"], "opening_hours": None}
...     return StoredFeature("green_channels", i, props, Point(lon, 36.8))
>>> index = SiteIndex("green_channels", [site("b", 118.01), site("a", 117.99)], version=1)
>>> [r.feature.id for r in nearest_sites([index], 118.0, 36.8, k=2)]  # a tie: id decides
['a', 'b']
>>> nearest_sites([index], 118.0, 36.8, k=2, filters=NearestFilters(max_distance=100))
[]
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import opening_hours
from scipy.spatial import cKDTree

from geo_service.crs import GEOD, CoordinateSystem, convert
from geo_service.store import Store, StoredFeature

__all__ = [
    "DETOUR_FACTOR",
    "LOCAL_TIME",
    "WALKING_SPEED_KMH",
    "NearestFilters",
    "NearestResult",
    "OpenState",
    "SiteIndex",
    "SiteIndexCache",
    "navigation_links",
    "nearest_sites",
    "walking_assumption",
]

#: Opening hours are evaluated in China Standard Time.
LOCAL_TIME = ZoneInfo("Asia/Shanghai")
#: Straight-line distance times this approximates the walk through a street grid.
DETOUR_FACTOR = 1.3
#: A comfortable pace for older residents (GB 50180-2018 life circles assume ~4-5 km/h).
WALKING_SPEED_KMH = 4.5

_A = 6378137.0
_E2 = 6.69437999014e-3


def walking_assumption() -> str:
    return (
        f"straight-line distance × {DETOUR_FACTOR} detour factor ÷ "
        f"{WALKING_SPEED_KMH} km/h walking speed"
    )


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Earth-centred coordinates (metres) of points on the WGS-84 ellipsoid."""
    lam, phi = np.radians(lon), np.radians(lat)
    n = _A / np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)
    return np.column_stack(
        [
            n * np.cos(phi) * np.cos(lam),
            n * np.cos(phi) * np.sin(lam),
            n * (1.0 - _E2) * np.sin(phi),
        ]
    )


class OpenState(StrEnum):
    open = "open"
    closed = "closed"
    unknown = "unknown"


@dataclass(frozen=True)
class NearestFilters:
    """What a resident asks for. ``services`` must all be offered; ``eligible``
    is one beneficiary type the site must serve; ``open_at`` (aware datetime)
    keeps only sites whose hours say open then (unknown hours are left out)."""

    kinds: frozenset[str] | None = None
    services: frozenset[str] = frozenset()
    eligible: str | None = None
    open_at: dt.datetime | None = None
    statuses: frozenset[str] = frozenset({"open"})
    max_distance: float | None = None


@dataclass(frozen=True)
class NearestResult:
    feature: StoredFeature
    distance_m: float
    bearing_deg: float
    open_state: OpenState
    gcj02: tuple[float, float]
    bd09: tuple[float, float]

    def position(self, crs: CoordinateSystem) -> tuple[float, float]:
        """The site's lon/lat in ``crs`` (converted once, when the index was built)."""
        if crs == CoordinateSystem.gcj02:
            return self.gcj02
        if crs == CoordinateSystem.bd09:
            return self.bd09
        return self.feature.geometry.x, self.feature.geometry.y

    @property
    def walk_minutes(self) -> float:
        return self.distance_m * DETOUR_FACTOR / (WALKING_SPEED_KMH * 1000.0 / 60.0)


@dataclass
class _KindTree:
    tree: cKDTree
    rows: np.ndarray  # index into the SiteIndex columns


@dataclass
class SiteIndex:
    """One facility layer, indexed for nearest queries; rebuilt when its version changes."""

    layer_id: str
    features: Sequence[StoredFeature]
    version: int
    lon: np.ndarray = field(init=False)
    lat: np.ndarray = field(init=False)
    _trees: dict[str, _KindTree] = field(init=False)
    _hours: list[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.features = list(self.features)
        self.lon = np.array([f.geometry.x for f in self.features], dtype="float64")
        self.lat = np.array([f.geometry.y for f in self.features], dtype="float64")
        xyz = _ecef(self.lon, self.lat)
        kinds = np.array([str(f.properties.get("kind")) for f in self.features])
        self._trees = {}
        for kind in sorted(set(kinds.tolist())):
            rows = np.flatnonzero(kinds == kind)
            self._trees[kind] = _KindTree(cKDTree(xyz[rows]), rows)
        # Without a kind filter one tree over the whole layer answers fastest.
        self._layer_tree = _KindTree(cKDTree(xyz), np.arange(len(self.features)))
        self._hours = [None] * len(self.features)
        # Filter columns, so a candidate batch is checked with numpy, not per dict.
        self._status = np.array([str(f.properties.get("status")) for f in self.features])
        self._services = [frozenset(f.properties.get("services") or ()) for f in self.features]
        self._eligible = [frozenset(f.properties.get("eligible") or ()) for f in self.features]
        # Positions in the systems navigation apps expect, converted once per build.
        self.gcj02 = np.column_stack(convert(self.lon, self.lat, "wgs84", "gcj02"))
        self.bd09 = np.column_stack(convert(self.lon, self.lat, "wgs84", "bd09"))

    def __len__(self) -> int:
        return len(self.features)

    @property
    def kinds(self) -> list[str]:
        return list(self._trees)

    def open_state(self, row: int, when: dt.datetime) -> OpenState:
        expression = self.features[row].properties.get("opening_hours")
        if not expression:
            return OpenState.unknown
        parsed = self._hours[row]
        if parsed is None:
            try:
                parsed = opening_hours.OpeningHours(expression)
            except (SyntaxError, ValueError):
                parsed = False
            self._hours[row] = parsed
        if parsed is False:
            return OpenState.unknown
        local = when.astimezone(LOCAL_TIME).replace(tzinfo=None)
        state = parsed.state(local)[0]
        if state == opening_hours.State.OPEN:
            return OpenState.open
        if state == opening_hours.State.CLOSED:
            return OpenState.closed
        return OpenState.unknown

    def _passes(self, row: int, filters: NearestFilters) -> bool:
        if filters.statuses and self._status[row] not in filters.statuses:
            return False
        if filters.services and not filters.services <= self._services[row]:
            return False
        if filters.eligible and filters.eligible not in self._eligible[row]:
            return False
        return not (
            filters.open_at is not None and self.open_state(row, filters.open_at) != OpenState.open
        )

    def _passing(self, rows: np.ndarray, filters: NearestFilters) -> np.ndarray:
        """The rows that pass; the default question (open sites) is one numpy test."""
        plain = not filters.services and filters.eligible is None and filters.open_at is None
        if plain and filters.statuses == frozenset({"open"}):
            return rows[self._status[rows] == "open"]
        return rows[np.array([self._passes(int(row), filters) for row in rows], dtype=bool)]

    def nearest_in_kind(
        self,
        kind: str | None,
        origin: np.ndarray,
        lon: float,
        lat: float,
        k: int,
        filters: NearestFilters,
    ) -> list[tuple[float, str, int, float]]:
        """Exact k nearest passing sites of one kind (None: any kind), as
        (distance, id, row, azimuth)."""
        entry = self._layer_tree if kind is None else self._trees[kind]
        n = len(entry.rows)
        bound = np.inf if filters.max_distance is None else filters.max_distance * (1 + 1e-9)
        best: list[tuple[float, str, int, float]] = []
        fetched = 0
        want = min(n, max(2 * k, 8))
        while fetched < n:
            chords, local = entry.tree.query(origin, k=want, distance_upper_bound=bound)
            chords, local = np.atleast_1d(chords), np.atleast_1d(local)
            valid = np.isfinite(chords)
            chords, local = chords[valid][fetched:], local[valid][fetched:]
            if len(local) == 0:
                break
            sel = self._passing(entry.rows[local], filters)
            if len(sel):
                az, _back, dist = GEOD.inv(
                    np.full(len(sel), lon), np.full(len(sel), lat), self.lon[sel], self.lat[sel]
                )
                for row, d, a in zip(sel, np.atleast_1d(dist), np.atleast_1d(az), strict=True):
                    if filters.max_distance is None or d <= filters.max_distance:
                        best.append((float(d), self.features[row].id, int(row), float(a)))
                best = sorted(best)[:k]
            fetched += len(local)
            exhausted = fetched >= n or valid.sum() < want
            # Unmeasured sites lie at least the last chord away; geodesic >= chord.
            if exhausted or (len(best) == k and best[-1][0] < chords[-1]):
                break
            want = min(n, want * 4)
        return best


def nearest_sites(
    indexes: Iterable[SiteIndex],
    lon: float,
    lat: float,
    k: int = 5,
    filters: NearestFilters | None = None,
    now: dt.datetime | None = None,
) -> list[NearestResult]:
    """The ``k`` nearest sites over ``indexes`` that pass ``filters``, nearest
    first, ties broken by id. ``now`` (aware) is the time the open-now state
    of each result is reported for (default: the current time)."""
    filters = filters or NearestFilters()
    origin = _ecef(np.array([lon]), np.array([lat]))[0]
    candidates: list[tuple[float, str, SiteIndex, int, float]] = []
    for index in indexes:
        kinds: list[str | None] = (
            [None]
            if filters.kinds is None
            else [kind for kind in index.kinds if kind in filters.kinds]
        )
        if not len(index):
            continue
        for kind in kinds:
            for distance, site_id, row, azimuth in index.nearest_in_kind(
                kind, origin, lon, lat, k, filters
            ):
                candidates.append((distance, site_id, index, row, azimuth))
    chosen = heapq.nsmallest(k, candidates, key=lambda c: (c[0], c[1]))
    moment = filters.open_at or now or dt.datetime.now(LOCAL_TIME)
    return [
        NearestResult(
            feature=index.features[row],
            distance_m=distance,
            bearing_deg=float(np.mod(azimuth, 360.0)),
            open_state=index.open_state(row, moment),
            gcj02=(float(index.gcj02[row, 0]), float(index.gcj02[row, 1])),
            bd09=(float(index.bd09[row, 0]), float(index.bd09[row, 1])),
        )
        for distance, _id, index, row, azimuth in chosen
    ]


def navigation_links(
    feature: StoredFeature,
    gcj02: tuple[float, float] | None = None,
    bd09: tuple[float, float] | None = None,
) -> dict[str, str]:
    """Links that open each Chinese map app at the site, in the coordinates it
    expects: GCJ-02 for Amap and Tencent, BD-09 for Baidu (pass them when
    already converted)."""
    lon, lat = feature.geometry.x, feature.geometry.y
    name = quote(str(feature.properties.get("name") or feature.id))
    g_lon, g_lat = gcj02 or convert(lon, lat, CoordinateSystem.wgs84, CoordinateSystem.gcj02)
    b_lon, b_lat = bd09 or convert(lon, lat, CoordinateSystem.wgs84, CoordinateSystem.bd09)
    return {
        "amap": (
            f"https://uri.amap.com/marker?position={g_lon:.6f},{g_lat:.6f}&name={name}"
            "&coordinate=gaode&callnative=1"
        ),
        "baidu": (
            f"https://api.map.baidu.com/marker?location={b_lat:.6f},{b_lon:.6f}"
            f"&title={name}&content={name}&output=html&coord_type=bd09ll"
            "&src=zhangdian.geo-service"
        ),
        "tencent": (
            f"https://apis.map.qq.com/uri/v1/marker?marker=coord:{g_lat:.6f},"
            f"{g_lon:.6f};title:{name}&referer=zhangdian-geo-service"
        ),
    }


class SiteIndexCache:
    """A ``SiteIndex`` per facility layer, rebuilt only when the store says the
    layer changed (its version counter moves on any write, from any process)."""

    def __init__(self, store: Store):
        self.store = store
        self._indexes: dict[str, SiteIndex] = {}
        self._lock = threading.Lock()

    def get(self, layer_ids: Iterable[str]) -> list[SiteIndex]:
        result = []
        versions = self.store.layer_versions()
        for layer_id in layer_ids:
            version = versions.get(layer_id, 0)
            index = self._indexes.get(layer_id)
            if index is None or index.version != version:
                with self._lock:
                    index = self._indexes.get(layer_id)
                    if index is None or index.version != version:
                        index = SiteIndex(layer_id, self.store.all_features(layer_id), version)
                        self._indexes[layer_id] = index
            result.append(index)
        return result
