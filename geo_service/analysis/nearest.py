"""Nearest-service queries: the true k nearest sites that serve a resident, nearest first.

Pure functions over store snapshots; no web code. The facility layers are held
as one ``SiteIndex``: positions as earth-centred (ECEF) metres in KD-trees
(all sites, each layer, each layer's kinds), plus the columns the filters read.
A query walks a tree in increasing straight-line (chord) distance and measures
candidates on the WGS-84 ellipsoid. A chord is never longer than the geodesic
between the same two points, so once the k-th best geodesic distance found is
shorter than the next chord, no unmeasured site can beat it: the answer is
exact, whatever the filters exclude.

Example
-------
>>> from shapely.geometry import Point
>>> from geo_service.store import Store, StoredFeature
>>> def site(i, lon):
...     props = {"id": i, "name": i, "kind": "bank", "status": "open", "services": [],
...              "eligible": ["veteran"], "opening_hours": None}
...     return StoredFeature("green_channels", i, props, Point(lon, 36.8))
>>> index = SiteIndex([site("b", 118.01), site("a", 117.99)])
>>> [r.feature.id for r in nearest_sites(index, 118.0, 36.8, k=2)]  # a tie: id decides
['a', 'b']
>>> nearest_sites(index, 118.0, 36.8, k=2, filters=NearestFilters(max_distance=100))
[]
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import heapq
import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import opening_hours
from scipy.spatial import cKDTree

from geo_service.sources.crs import GEOD, CoordinateSystem, convert
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


def ecef_point(lon: float, lat: float) -> tuple[float, float, float]:
    """``_ecef`` for one point: plain floats, as numpy costs ~30 µs per tiny call."""
    lam, phi = math.radians(lon), math.radians(lat)
    sin_phi, cos_phi = math.sin(phi), math.cos(phi)
    n = _A / math.sqrt(1.0 - _E2 * sin_phi * sin_phi)
    return (
        n * cos_phi * math.cos(lam),
        n * cos_phi * math.sin(lam),
        n * (1.0 - _E2) * sin_phi,
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

    @functools.cached_property
    def open_at_local(self) -> dt.datetime | None:
        """``open_at`` as naive China Standard Time, as the hours are written."""
        if self.open_at is None:
            return None
        return self.open_at.astimezone(LOCAL_TIME).replace(tzinfo=None)


@dataclass(slots=True)  # not frozen: frozen __init__ costs µs per result
class NearestResult:
    feature: StoredFeature
    distance_m: float
    bearing_deg: float
    open_state: OpenState
    index: SiteIndex = field(repr=False, compare=False)
    row: int = field(repr=False, compare=False)

    @property
    def gcj02(self) -> tuple[float, float]:
        """The site's position in GCJ-02 (converted once, when the index was built)."""
        lon, lat = self.index._gcj02[self.row]
        return lon, lat

    @property
    def bd09(self) -> tuple[float, float]:
        lon, lat = self.index._bd09[self.row]
        return lon, lat

    @property
    def navigation(self) -> dict[str, str]:
        """Links opening Amap, Baidu and Tencent maps at the site (built on demand)."""
        return self.index.navigation(self.row)

    def position(self, crs: CoordinateSystem) -> tuple[float, float]:
        """The site's lon/lat in ``crs``."""
        if crs == CoordinateSystem.gcj02:
            return self.gcj02
        if crs == CoordinateSystem.bd09:
            return self.bd09
        return self.feature.geometry.x, self.feature.geometry.y

    @property
    def walk_minutes(self) -> float:
        return self.distance_m * DETOUR_FACTOR / (WALKING_SPEED_KMH * 1000.0 / 60.0)


#: Chords are computed from earth-centred coordinates of ~6.4e6 m, so they
#: carry rounding of a few 1e-9 m; comparisons with geodesics allow this much.
CHORD_MARGIN_M = 1e-6
#: Below this many sites, sorting every chord with numpy beats a KD-tree
#: query, whose fixed cost (~30 µs) is the same for 90 sites or a million.
SMALL_GROUP = 256


class _Tree:
    """The sites of one group (all, a layer, a layer's kind) nearest-first
    from a point: a KD-tree, or a plain sort for small groups."""

    def __init__(self, xyz: np.ndarray, rows: list[int]):
        self.rows = rows  # index into the SiteIndex columns, per position here
        self.n = len(rows)
        self.small = self.n <= SMALL_GROUP
        self._xyz = xyz if self.small else None
        self._tree = None if self.small else cKDTree(xyz)

    def nearest(
        self, origin: tuple[float, float, float], want: int, bound: float
    ) -> tuple[list[float], list[int]]:
        """Chord lengths and positions of the ``want`` sites nearest to
        ``origin`` (all of them for a small group), nearest first; past
        ``bound`` a KD-tree pads with ``inf``, a small group stops."""
        if self._tree is None:
            squared = ((self._xyz - origin) ** 2).sum(axis=1)
            order = np.argsort(squared, kind="stable")
            chords = np.sqrt(squared[order])
            keep = chords <= bound
            return chords[keep].tolist(), order[keep].tolist()
        chords, positions = self._tree.query(origin, k=want, distance_upper_bound=bound)
        if want == 1:
            return [float(chords)], [int(positions)]
        return chords.tolist(), positions.tolist()


