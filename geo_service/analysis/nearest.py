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
import copy
import datetime as dt
import functools
import heapq
import logging
import math
import threading
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import opening_hours
import shapely
from pyproj import Transformer
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from geo_service.sources.crs import GEOD, CoordinateSystem, convert
from geo_service.store import Store, StoredFeature

__all__ = [
    "DETOUR_FACTOR",
    "LOCAL_TIME",
    "WALKING_LIMIT_M",
    "WALKING_SPEED_KMH",
    "WINDOW_GROUP_RADIUS_M",
    "DistrictOutline",
    "NearestFilters",
    "NearestResult",
    "OpenState",
    "SiteIndex",
    "SiteIndexCache",
    "institution_name",
    "navigation_links",
    "nearest_sites",
    "opening_phrase",
    "walking_assumption",
    "window_groups",
]

log = logging.getLogger("geo_service.nearest")

#: Opening hours are evaluated in China Standard Time.
LOCAL_TIME = ZoneInfo("Asia/Shanghai")
#: Straight-line distance times this approximates the walk through a street grid.
DETOUR_FACTOR = 1.3
#: A comfortable pace for older residents (GB 50180-2018 life circles assume ~4-5 km/h).
WALKING_SPEED_KMH = 4.5
#: Past this straight-line distance no walking time is given: 5 km is already
#: ~87 minutes at the pace above with the detour, beyond what older residents
#: walk to an office (GB 50180-2018's largest life circle is 15 minutes); they
#: take a bus or a taxi, and a minute count would only mislead.
WALKING_LIMIT_M = 5000.0
#: Windows of one institution (same name before the first space) this close
#: together, or at the same address, are one place in an answer.
WINDOW_GROUP_RADIUS_M = 30.0

_A = 6378137.0
_E2 = 6.69437999014e-3


def walking_assumption() -> str:
    return (
        f"straight-line distance × {DETOUR_FACTOR} detour factor ÷ "
        f"{WALKING_SPEED_KMH} km/h walking speed"
    )


def institution_name(name: object) -> str:
    """The institution a window belongs to: its name up to the first space
    (names are written "淄博市中心医院 军人优先窗口"), width-folded (NFKC, so a
    full-width space counts) and case-folded. A name without a space is
    all institution."""
    text = unicodedata.normalize("NFKC", str(name or "")).strip().casefold()
    return text.split(maxsplit=1)[0] if text else ""


def _address_key(address: object) -> str:
    text = unicodedata.normalize("NFKC", str(address or "")).casefold()
    return "".join(text.split())