#: A tree key: (layer or None for every layer, kind or None for every kind).
_TreeKey = tuple[str | None, str | None]


class SiteIndex:
    """The facility sites of one or more layers, indexed for nearest queries.

    One KD-tree over every site answers the common question (all layers, any
    kind) with a single query; a tree per layer and per (layer, kind) answers
    narrower ones without wading through sites the question excludes. Filter
    columns are plain Python lists: a query touches a handful of rows, where
    numpy's per-call overhead would dominate.
    """

    def __init__(self, features: Iterable[StoredFeature], versions: dict[str, int] | None = None):
        self.features = list(features)
        self.versions = dict(versions or {})
        lon = np.array([f.geometry.x for f in self.features], dtype="float64")
        lat = np.array([f.geometry.y for f in self.features], dtype="float64")
        self._lon, self._lat = lon.tolist(), lat.tolist()
        self._status = [f.properties.get("status") for f in self.features]
        self._services = [frozenset(f.properties.get("services") or ()) for f in self.features]
        self._eligible = [frozenset(f.properties.get("eligible") or ()) for f in self.features]
        self._ids = [f.id for f in self.features]
        self._hours: list[Any] = [None] * len(self.features)
        # Positions in the systems navigation apps expect, converted once per build.
        self._gcj02 = np.column_stack(convert(lon, lat, "wgs84", "gcj02")).tolist()
        self._bd09 = np.column_stack(convert(lon, lat, "wgs84", "bd09")).tolist()
        self._navigation: dict[int, dict[str, str]] = {}
        #: Derived data that consumers (the API's serialized fragments) keep
        #: with this snapshot of the sites; it goes when the index is rebuilt.
        self.memo: dict[Any, Any] = {}

        groups: dict[_TreeKey, list[int]] = defaultdict(list)
        for row, feature in enumerate(self.features):
            kind = str(feature.properties.get("kind"))
            groups[(None, None)].append(row)
            groups[(feature.layer_id, None)].append(row)
            groups[(feature.layer_id, kind)].append(row)
        xyz = _ecef(lon, lat)
        self._trees: dict[_TreeKey, _Tree] = {}
        built: dict[tuple[int, int], _Tree] = {}
        for key, rows in groups.items():
            # Groups are nested or disjoint, so first row and size identify a
            # set: a layer with one kind, or an index of one layer, shares a tree.
            signature = (rows[0], len(rows))
            if signature not in built:
                built[signature] = _Tree(xyz[rows], rows)
            self._trees[key] = built[signature]
        self.layers = sorted({layer for layer, _ in groups if layer is not None})

    def __len__(self) -> int:
        return len(self.features)

    def kinds(self, layer_id: str) -> list[str]:
        return sorted(kind for layer, kind in self._trees if layer == layer_id and kind)

    def open_state(self, row: int, when: dt.datetime) -> OpenState:
        """Open, closed or unknown at ``when`` (aware), by the site's hours."""
        return self._open_state_local(row, when.astimezone(LOCAL_TIME).replace(tzinfo=None))

    def _open_state_local(self, row: int, local: dt.datetime) -> OpenState:
        parsed = self._hours[row]
        if parsed is None:
            expression = self.features[row].properties.get("opening_hours")
            try:
                parsed = opening_hours.OpeningHours(expression) if expression else False
            except (SyntaxError, ValueError):
                parsed = False
            self._hours[row] = parsed
        if parsed is False:
            return OpenState.unknown
        state = parsed.state(local)[0]
        if state == opening_hours.State.OPEN:
            return OpenState.open
        if state == opening_hours.State.CLOSED:
            return OpenState.closed
        return OpenState.unknown

    def passes(self, row: int, filters: NearestFilters) -> bool:
        """Whether a site passes the filters other than layer, kind and distance
        (those are answered by the choice of tree and by the search)."""
        if filters.statuses and self._status[row] not in filters.statuses:
            return False
        if filters.services and not filters.services <= self._services[row]:
            return False
        if filters.eligible and filters.eligible not in self._eligible[row]:
            return False
        return (
            filters.open_at is None
            or self._open_state_local(row, filters.open_at_local) == OpenState.open
        )

    def navigation(self, row: int) -> dict[str, str]:
        links = self._navigation.get(row)
        if links is None:
            links = navigation_links(
                self.features[row], tuple(self._gcj02[row]), tuple(self._bd09[row])
            )
            self._navigation[row] = links
        return links

    def trees_for(self, layers: Iterable[str] | None, kinds: Iterable[str] | None) -> list[_Tree]:
        """The fewest trees holding exactly the sites of ``layers`` × ``kinds``."""
        asked = None if layers is None else set(layers)
        wanted = self.layers if asked is None else [x for x in self.layers if x in asked]
        if kinds is None:
            keys: list[_TreeKey] = (
                [(None, None)] if wanted == self.layers else [(layer, None) for layer in wanted]
            )
        else:
            keys = [(layer, kind) for layer in wanted for kind in sorted(kinds)]
        return [self._trees[key] for key in keys if key in self._trees]

    def search(
        self,
        tree: _Tree,
        origin: tuple[float, float, float],
        lon: float,
        lat: float,
        k: int,
        filters: NearestFilters,
    ) -> list[tuple[float, str, int, float]]:
        """Exact k nearest passing sites in one tree, as (distance, id, row, azimuth).

        Candidates come from the tree in increasing chord length and are
        measured on the ellipsoid one by one; the search stops once the k-th
        best geodesic is shorter than the next chord, since no site further
        down the list can be nearer than its chord.
        """
        n = tree.n
        limit = filters.max_distance
        bound = math.inf if limit is None else limit + CHORD_MARGIN_M
        best: list[tuple[float, str, int, float]] = []
        # Sites at the same chord may come back in another order when the tree
        # is asked for more, so later rounds skip what was seen, not a prefix.
        seen: set[int] = set()
        rows, passes, inv, inf = tree.rows, self.passes, GEOD.inv, math.inf  # hot loop
        # One more than asked usually proves the k-th; a small group is sorted whole.
        want = n if tree.small else min(n, k + 1)
        while True:
            chords, positions = tree.nearest(origin, want, bound)
            for chord, position in zip(chords, positions, strict=True):
                if chord == inf:  # the tree holds nothing more within the bound
                    return best
                # The margin covers rounding in the ECEF chord (~1e-8 m), so
                # sites tied with the k-th are still measured and ranked by id.
                if len(best) == k and best[-1][0] < chord - CHORD_MARGIN_M:
                    return best
                if position in seen:
                    continue
                seen.add(position)
                row = rows[position]
                if not passes(row, filters):
                    continue
                azimuth, _back, distance = inv(lon, lat, self._lon[row], self._lat[row])
                if limit is not None and distance > limit:
                    continue
                bisect.insort(best, (distance, self._ids[row], row, azimuth))
                del best[k:]
            if want >= n:
                return best
            want = min(n, want * 4)

    def result(
        self, row: int, distance: float, azimuth: float, local: dt.datetime
    ) -> NearestResult:
        """A found site, with its open state at ``local`` (naive China time)."""
        return NearestResult(
            feature=self.features[row],
            distance_m=distance,
            bearing_deg=azimuth % 360.0,
            open_state=self._open_state_local(row, local),
            index=self,
            row=row,
        )