def window_groups(
    features: list[StoredFeature], grouped_layers: frozenset[str] = frozenset({"green_channels"})
) -> list[int]:
    """Per feature, the position of the feature that stands for its place.

    Two sites of a layer in ``grouped_layers`` are windows of one place when
    they have the same institution name (``institution_name``: the same name
    before the first space; a shared prefix alone, as 淄博北站 and 淄博北站长途
    客运站, is not enough) AND either stand within ``WINDOW_GROUP_RADIUS_M``
    of each other or give the same address (spaces and width ignored). The
    relation is closed transitively; the first position of a group stands
    for it. Every other site is its own place.
    """
    parent = list(range(len(features)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, feature in enumerate(features):
        if feature.layer_id in grouped_layers:
            name = institution_name(feature.properties.get("name"))
            if name:
                buckets[(feature.layer_id, name)].append(row)
    for rows in buckets.values():
        for i, a in enumerate(rows):
            fa = features[a]
            for b in rows[i + 1 :]:
                fb = features[b]
                same_address = bool(_address_key(fa.properties.get("address"))) and (
                    _address_key(fa.properties.get("address"))
                    == _address_key(fb.properties.get("address"))
                )
                if not same_address:
                    metres = GEOD.inv(fa.geometry.x, fa.geometry.y, fb.geometry.x, fb.geometry.y)[2]
                    if metres > WINDOW_GROUP_RADIUS_M:
                        continue
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(len(features))]


_WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def opening_phrase(opens: dt.datetime, now: dt.datetime) -> tuple[str, str]:
    """When a site opens, as residents say it, in Chinese and English:
    ("今天 14:00 开放", "today 14:00"), ("明天 08:00 开放", "tomorrow 08:00"),
    within a week ("周一 09:00 开放", "Monday 09:00"), else the date.

    >>> now = dt.datetime(2026, 11, 29, 20, 0, tzinfo=LOCAL_TIME)  # a Sunday
    >>> opening_phrase(dt.datetime(2026, 11, 30, 8, 0, tzinfo=LOCAL_TIME), now)
    ('明天 08:00 开放', 'tomorrow 08:00')
    >>> opening_phrase(dt.datetime(2026, 12, 4, 9, 0, tzinfo=LOCAL_TIME), now)
    ('周五 09:00 开放', 'Friday 09:00')
    """
    opens = opens.astimezone(LOCAL_TIME)
    days = (opens.date() - now.astimezone(LOCAL_TIME).date()).days
    clock = opens.strftime("%H:%M")
    if days <= 0:
        return f"今天 {clock} 开放", f"today {clock}"
    if days == 1:
        return f"明天 {clock} 开放", f"tomorrow {clock}"
    if days < 7:
        weekday = opens.weekday()
        return f"{_WEEKDAYS_ZH[weekday]} {clock} 开放", f"{_WEEKDAYS_EN[weekday]} {clock}"
    return (
        f"{opens.month}月{opens.day}日 {clock} 开放",
        f"{opens.date().isoformat()} {clock}",
    )


#: A projected nearest point this far (degrees, ~1 km) or more from the
#: boundary after mapping back is taken as a degenerate projection.
SNAP_LIMIT_DEG = 0.01


class DistrictOutline:
    """The district's outline: whether a point is inside, and how far outside.

    >>> from shapely.geometry import box
    >>> outline = DistrictOutline(box(118.0, 36.7, 118.2, 36.9))
    >>> outline.contains(118.1, 36.8), outline.contains(118.3, 36.8)
    (True, False)
    >>> round(outline.distance_to_boundary_m(118.3, 36.8) / 1000, 1)  # 0.1 degree east
    8.9
    """

    def __init__(self, geometry: BaseGeometry):
        self.geometry = geometry
        shapely.prepare(geometry)
        self._boundary = geometry.boundary
        self._vertices = shapely.get_coordinates(self._boundary)

    def contains(self, lon: float, lat: float) -> bool:
        """Inside or on the boundary."""
        return bool(shapely.intersects_xy(self.geometry, lon, lat))

    def distance_to_boundary_m(self, lon: float, lat: float) -> float:
        """Geodesic metres from the point to the nearest point of the boundary.

        The nearest point is found in an azimuthal equidistant projection
        centred on the point (where distance from the centre is true in every
        direction), then measured on the ellipsoid."""
        to_local = Transformer.from_crs(
            "EPSG:4326",
            f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m",
            always_xy=True,
        )
        local = shapely.transform(
            self._boundary,
            lambda xy: np.column_stack(to_local.transform(xy[:, 0], xy[:, 1])),
        )
        nearest = nearest_points(local, shapely.Point(0.0, 0.0))[0]
        back_lon, back_lat = to_local.transform(nearest.x, nearest.y, direction="INVERSE")
        # A straight projected segment is a slightly curved line on the earth:
        # the point found is snapped onto the boundary before it is measured.
        # Far away (towards the antipode) the projection degenerates and the
        # point may map back anywhere: then it is dropped and the nearest
        # vertex answers. Either way only boundary points are measured, so
        # the smaller distance is the better answer.
        back = shapely.Point(back_lon, back_lat)
        projected = math.inf
        if self._boundary.distance(back) < SNAP_LIMIT_DEG:
            snapped = nearest_points(self._boundary, back)[0]
            projected = float(GEOD.inv(lon, lat, snapped.x, snapped.y)[2])
        n = len(self._vertices)
        _, _, to_vertices = GEOD.inv(
            np.full(n, lon), np.full(n, lat), self._vertices[:, 0], self._vertices[:, 1]
        )
        candidates = [projected, *(to_vertices.tolist() if n else [])]
        return min((d for d in candidates if math.isfinite(d)), default=math.inf)


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
    #: Leave out sites whose opening hours are unknown (or unreadable).
    hours_known: bool = False

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
    #: For a place with several windows (one institution): all its windows
    #: that pass the filters, nearest first, this one included; else None.
    windows: list[NearestResult] | None = field(default=None, compare=False)

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

    def __init__(
        self,
        features: Iterable[StoredFeature],
        versions: dict[str, int] | None = None,
        grouped_layers: Iterable[str] = ("green_channels",),
        district: DistrictOutline | None = None,
    ):
        self.features = list(features)
        self.versions = dict(versions or {})
        #: Per layer, the highest audit seq these sites reflect (``Store.changes_since``).
        self.marks: dict[str, int] = {}
        self.grouped_layers = frozenset(grouped_layers)
        #: The district the sites serve (None: unknown, nothing said about it).
        self.district = district
        #: Per row, the row that stands for its institution (itself when alone),
        #: and each institution's rows, for layers whose sites are windows.
        self._group = window_groups(self.features, self.grouped_layers)
        members: dict[int, list[int]] = defaultdict(list)
        for row, group in enumerate(self._group):
            members[group].append(row)
        self._members = {group: rows for group, rows in members.items() if len(rows) > 1}
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

    # -- incremental freshness: INTERIM shape (issue 20) ----------------------------
    # The columnar index of issue 20 (part "index") provides these with the
    # same signatures: ``applied`` then shares the base arrays and keeps the
    # changed sites in a small delta, which ``merged`` folds into new trees.
    # Until it lands, ``applied`` simply builds a new index from the features.

    @classmethod
    def from_store(
        cls,
        store: Store,
        layer_ids: Iterable[str],
        *,
        grouped_layers: Iterable[str],
        district: DistrictOutline | None,
        versions: dict[str, int],
        marks: dict[str, int],
    ) -> SiteIndex:
        """Every site of ``layer_ids`` as the store holds it now (read after
        ``versions`` and ``marks`` were, so at least as new as they say)."""
        features = [feature for layer_id in layer_ids for feature in store.all_features(layer_id)]
        index = cls(features, versions, grouped_layers, district)
        index.marks = dict(marks)
        return index

    def applied(
        self,
        upserts: Sequence[StoredFeature],
        deleted: Sequence[tuple[str, str]],
        *,
        versions: dict[str, int],
        marks: dict[str, int],
    ) -> SiteIndex:
        """A NEW index with ``upserts`` (replacing any site of the same layer
        and id) and without ``deleted``; this one is left as it is, for the
        requests still reading it."""
        if not upserts and not deleted:  # versions moved, the sites did not
            twin = copy.copy(self)
            twin.versions, twin.marks = dict(versions), dict(marks)
            return twin
        replaced = set(deleted) | {(feature.layer_id, feature.id) for feature in upserts}
        kept = [f for f in self.features if (f.layer_id, f.id) not in replaced]
        index = SiteIndex([*kept, *upserts], versions, self.grouped_layers, self.district)
        index.marks = dict(marks)
        return index

    @property
    def delta_size(self) -> int:
        """Sites held outside the base trees (none here: ``applied`` rebuilds them)."""
        return 0

    def merged(self) -> SiteIndex:
        """The same sites with the delta folded into the base trees (here: itself)."""
        return self

    def kinds(self, layer_id: str) -> list[str]:
        return sorted(kind for layer, kind in self._trees if layer == layer_id and kind)

    def open_state(self, row: int, when: dt.datetime) -> OpenState:
        """Open, closed or unknown at ``when`` (aware), by the site's hours."""
        return self._open_state_local(row, when.astimezone(LOCAL_TIME).replace(tzinfo=None))

    def _parsed_hours(self, row: int) -> Any:
        """The site's parsed opening hours, or False when unknown or unreadable."""
        parsed = self._hours[row]
        if parsed is None:
            expression = self.features[row].properties.get("opening_hours")
            try:
                parsed = opening_hours.OpeningHours(expression) if expression else False
            except (SyntaxError, ValueError):
                parsed = False
            self._hours[row] = parsed
        return parsed

    def next_open(self, row: int, local: dt.datetime) -> dt.datetime | None:
        """When the site next opens after ``local`` (naive China time), as an
        aware datetime, or None: hours unknown, or no opening within 8 days."""
        parsed = self._parsed_hours(row)
        if parsed is False:
            return None
        horizon = local + dt.timedelta(days=8)
        moment = local
        try:
            for _ in range(32):  # a few closed/unknown stretches at most
                if parsed.state(moment)[0] == opening_hours.State.OPEN:
                    return moment.replace(tzinfo=LOCAL_TIME)
                moment = parsed.next_change(moment)
                if moment is None or moment > horizon:
                    return None
        except (ValueError, OverflowError, RuntimeError):
            return None
        return None

    def _open_state_local(self, row: int, local: dt.datetime) -> OpenState:
        parsed = self._parsed_hours(row)
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
        if filters.hours_known and self._parsed_hours(row) is False:
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

    def windows(
        self, rows: list[int], lon: float, lat: float, filters: NearestFilters, local: dt.datetime
    ) -> list[NearestResult]:
        """The windows of one institution that pass ``filters``, nearest first."""
        kinds = filters.kinds
        found = []
        for row in rows:
            if kinds and str(self.features[row].properties.get("kind")) not in kinds:
                continue
            if not self.passes(row, filters):
                continue
            azimuth, _back, distance = GEOD.inv(lon, lat, self._lon[row], self._lat[row])
            if filters.max_distance is not None and distance > filters.max_distance:
                continue
            found.append((distance, self._ids[row], row, azimuth))
        return [self.result(row, d, azimuth, local) for d, _id, row, azimuth in sorted(found)]

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
    group_windows: bool = True,
) -> list[NearestResult]:
    """The ``k`` nearest places of ``layers`` (default: every layer in the
    index) that pass ``filters``, nearest first, ties broken by id. A place
    is a site, or (``group_windows``) the windows of one institution: it is
    answered once, by its nearest passing window, with all its passing
    windows in ``windows``. ``now`` (aware) is the time the open-now state of
    each result is reported for (default: the current time)."""
    filters = filters or NearestFilters()
    lon, lat = float(lon), float(lat)  # numpy scalars would slow every geodesic call
    origin = ecef_point(lon, lat)
    trees = index.trees_for(layers, filters.kinds)
    grouping = group_windows and bool(index._members)
    want = k
    while True:
        if len(trees) == 1:
            found = index.search(trees[0], origin, lon, lat, want, filters)
        else:
            found = heapq.nsmallest(
                want,
                (c for tree in trees for c in index.search(tree, origin, lon, lat, want, filters)),
            )
        if not grouping:
            chosen = found
            break
        # Sites nearest first: an institution's first window is its place.
        seen: set[int] = set()
        chosen = []
        for candidate in found:
            group = index._group[candidate[2]]
            if group not in seen:
                seen.add(group)
                chosen.append(candidate)
        if len(chosen) >= k or len(found) < want:
            del chosen[k:]
            break
        want += k - len(chosen)  # windows took places: look further
    moment = filters.open_at or now or dt.datetime.now(LOCAL_TIME)
    local = moment.astimezone(LOCAL_TIME).replace(tzinfo=None)
    results = [
        index.result(row, distance, azimuth, local) for distance, _id, row, azimuth in chosen
    ]
    if grouping:
        for result in results:
            rows = index._members.get(index._group[result.row])
            if rows:
                result.windows = index.windows(rows, lon, lat, filters, local)
    return results


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