def nearest_sites(
    index: SiteIndex,
    lon: float,
    lat: float,
    k: int = 5,
    layers: Iterable[str] | None = None,
    filters: NearestFilters | None = None,
    now: dt.datetime | None = None,
) -> list[NearestResult]:
    """The ``k`` nearest sites of ``layers`` (default: every layer in the
    index) that pass ``filters``, nearest first, ties broken by id. ``now``
    (aware) is the time the open-now state of each result is reported for
    (default: the current time)."""
    filters = filters or NearestFilters()
    lon, lat = float(lon), float(lat)  # numpy scalars would slow every geodesic call
    origin = ecef_point(lon, lat)
    trees = index.trees_for(layers, filters.kinds)
    if len(trees) == 1:
        chosen = index.search(trees[0], origin, lon, lat, k, filters)
    else:
        chosen = heapq.nsmallest(
            k,
            (c for tree in trees for c in index.search(tree, origin, lon, lat, k, filters)),
        )
    moment = filters.open_at or now or dt.datetime.now(LOCAL_TIME)
    local = moment.astimezone(LOCAL_TIME).replace(tzinfo=None)
    return [index.result(row, distance, azimuth, local) for distance, _id, row, azimuth in chosen]


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
    """One ``SiteIndex`` over the facility layers, rebuilt only when the store
    says one of them changed (a layer's version moves on any write, from any
    process)."""

    def __init__(self, store: Store, layer_ids: Iterable[str] | None = None):
        self.store = store
        self.layer_ids = (
            list(layer_ids)
            if layer_ids is not None
            else [layer.id for layer in store.catalog.facility_layers]
        )
        self._index: SiteIndex | None = None
        self._lock = threading.Lock()

    def get(self) -> SiteIndex:
        all_versions = self.store.layer_versions()
        versions = {layer_id: all_versions.get(layer_id, 0) for layer_id in self.layer_ids}
        index = self._index
        if index is None or index.versions != versions:
            with self._lock:
                index = self._index
                if index is None or index.versions != versions:
                    features = [
                        feature
                        for layer_id in self.layer_ids
                        for feature in self.store.all_features(layer_id)
                    ]
                    index = SiteIndex(features, versions)
                    self._index = index
        return index