#: Sites held outside the base trees past which the cache folds them in
#: (``SiteIndex.merged``), in a background thread.
MERGE_AFTER = 50_000


class SiteIndexCache:
    """One ``SiteIndex`` over the facility layers, kept current from the
    store's change feed: a write to a site changes that site in the index
    (``SiteIndex.applied``), never the whole of it.

    ``get()`` is on every nearest request, so it first asks the cheapest
    question: the store's ``change_token`` (PostGIS: a count of change
    notifications, no round trip); with none, or when it moved, the layer
    versions (embedded: a memo checked against SQLite's ``data_version``).
    Only when those moved does it read ``changes_since`` the index's marks
    and apply those rows. A layer changed wholesale (a bulk load), or the
    district outline, is read again whole.

    Thread-safe: an index once returned is never changed (each change makes
    a new one), and changes are applied by one thread at a time, each from
    the marks of the index before it, so none is applied twice. When the
    changed sites kept outside the base trees pass ``merge_after``, they are
    folded in by a background thread while requests go on being answered
    from the unmerged index; what was applied meanwhile is applied again to
    the merged one before it takes over.
    """

    def __init__(
        self,
        store: Store,
        layer_ids: Iterable[str] | None = None,
        *,
        merge_after: int = MERGE_AFTER,
    ):
        self.store = store
        self.layer_ids = (
            list(layer_ids)
            if layer_ids is not None
            else [layer.id for layer in store.catalog.facility_layers]
        )
        layers = store.catalog.layers
        #: Layers whose sites are windows of an institution (they declare ``window``).
        self.grouped_layers = frozenset(
            layer_id for layer_id in self.layer_ids if "window" in layers[layer_id].properties
        )
        #: The district outline's layer, if the catalog has one.
        self.district_layer = next(
            (layer.id for layer in layers.values() if layer.schema == "district"), None
        )
        self.merge_after = merge_after
        self._watched = [*self.layer_ids, *([self.district_layer] if self.district_layer else [])]
        #: The current index and the change token it is known current for.
        self._current: tuple[SiteIndex, int | None] | None = None
        self._lock = threading.Lock()  # held while changes are read and applied
        self._swap = threading.Lock()  # held for an instant, to replace ``_current``
        #: While a merge runs: the changes applied since it started, to apply
        #: again to its result (None: no merge running, or its result is stale).
        self._merge_log: list[tuple[Any, ...]] | None = None
        self._merging = False

    def get(self) -> SiteIndex:
        current = self._current
        token = self.store.change_token()  # before the versions: see below
        if current is None:
            self._lock.acquire()  # the first build: nothing to answer from yet
        else:
            index, known = current
            if token is not None and token == known:
                return index
            if index.versions == self._versions():
                if token is not None:
                    self._replace(index, (index, token))
                return index
            if not self._lock.acquire(blocking=False):
                return index  # another request is applying the changes right now
        try:
            # Asked again under the lock, the token first: a write committed
            # after it was read moves it, so the next request looks again.
            token = self.store.change_token()
            versions = self._versions()
            current = self._current
            index = current[0] if current is not None else None
            if index is None or index.versions != versions:
                index = self._refreshed(index, versions)
            self._replace(current[0] if current is not None else None, (index, token))
        finally:
            self._lock.release()
        if index.delta_size > self.merge_after:
            self._start_merge(index)
        return index

    def _replace(self, expected: SiteIndex | None, new: tuple[SiteIndex, int | None]) -> None:
        """``new`` becomes current if the current index is still ``expected``:
        a request that found it current must not put back an index another
        thread replaced meanwhile (only a token may go back: one more look)."""
        with self._swap:
            current = self._current[0] if self._current is not None else None
            if current is expected:
                self._current = new

    def _versions(self) -> dict[str, int]:
        versions = self.store.layer_versions()
        return {layer_id: versions.get(layer_id, 0) for layer_id in self._watched}

    def _refreshed(self, index: SiteIndex | None, versions: dict[str, int]) -> SiteIndex:
        """``index`` brought up to date (under the lock): the changed rows
        applied, or read whole when the feed says a layer must be."""
        district = self.district_layer
        if index is None or (district and index.versions.get(district) != versions[district]):
            return self._rebuilt(versions)
        feed = self.store.changes_since(
            {layer_id: index.marks.get(layer_id, 0) for layer_id in self.layer_ids}
        )
        if feed.reloaded:
            # For now the whole index; a layer alone once the index can swap one.
            return self._rebuilt(versions)
        change = (feed.upserts, feed.deleted, versions, feed.marks)
        if self._merge_log is not None:
            self._merge_log.append(change)
        return index.applied(feed.upserts, feed.deleted, versions=versions, marks=feed.marks)

    def _rebuilt(self, versions: dict[str, int]) -> SiteIndex:
        self._merge_log = None  # a merge running now would bring back older sites
        marks = self.store.change_marks(self.layer_ids)
        return SiteIndex.from_store(
            self.store,
            self.layer_ids,
            grouped_layers=self.grouped_layers,
            district=self._district(),
            versions=versions,
            marks=marks,
        )

    def _start_merge(self, index: SiteIndex) -> None:
        with self._lock:
            current = self._current
            if self._merging or current is None or current[0] is not index:
                return
            self._merging = True
            self._merge_log = changes = []
        threading.Thread(
            target=self._merge, args=(index, changes), name="site index merge", daemon=True
        ).start()

    def _merge(self, base: SiteIndex, changes: list[tuple[Any, ...]]) -> None:
        try:
            merged = base.merged()
            with self._lock:
                current = self._current
                if self._merge_log is not changes or current is None:
                    return  # the index was read whole meanwhile: this one is older
                for upserts, deleted, versions, marks in changes:
                    merged = merged.applied(upserts, deleted, versions=versions, marks=marks)
                self._replace(current[0], (merged, current[1]))
        except Exception:
            log.exception("merging the nearest index failed; it stays unmerged for now")
        finally:
            with self._lock:
                self._merging = False
                if self._merge_log is changes:
                    self._merge_log = None

    def _district(self) -> DistrictOutline | None:
        if self.district_layer is None:
            return None
        outlines = [f.geometry for f in self.store.all_features(self.district_layer)]
        if not outlines:
            return None
        return DistrictOutline(shapely.union_all(outlines))
