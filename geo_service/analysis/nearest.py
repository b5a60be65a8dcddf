"""Nearest-service queries: the true k nearest sites that serve a resident, nearest first.

Pure functions over store snapshots; no web code. The facility layers are held
as one ``SiteIndex``: positions as earth-centred (ECEF) metres in KD-trees
(all sites, each layer, each layer's kinds), plus the columns the filters read.
A query walks a tree in increasing straight-line (chord) distance (for a few
sites, from the cells of latitude and longitude around the point when they
prove it: ``_Grid``) and measures candidates on the WGS-84 ellipsoid. A chord
is never longer than the geodesic between the same two points, so once the
k-th best geodesic distance found is shorter than the next chord, no
unmeasured site can beat it: the answer is exact, whatever the filters exclude.

Example
-------
>>> from shapely.geometry import Point
>>> from geo_service.store import SiteRows, Store, StoredFeature
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

import array
import bisect
import contextlib
import contextvars
import copy
import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import functools
import gc
import heapq
import logging
import math
import threading
import unicodedata
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import opening_hours
import orjson
import shapely
from pyproj import Transformer
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from geo_service.sources.crs import GEOD, CoordinateSystem, convert
from geo_service.store import SiteRows, Store, StoredFeature

__all__ = [
    "DETOUR_FACTOR",
    "LOCAL_TIME",
    "WALKING_LIMIT_M",
    "WALKING_SPEED_KMH",
    "WINDOW_GROUP_RADIUS_M",
    "DistrictOutline",
    "NearestFilters",
    "NearestResult",
    "NotInMemory",
    "OpenState",
    "SiteIndex",
    "SiteIndexCache",
    "SiteMemo",
    "institution_name",
    "memory_only",
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
    columns = _Vocabulary().columns_of(list(features), frozenset(grouped_layers))
    return _places(columns).tolist()


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
#: Points this close to the boundary (degrees, ~100 km) find its nearest point
#: in a local equirectangular projection; further ones in an azimuthal one.
LOCAL_PROJECTION_DEG = 1.0


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
        # The boundary's segments, end to end within each of its lines.
        lines = [shapely.get_coordinates(line) for line in shapely.get_parts(self._boundary)]
        self._segment_starts = np.concatenate([c[:-1] for c in lines] or [np.empty((0, 2))])
        self._segment_ends = np.concatenate([c[1:] for c in lines] or [np.empty((0, 2))])

    def contains(self, lon: float, lat: float) -> bool:
        """Inside or on the boundary."""
        return bool(shapely.intersects_xy(self.geometry, lon, lat))

    def distance_to_boundary_m(self, lon: float, lat: float) -> float:
        """Geodesic metres from the point to the nearest point of the boundary.

        The nearest point is found in a projection centred on the point, then
        measured on the ellipsoid, as are the boundary's vertices: only
        boundary points are measured, so the smallest is the answer. Within
        ``LOCAL_PROJECTION_DEG`` of the boundary (every point of the district's
        own map) the projection is a local equirectangular one, a scaling of
        lon/lat that costs microseconds; further away an azimuthal equidistant
        one (where distance from the centre is true in every direction), which
        pyproj takes milliseconds to set up."""
        point = shapely.Point(lon, lat)
        vertices = self._vertices
        if self._boundary.distance(point) < LOCAL_PROJECTION_DEG:
            nearest, vertices = self._nearest_equirectangular(lon, lat)
        else:
            nearest = self._nearest_aeqd(lon, lat)
        projected = math.inf
        if nearest is not None:
            projected = float(GEOD.inv(lon, lat, nearest[0], nearest[1])[2])
        n = len(vertices)
        _, _, to_vertices = GEOD.inv(
            np.full(n, lon), np.full(n, lat), vertices[:, 0], vertices[:, 1]
        )
        candidates = [projected, *(to_vertices.tolist() if n else [])]
        return min((d for d in candidates if math.isfinite(d)), default=math.inf)

    def _nearest_equirectangular(
        self, lon: float, lat: float
    ) -> tuple[tuple[float, float], np.ndarray]:
        """The boundary point nearest to a close point, in metres east and
        north of it at its latitude's radii of curvature. The projection is
        affine in lon/lat, so the point found lies on the boundary as it is
        (no snapping); within a degree it misjudges distances by ~0.25% at
        most, which matters only between two nearly equidistant segments.
        Also the vertices worth measuring on the ellipsoid: those the
        projection puts within 1% of the point found (no other can be nearer)."""
        phi = math.radians(lat)
        w = math.sqrt(1.0 - _E2 * math.sin(phi) ** 2)
        east = math.radians(_A / w * math.cos(phi))  # metres per degree of longitude
        north = math.radians(_A * (1.0 - _E2) / w**3)  # metres per degree of latitude
        scale = np.array([east, north])
        centre = np.array([lon, lat])
        # The nearest point of each segment to the origin, in numpy: cheaper
        # than building the projected boundary as a geometry to ask shapely.
        starts = (self._segment_starts - centre) * scale
        along = (self._segment_ends - centre) * scale - starts
        lengths = np.einsum("ij,ij->i", along, along)
        t = -np.einsum("ij,ij->i", starts, along) / np.where(lengths > 0, lengths, 1.0)
        nearest = starts + np.clip(t, 0.0, 1.0)[:, None] * along
        squared = np.einsum("ij,ij->i", nearest, nearest)
        x, y = nearest[int(squared.argmin())].tolist()
        offsets = (self._vertices - centre) * scale
        reach = math.hypot(x, y) * 1.01 + 1.0
        near = self._vertices[np.einsum("ij,ij->i", offsets, offsets) <= reach * reach]
        return (lon + x / east, lat + y / north), near

    def _nearest_aeqd(self, lon: float, lat: float) -> tuple[float, float] | None:
        """The boundary point nearest to a far point, found in an azimuthal
        equidistant projection centred on it; None when the projection
        degenerates (towards the antipode the point found may map back
        anywhere)."""
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
        back = shapely.Point(back_lon, back_lat)
        if self._boundary.distance(back) >= SNAP_LIMIT_DEG:
            return None
        snapped = nearest_points(self._boundary, back)[0]
        return snapped.x, snapped.y


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
        """The site's position in GCJ-02."""
        return self.position(CoordinateSystem.gcj02)

    @property
    def bd09(self) -> tuple[float, float]:
        return self.position(CoordinateSystem.bd09)

    @property
    def navigation(self) -> dict[str, str]:
        """Links opening Amap, Baidu and Tencent maps at the site (built on demand)."""
        return navigation_links(self.feature, self.gcj02, self.bd09)

    def position(self, crs: CoordinateSystem) -> tuple[float, float]:
        """The site's lon/lat in ``crs`` (as indexed)."""
        lon, lat = self.index.lonlat(self.row)
        if crs == CoordinateSystem.wgs84:
            return lon, lat
        x, y = convert(lon, lat, CoordinateSystem.wgs84, crs)
        return float(x), float(y)

    @property
    def walk_minutes(self) -> float:
        return self.distance_m * DETOUR_FACTOR / (WALKING_SPEED_KMH * 1000.0 / 60.0)


#: Chords are computed from earth-centred coordinates of ~6.4e6 m, so they
#: carry rounding of a few 1e-9 m; comparisons with geodesics allow this much.
CHORD_MARGIN_M = 1e-6
#: Below this many sites, sorting every chord with numpy beats a KD-tree
#: query, whose fixed cost (~30 µs) is the same for 90 sites or a million.
SMALL_GROUP = 256
#: Small groups a question searches together are sorted as one up to this many sites.
UNION_MAX = 4096
#: Features fetched from the store by id, kept per site across the indexes
#: ``applied`` derives: a district's sites all fit, a national index keeps
#: the recently answered ones (~2 KB each).
FEATURE_CACHE_SIZE = 8192
#: Sites whose derived data (serialized fragments) consumers keep in ``memo``.
SITE_MEMO_SIZE = 20_000


class SiteMemo:
    """A bounded LRU of data kept per site, keyed by (layer, id) and then by
    what the data is. One memo is shared by an index and every index
    ``applied``/``merged`` derive from it (thread-safe); ``applied`` forgets
    a site that changed, so an entry is never stale for the newest index."""

    def __init__(self, limit: int):
        self.limit = limit
        self._sites: OrderedDict[tuple[str, str], dict[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, layer_id: str, feature_id: str, key: Any) -> Any:
        with self._lock:
            entry = self._sites.get((layer_id, feature_id))
            if entry is None:
                return None
            self._sites.move_to_end((layer_id, feature_id))
            return entry.get(key)

    def put(self, layer_id: str, feature_id: str, key: Any, value: Any) -> None:
        with self._lock:
            entry = self._sites.get((layer_id, feature_id))
            if entry is None:
                entry = self._sites[(layer_id, feature_id)] = {}
                while len(self._sites) > self.limit:
                    self._sites.popitem(last=False)
            else:
                self._sites.move_to_end((layer_id, feature_id))
            entry[key] = value

    def forget(self, layer_id: str, feature_id: str) -> None:
        with self._lock:
            self._sites.pop((layer_id, feature_id), None)

    def __len__(self) -> int:
        return len(self._sites)


class _Codes:
    """Values as small integers, in order of first sight. Append-only and
    shared by derived indexes: a code never changes meaning."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.codes: dict[Any, int] = {}
        self._lock = threading.Lock()

    def code(self, value: Any) -> int:
        code = self.codes.get(value)
        if code is None:
            with self._lock:
                code = self.codes.get(value)
                if code is None:
                    code = len(self.values)
                    self.values.append(value)
                    self.codes[value] = code
        return code


class _Bits(_Codes):
    """Sets of values (a site's services, its eligible beneficiaries) as bit
    masks: bit ``code`` for each value. The catalog's value lists are short."""

    def __init__(self) -> None:
        super().__init__()
        self._masks: dict[Any, int] = {}

    def mask(self, values: Any) -> int:
        """The mask of a list, or of the store's JSON text of one."""
        if values is None:
            return 0
        key = values if isinstance(values, str) else tuple(values)
        mask = self._masks.get(key)
        if mask is None:
            items = orjson.loads(values) if isinstance(values, str) else values
            mask = 0
            for item in items or ():
                code = self.code(item)
                if code >= 63:
                    raise ValueError(f"more than 63 distinct values in one list column: {item!r}")
                mask |= 1 << code
            self._masks[key] = mask
        return mask

    def wanted(self, values: Iterable[str]) -> int | None:
        """The mask of values asked for, or None if one was never seen (no site has it)."""
        mask = 0
        for value in values:
            code = self.codes.get(value)
            if code is None:
                return None
            mask |= 1 << code
        return mask


def _hash64(key: tuple[str, ...]) -> int:
    """A 64-bit digest (never 0) standing for an institution or address: the
    index compares them without keeping a national set of strings. Python's
    own string hash (~50 ns, a cryptographic digest costs ~20 times more over
    millions of sites) suffices: digests are only compared within one
    process, between an index and those derived from it."""
    return (hash(key) & 0x7FFF_FFFF_FFFF_FFFF) or 1  # non-negative int64, 0 means "none"


def _digests(values: list[Any], key: Callable[[Any], str], salt: str) -> np.ndarray:
    """Per value, ``_hash64`` of its ``key`` (0 when the key is empty),
    worked out once per distinct value (a layer's sites share few addresses)."""
    table: dict[Any, int] = {}
    for value in set(values):
        text = key(value)
        table[value] = _hash64((salt, text)) if text else 0
    return np.fromiter(map(table.__getitem__, values), "int64", len(values))


class _Vocabulary:
    """The code tables of an index and those derived from it."""

    def __init__(self) -> None:
        self.layers = _Codes()
        self.kinds = _Codes()
        self.statuses = _Codes()
        self.services = _Bits()
        self.eligible = _Bits()
        #: Distinct opening-hours expressions, each parsed once (False: unknown).
        self.hours = _Codes()
        self._parsed: dict[int, Any] = {}
        #: (hours code, local minute) -> open state (``SiteIndex._hours_state``).
        self.states: dict[tuple[int, dt.datetime], OpenState] = {}

    def parsed_hours(self, code: int) -> Any:
        """The parsed expression of code ``code``, or False when none or unreadable."""
        if code < 0:
            return False
        parsed = self._parsed.get(code)
        if parsed is None:
            try:
                parsed = opening_hours.OpeningHours(self.hours.values[code])
            except (SyntaxError, ValueError):
                parsed = False
            self._parsed[code] = parsed
        return parsed

    def columns(self, layer_ids: list[str], rows: SiteRows, grouped: frozenset[str]) -> _Columns:
        """One batch of sites (``layer_ids`` per site) as columns."""
        n = len(rows.ids)
        layer_code, kind_code, status_code = self.layers.code, self.kinds.code, self.statuses.code
        hours_code = self.hours.code
        inst = np.zeros(n, dtype="int64")
        addr = np.zeros(n, dtype="int64")
        if grouped and rows.name is not None and rows.address is not None:
            for layer_id in set(layer_ids) & grouped:
                picked = [i for i, of in enumerate(layer_ids) if of == layer_id]
                every = len(picked) == n  # a store's batch: one layer
                mine = slice(None) if every else picked
                names = rows.name if every else [rows.name[i] for i in picked]
                addresses = rows.address if every else [rows.address[i] for i in picked]
                named = _digests(names, institution_name, layer_id)
                inst[mine] = named
                addr[mine] = np.where(named != 0, _digests(addresses, _address_key, ""), 0)
        lon = np.asarray(rows.lon, dtype="float64")
        lat = np.asarray(rows.lat, dtype="float64")
        return _Columns(
            lon=lon,
            lat=lat,
            xyz=_ecef(lon, lat),
            layer=_encoded(layer_ids, layer_code, "int16"),
            kind=_encoded(rows.kind, lambda x: kind_code(str(x)), "int16"),
            status=_encoded(rows.status, status_code, "int16"),
            services=_encoded(rows.services, self.services.mask, "uint64"),
            eligible=_encoded(rows.eligible, self.eligible.mask, "uint64"),
            hours=_encoded(
                rows.opening_hours,
                lambda x: hours_code(x) if isinstance(x, str) and x else -1,
                "int32",
            ),
            ids=np.array([x.encode() for x in rows.ids], dtype="S") if n else _NO_IDS,
            inst=inst,
            addr=addr,
        )

    def columns_of(self, features: list[StoredFeature], grouped: frozenset[str]) -> _Columns:
        props = [f.properties for f in features]
        rows = SiteRows(
            ids=[f.id for f in features],
            lon=np.array([f.geometry.x for f in features], dtype="float64"),
            lat=np.array([f.geometry.y for f in features], dtype="float64"),
            kind=[p.get("kind") for p in props],
            status=[p.get("status") for p in props],
            services=[tuple(p.get("services") or ()) for p in props],
            eligible=[tuple(p.get("eligible") or ()) for p in props],
            opening_hours=[p.get("opening_hours") for p in props],
            name=[p.get("name") for p in props],
            address=[p.get("address") for p in props],
        )
        return self.columns([f.layer_id for f in features], rows, grouped)


_NO_IDS = np.array([], dtype="S1")


def _encoded(values: list[Any], encode: Callable[[Any], int], dtype: str) -> np.ndarray:
    """``encode`` of each value, called once per distinct value (a batch of
    sites holds a few kinds, statuses and lists, repeated thousands of times)."""
    table = {value: encode(value) for value in set(values)}
    return np.fromiter(map(table.__getitem__, values), dtype, len(values))


@dataclass(frozen=True)
class _Columns:
    """Sites as parallel arrays: positions (lon/lat and ECEF), codes, masks,
    ids as fixed-width UTF-8 bytes, institution and address digests (0: none)."""

    lon: np.ndarray
    lat: np.ndarray
    xyz: np.ndarray
    layer: np.ndarray
    kind: np.ndarray
    status: np.ndarray
    services: np.ndarray
    eligible: np.ndarray
    hours: np.ndarray
    ids: np.ndarray
    inst: np.ndarray
    addr: np.ndarray

    def __len__(self) -> int:
        return len(self.lon)

    @classmethod
    def empty(cls) -> _Columns:
        return cls.concat([])

    @classmethod
    def concat(cls, parts: list[_Columns]) -> _Columns:
        if not parts:
            dtypes = ("float64", "float64", None, "int16", "int16", "int16", "uint64", "uint64")
            zero = [np.zeros(0, dtype=d) if d else np.zeros((0, 3)) for d in dtypes]
            return cls(*zero, np.zeros(0, "int32"), _NO_IDS, *(np.zeros(0, "int64"),) * 2)
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls))
        )

    def take(self, rows: np.ndarray) -> _Columns:
        return _Columns(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))

    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in dataclasses.fields(self))


def _kd_tree(points: np.ndarray) -> cKDTree:
    """A KD-tree split at the midpoint of the widest side rather than at the
    median, its node boxes left as split, 32 sites a leaf: built ~1.6 times
    faster than scipy's default with fewer nodes (~10 bytes a site), and as
    fast to query (measured on 530,000 clustered sites); the answers are the
    same, the nearest being exact whatever the splits. The data is not
    copied: trees of slices share the index's ECEF array."""
    return cKDTree(points, leafsize=32, balanced_tree=False, compact_nodes=False)


def _window_components(
    lon: np.ndarray, lat: np.ndarray, xyz: np.ndarray, inst: np.ndarray, addr: np.ndarray
) -> np.ndarray:
    """Per site, the position of the first site of its place: sites of one
    institution (``inst``, never 0 here) at the same address or within
    ``WINDOW_GROUP_RADIUS_M``, closed transitively (``window_groups``)."""
    n = len(inst)
    if n < 2:
        return np.arange(n)
    pairs = [np.zeros((0, 2), dtype="int64")]
    addressed = np.flatnonzero(addr != 0)
    order = addressed[np.lexsort((addr[addressed], inst[addressed]))]
    same = (inst[order[1:]] == inst[order[:-1]]) & (addr[order[1:]] == addr[order[:-1]])
    pairs.append(np.column_stack([order[:-1][same], order[1:][same]]))
    # A chord is never longer than the geodesic: pairs within the radius by
    # chord hold every pair within it on the ellipsoid, checked there. A
    # fourth coordinate puts institutions 1e8 m apart (exactly 0 within
    # one), so sites of different institutions on one spot (geocoded to a
    # town's centre, say) never pair up.
    _, institution = np.unique(inst, return_inverse=True)
    apart = np.column_stack([xyz, institution.reshape(-1) * 1e8])
    near = _kd_tree(apart).query_pairs(
        WINDOW_GROUP_RADIUS_M + CHORD_MARGIN_M, output_type="ndarray"
    )
    if len(near):
        a, b = near[:, 0], near[:, 1]
        metres = GEOD.inv(lon[a], lat[a], lon[b], lat[b])[2]
        pairs.append(near[metres <= WINDOW_GROUP_RADIUS_M])
    edges = np.concatenate(pairs)
    graph = coo_matrix(
        (np.ones(len(edges), dtype="int8"), (edges[:, 0], edges[:, 1])), shape=(n, n)
    )
    count, labels = connected_components(graph, directed=False)
    first = np.full(count, n, dtype="int64")
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


def _places(columns: _Columns) -> np.ndarray:
    """Per site, the first site of its place (itself, unless a window of an
    institution with others nearby or at its address)."""
    places = np.arange(len(columns), dtype="int32")
    rows = np.flatnonzero(columns.inst != 0)
    # Only an institution with several sites can have a place of several
    # windows: the others (most, nationally) need no pair search.
    _, institution, sites = np.unique(columns.inst[rows], return_inverse=True, return_counts=True)
    rows = rows[sites[institution.reshape(-1)] > 1]
    if len(rows) > 1:
        places[rows] = rows[
            _window_components(
                columns.lon[rows],
                columns.lat[rows],
                columns.xyz[rows],
                columns.inst[rows],
                columns.addr[rows],
            )
        ]
    return places


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Hand the memory a build freed back to the system. A store read makes
    millions of short-lived tuples and strings; glibc keeps the freed blocks
    in its heap, so without a trim a worker stays at the build's peak
    resident memory for good, and that steady RSS is what limits workers
    per machine."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc only
        libc.malloc_trim(0)


def _runs(codes: np.ndarray) -> tuple[list[int], list[tuple[int, int]]]:
    """The distinct values of sorted ``codes`` and the (start, stop) of each one's run."""
    values, starts = np.unique(codes, return_index=True)
    stops = [*starts[1:].tolist(), len(codes)]
    return values.tolist(), list(zip(starts.tolist(), stops, strict=True))


def _z_of_latitude(lat: float) -> float:
    """The earth-centred z (metres) of the ellipsoid's points at geodetic
    latitude ``lat`` (degrees); it grows with the latitude."""
    sin_phi = math.sin(math.radians(lat))
    return _A * (1.0 - _E2) * sin_phi / math.sqrt(1.0 - _E2 * sin_phi * sin_phi)


#: Sites a cell of a ``_Grid`` holds on average: a block of 3 × 3 cells
#: then holds the handful of candidates a small k needs, and usually
#: proves them (below).
SITES_PER_CELL = 4
#: A block holding more sites than this (a dense city) is left to the KD-tree.
GRID_BLOCK_LIMIT = 512


class _Grid:
    """The sites of a KD-tree in cells of latitude and longitude, to answer
    the common query without the tree: one ``cKDTree.query`` call costs
    ~10 µs of Python-level set-up whatever the tree's size, more than the
    search itself, while the 3 × 3 cells around a point hold its nearest
    few sites and take a handful of numpy calls.

    Exact, not a guess: the answer stands only when its last chord is
    shorter than any chord to a site outside the block. Every such site
    lies beyond one of the block's four sides: below its lowest latitude
    (so lower in z, as z grows with the latitude), above its highest, or
    across the plane of one of its two bounding meridians; the chord to it
    is at least the point's distance to that plane (z, or the meridian
    plane). Otherwise (few sites near, a point outside the grid, a dense
    block) the tree answers.
    """

    def __init__(self, lon: np.ndarray, lat: np.ndarray, rows: int, cols: int):
        self.lat0, self.lon0 = float(lat.min()), float(lon.min())
        self.dlat = (float(lat.max()) - self.lat0) / rows
        self.dlon = (float(lon.max()) - self.lon0) / cols
        self.rows, self.cols = rows, cols
        row = np.minimum(((lat - self.lat0) / self.dlat).astype("int64"), rows - 1)
        col = np.minimum(((lon - self.lon0) / self.dlon).astype("int64"), cols - 1)
        cell = row * cols + col
        #: Tree positions, cell by cell; a row of cells is one run of them.
        self.positions = np.argsort(cell, kind="stable").astype("int32")
        starts = np.searchsorted(cell[self.positions], np.arange(rows * cols + 1))
        self.starts = array.array("l", starts.tolist())  # plain ints, 8 bytes each
        self.z_edges = [_z_of_latitude(self.lat0 + r * self.dlat) for r in range(rows + 1)]
        self.lon_edges = [math.radians(self.lon0 + c * self.dlon) for c in range(cols + 1)]

    @classmethod
    def of(cls, lon: np.ndarray, lat: np.ndarray) -> _Grid | None:
        """A grid of the sites, cells about square on the ground, or None
        where the argument above needs more care than it is worth: sites
        on one line, or spread over more than half the globe's longitudes
        (a block's sides then need no wrap-around)."""
        lat_span = float(lat.max() - lat.min())
        lon_span = float(lon.max() - lon.min())
        if not (lat_span > 0 and 0 < lon_span <= 180):
            return None
        shrink = max(math.cos(math.radians(float(lat.min() + lat.max()) / 2)), 0.1)
        cell = math.sqrt(SITES_PER_CELL * lat_span * lon_span * shrink / len(lat))
        rows = max(1, math.ceil(lat_span / cell))
        cols = max(1, math.ceil(lon_span * shrink / cell))
        return cls(lon, lat, rows, cols)

    def nearest(
        self,
        xyz: np.ndarray,
        origin: tuple[float, float, float],
        lon: float,
        lat: float,
        want: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``_Tree.nearest`` without a bound (``xyz``: the tree's positions),
        or None when the block around the point cannot prove it."""
        at_row, at_col = (lat - self.lat0) / self.dlat, (lon - self.lon0) / self.dlon
        if not (0 <= at_row < self.rows and 0 <= at_col < self.cols):  # NaN too
            return None
        row, col = int(at_row), int(at_col)
        first, last = max(row - 1, 0), min(row + 1, self.rows - 1)
        left, right = max(col - 1, 0), min(col + 1, self.cols - 1)
        starts, cols = self.starts, self.cols
        runs = [
            self.positions[starts[r * cols + left] : starts[r * cols + right + 1]]
            for r in range(first, last + 1)
        ]
        positions = np.concatenate(runs)
        if not want <= len(positions) <= GRID_BLOCK_LIMIT:
            return None
        # take() and an array origin: numpy's fancy indexing and its
        # conversion of a tuple cost more than the arithmetic on ~40 rows.
        offsets = xyz.take(positions, axis=0) - np.array(origin)
        squared = np.einsum("ij,ij->i", offsets, offsets)
        order = squared.argsort(kind="stable")[:want]
        chords = np.sqrt(squared[order])
        # How near a site outside the block can be: a side at the grid's
        # edge has no site beyond it (longitudes span at most 180 degrees).
        x, y, z = origin
        beyond = math.inf
        if first > 0:
            beyond = z - self.z_edges[first]
        if last < self.rows - 1:
            beyond = min(beyond, self.z_edges[last + 1] - z)
        if left > 0 or right < cols - 1:
            across = math.hypot(x, y)
            at = math.atan2(y, x)
            if left > 0:
                beyond = min(beyond, across * math.sin(at - self.lon_edges[left]))
            if right < cols - 1:
                beyond = min(beyond, across * math.sin(self.lon_edges[right + 1] - at))
        if chords[-1] > beyond - CHORD_MARGIN_M:
            return None
        return chords, positions[order]


class _Tree:
    """The sites of one group (all, a layer, a layer's kind) nearest-first
    from a point: a KD-tree with a ``_Grid`` beside it, or a plain sort for
    small groups."""

    def __init__(
        self,
        xyz: np.ndarray,
        start: int,
        lon: np.ndarray,
        lat: np.ndarray,
        rows: np.ndarray | None = None,
    ):
        self.start = start  # the base row of the first position here (rows are contiguous)
        #: The base row of each position, where they are not contiguous (a union).
        self.rows = rows
        self.n = len(xyz)
        self.small = self.n <= SMALL_GROUP or rows is not None
        self._xyz = xyz
        self._tree = None if self.small else _kd_tree(xyz)
        self._grid = None if self.small else _Grid.of(lon, lat)

    @classmethod
    def union(cls, trees: list[_Tree]) -> _Tree:
        """One sorted group of the sites of several small ones: a question
        about three small layers sorts their chords once and measures its
        candidates in one stream, so the k-th is proved once, not per layer."""
        rows = np.concatenate(
            [t.rows if t.rows is not None else t.start + np.arange(t.n) for t in trees]
        )
        xyz = np.concatenate([t._xyz for t in trees])
        return cls(xyz, 0, xyz[:, 0], xyz[:, 1], rows=rows)

    def base_rows(self, positions: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            return self.rows.take(positions)
        return positions + self.start if self.start else positions

    def nearest(
        self,
        origin: tuple[float, float, float],
        want: int,
        bound: float,
        lon: float,
        lat: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chord lengths and positions of the ``want`` sites nearest to
        ``origin`` (at ``lon``, ``lat``) within ``bound`` (all of them for a
        small group), nearest first; fewer than ``want`` when no more are
        within ``bound``."""
        if self._tree is None:
            offsets = self._xyz - np.array(origin)
            squared = np.einsum("ij,ij->i", offsets, offsets)
            if want < self.n:  # the nearest few, in order: no need to sort them all
                order = np.argpartition(squared, want - 1)[:want]
                order = order[np.argsort(squared.take(order), kind="stable")]
            else:
                order = np.argsort(squared, kind="stable")
            chords = np.sqrt(squared.take(order))
            if bound < math.inf:
                keep = chords <= bound
                chords, order = chords[keep], order[keep]
            return chords, order
        if self._grid is not None:
            found = self._grid.nearest(self._xyz, origin, lon, lat, want)
            if found is not None:
                chords, positions = found
                if bound < math.inf:
                    keep = chords <= bound
                    chords, positions = chords[keep], positions[keep]
                return chords, positions
        chords, positions = self._tree.query(origin, k=want, distance_upper_bound=bound)
        if want == 1:  # the tree answers k=1 with scalars
            chords, positions = np.atleast_1d(chords), np.atleast_1d(positions)
        if bound < math.inf or want > self.n:  # past the bound the tree pads with n
            keep = positions < self.n
            chords, positions = chords[keep], positions[keep]
        return chords, positions


#: Up to this many candidates are measured one call each, more in one vectorised call.
_FEW = 12
#: A tree key: (layer or None for every layer, kind or None for every kind).
_TreeKey = tuple[str | None, str | None]
#: A measured candidate: (geodesic metres, id, row, azimuth from the point).
_Found = tuple[float, str, int, float]


@dataclass(frozen=True)
class _Asked:
    """A question's filters as codes of one index's vocabulary, and the
    trees holding the sites of its layers and kinds."""

    layers: np.ndarray
    kinds: np.ndarray | None
    statuses: np.ndarray | None  # per status code, whether asked; None: any status
    #: ``statuses`` as the set of codes asked, for checking sites one by one.
    status_codes: frozenset[int] | None
    services: int
    eligible: int
    impossible: bool  # asks for a value no site has
    max_distance: float | None
    open_at_local: dt.datetime | None
    hours_known: bool
    trees: list[_Tree]
    #: Whether a site's status (and its being live) is all there is to check.
    status_only: bool
    #: Per opening-hours code, whether it passes (``hours_known``, ``open_at``).
    hours_pass: dict[int, bool] = field(default_factory=dict, compare=False)


class SiteIndex:
    """The facility sites of one or more layers, indexed for nearest queries.

    Columnar: positions, codes and masks in numpy arrays (~280 bytes a site
    with the trees), no feature object per site; the k results' features are
    fetched by id (from the store, through a bounded LRU, or from the
    features the index was built from). One KD-tree over every site answers
    the common question (all layers, any kind) with a single query; a tree
    per layer and per (layer, kind) answers narrower ones without wading
    through sites the question excludes.

    Updates (``applied``) never touch the trees: a changed or deleted site's
    base row is marked dead, and new versions go into a small delta that each
    query measures exactly by chord; ``merged`` folds the delta into new
    trees.
    """

    def __init__(
        self,
        features: Iterable[StoredFeature],
        versions: dict[str, int] | None = None,
        grouped_layers: Iterable[str] = ("green_channels",),
        district: DistrictOutline | None = None,
    ):
        given = list(features)
        vocabulary = _Vocabulary()
        grouped = frozenset(grouped_layers)
        self._setup(
            vocabulary.columns_of(given, grouped),
            vocabulary,
            grouped=grouped,
            district=district,
            versions=versions or {},
            marks={},
            given=given,
            store=None,
            layer_ids=None,
        )

    @classmethod
    def from_store(
        cls,
        store: Store,
        layer_ids: Iterable[str],
        *,
        grouped_layers: Iterable[str] = (),
        district: DistrictOutline | None = None,
        versions: dict[str, int] | None = None,
        marks: dict[str, int] | None = None,
    ) -> SiteIndex:
        """The sites of ``layer_ids`` read column by column from ``store``
        (streamed, no feature objects); results fetch their features by id."""
        layer_ids = list(layer_ids)
        grouped = frozenset(grouped_layers)
        batches = (
            (layer_id, rows)
            for layer_id in layer_ids
            for rows in store.site_rows(layer_id, names=layer_id in grouped)
        )
        return cls.from_rows(
            batches,
            store,
            layer_ids,
            grouped_layers=grouped,
            district=district,
            versions=versions,
            marks=marks,
        )

    @classmethod
    def from_rows(
        cls,
        batches: Iterable[tuple[str, SiteRows]],
        store: Store | None,
        layer_ids: Iterable[str],
        *,
        grouped_layers: Iterable[str] = (),
        district: DistrictOutline | None = None,
        versions: dict[str, int] | None = None,
        marks: dict[str, int] | None = None,
    ) -> SiteIndex:
        """An index of (layer id, batch of sites) pairs; ``store`` is where
        results fetch their features (``from_store``, benchmarks)."""
        vocabulary = _Vocabulary()
        grouped = frozenset(grouped_layers)
        parts = [
            vocabulary.columns([layer_id] * len(rows.ids), rows, grouped)
            for layer_id, rows in batches
        ]
        index = cls.__new__(cls)
        index._setup(
            _Columns.concat(parts),
            vocabulary,
            grouped=grouped,
            district=district,
            versions=versions or {},
            marks=marks or {},
            given=None,
            store=store,
            layer_ids=list(layer_ids),
        )
        _release_freed_memory()
        return index

    def _setup(
        self,
        base: _Columns,
        vocabulary: _Vocabulary,
        *,
        grouped: frozenset[str],
        district: DistrictOutline | None,
        versions: dict[str, int],
        marks: dict[str, int],
        given: list[StoredFeature] | None,
        store: Store | None,
        layer_ids: list[str] | None,
        fetched: SiteMemo | None = None,
        memo: SiteMemo | None = None,
    ) -> None:
        self.versions = dict(versions)
        #: Per layer, the highest audit sequence number the index reflects.
        self.marks = dict(marks)
        #: The district the sites serve (None: unknown, nothing said about it).
        self.district = district
        self._vocabulary = vocabulary
        self._grouped = grouped
        #: The layers whose changes ``applied`` takes (None: any layer).
        self._layer_ids = None if layer_ids is None else frozenset(layer_ids)
        self._store = store
        # Rows by layer, then kind (stable: the given order within), so each
        # layer's and each kind's positions are one slice of the ECEF array
        # that their KD-trees share instead of copying (~56 bytes a site).
        order = np.lexsort((base.kind, base.layer))
        if (order != np.arange(len(order))).any():
            base = base.take(order)
            if given is not None:
                given = [given[r] for r in order.tolist()]
        self._given = given  # the features of the base rows, when built from features
        self._base = base
        self._nb = len(base)
        # Rows sorted by (layer, id): a site's row found by bisection.
        self._order = np.lexsort((base.ids, base.layer)).astype("int32")
        self._delta = _Columns.empty()
        self._delta_features: list[StoredFeature] = []
        self._delta_rows: dict[tuple[str, str], int] = {}
        self._dead: frozenset[int] = frozenset()
        #: Rows whose feature was gone at fetch time (deleted since the build).
        self._vanished: set[int] = set()
        self._asked: dict[Any, _Asked] = {}
        self._fetched = fetched or SiteMemo(FEATURE_CACHE_SIZE)
        #: Derived per-site data that consumers (the API's serialized
        #: fragments) keep; shared with derived indexes, a changed site forgotten.
        self.memo = memo or SiteMemo(SITE_MEMO_SIZE)

        # Windows of one institution: per base row the row standing for its place.
        self._group = _places(base)
        members: dict[int, list[int]] = {}
        rows = np.flatnonzero(self._group != np.arange(self._nb))
        for row, group in zip(rows.tolist(), self._group[rows].tolist(), strict=True):
            members.setdefault(group, [group]).append(row)
        self._members = members
        #: Whether any place has several windows.
        self.grouping = bool(members)
        self._group_over: dict[int, int] = {}
        self._members_over: dict[int, list[int] | None] = {}

        layer_names = vocabulary.layers.values
        kind_names = vocabulary.kinds.values
        self._trees: dict[_TreeKey, _Tree] = {}
        self.layers: list[str] = []
        if self._nb:
            self._trees[(None, None)] = all_sites = _Tree(base.xyz, 0, base.lon, base.lat)
            layer_codes, layer_starts = _runs(base.layer)
            self.layers = sorted(layer_names[c] for c in layer_codes)
            for code, (start, stop) in zip(layer_codes, layer_starts, strict=True):
                layer_tree = (
                    all_sites  # an index of one layer shares its tree
                    if stop - start == self._nb
                    else _Tree(
                        base.xyz[start:stop], start, base.lon[start:stop], base.lat[start:stop]
                    )
                )
                self._trees[(layer_names[code], None)] = layer_tree
                kind_codes, kind_starts = _runs(base.kind[start:stop])
                for kind, (first, last) in zip(kind_codes, kind_starts, strict=True):
                    self._trees[(layer_names[code], kind_names[kind])] = (
                        layer_tree
                        if last - first == stop - start
                        else _Tree(
                            base.xyz[start + first : start + last],
                            start + first,
                            base.lon[start + first : start + last],
                            base.lat[start + first : start + last],
                        )
                    )

    # -- updates -----------------------------------------------------------------

    @property
    def delta_size(self) -> int:
        """Sites held outside the base trees (added or changed since the last merge)."""
        return len(self._delta)

    def applied(
        self,
        upserts: Sequence[StoredFeature],
        deleted: Sequence[tuple[str, str]],
        *,
        versions: dict[str, int],
        marks: dict[str, int],
    ) -> SiteIndex:
        """A new index with ``upserts`` (new or changed sites: an id already
        present is replaced) and without ``deleted`` ((layer, id) pairs). It
        shares the base arrays and trees with this one, which is left as it
        was for readers still holding it. Deletions are taken before upserts;
        of repeated upserts of one site the last wins; sites of layers not
        indexed are ignored. Replaying changes already reflected is harmless."""
        new = copy.copy(self)
        dead = set(self._dead)
        delta_rows = dict(self._delta_rows)
        touched: set[int] = set()  # institutions to group again
        nb = self._nb

        def drop(layer_id: str, feature_id: str) -> None:
            row = delta_rows.pop((layer_id, feature_id), None)
            if row is None:
                row = self._base_row(layer_id, feature_id)
            self._fetched.forget(layer_id, feature_id)
            self.memo.forget(layer_id, feature_id)
            if row is None or row in dead:
                return
            dead.add(row)
            inst = self._column("inst", row)
            if inst:
                touched.add(inst)

        indexed = self._layer_ids
        for layer_id, feature_id in deleted:
            if indexed is None or layer_id in indexed:
                drop(layer_id, feature_id)
        latest = {
            (f.layer_id, f.id): f for f in upserts if indexed is None or f.layer_id in indexed
        }  # the last of repeated upserts wins
        for layer_id, feature_id in latest:
            drop(layer_id, feature_id)
        added = list(latest.values())
        columns = self._vocabulary.columns_of(added, self._grouped)
        start = nb + len(self._delta)
        for offset, feature in enumerate(added):
            delta_rows[(feature.layer_id, feature.id)] = start + offset
        touched.update(int(h) for h in columns.inst[columns.inst != 0])
        new._delta = _Columns.concat([self._delta, columns]) if added else self._delta
        new._delta_features = [*self._delta_features, *added]
        new._delta_rows = delta_rows
        new._dead = frozenset(dead)
        new._vanished = set(self._vanished)
        new._asked = {}
        new._group_over = dict(self._group_over)
        new._members_over = dict(self._members_over)
        new.versions = dict(versions)
        new.marks = dict(marks)
        new.layers = sorted(
            set(self.layers) | {self._vocabulary.layers.values[c] for c in columns.layer.tolist()}
        )
        for inst in touched:
            new._regroup(inst, self)
        new.grouping = bool(new._members) or any(new._members_over.values())
        return new

    def _regroup(self, inst: int, before: SiteIndex) -> None:
        """Group the live sites of institution ``inst`` again (after ``applied``)."""
        nb = self._nb
        every = np.concatenate(
            [np.flatnonzero(self._base.inst == inst), np.flatnonzero(self._delta.inst == inst) + nb]
        )
        for row in every.tolist():  # the institution's old places are gone
            if row < before._nb + len(before._delta):
                self._members_over[before.group_of(row)] = None
        live = np.array([r for r in every.tolist() if r not in self._dead], dtype="int64")
        if not len(live):
            return
        columns = [self._columns_at(live, name) for name in ("lon", "lat", "xyz", "inst", "addr")]
        first = live[_window_components(*columns)]
        members: dict[int, list[int]] = defaultdict(list)
        for row, group in zip(live.tolist(), first.tolist(), strict=True):
            self._group_over[row] = group
            members[group].append(row)
        for group, rows in members.items():
            self._members_over[group] = sorted(rows) if len(rows) > 1 else None

    def merged(self) -> SiteIndex:
        """The same sites with the delta folded into fresh base trees, built
        from this index's own arrays (no store read)."""
        gone = self._dead | self._vanished
        base_live = (
            np.array([r for r in range(self._nb) if r not in gone], dtype="int64")
            if gone
            else np.arange(self._nb)
        )
        delta_live = [r for r in range(len(self._delta)) if r + self._nb not in gone]
        columns = _Columns.concat(
            [self._base.take(base_live), self._delta.take(np.array(delta_live, dtype="int64"))]
        )
        given = None
        if self._given is not None:
            given = [self._given[r] for r in base_live.tolist()]
            given += [self._delta_features[r] for r in delta_live]
        else:
            for r in delta_live:  # known now: no need to fetch them again
                feature = self._delta_features[r]
                self._fetched.put(feature.layer_id, feature.id, "feature", feature)
        index = SiteIndex.__new__(SiteIndex)
        index._setup(
            columns,
            self._vocabulary,
            grouped=self._grouped,
            district=self.district,
            versions=self.versions,
            marks=self.marks,
            given=given,
            store=self._store,
            layer_ids=None if self._layer_ids is None else sorted(self._layer_ids),
            fetched=self._fetched,
            memo=self.memo,
        )
        _release_freed_memory()
        return index

    # -- rows --------------------------------------------------------------------

    def _column(self, name: str, row: int) -> Any:
        if row < self._nb:
            return getattr(self._base, name)[row]
        return getattr(self._delta, name)[row - self._nb]

    def _columns_at(self, rows: np.ndarray, name: str) -> np.ndarray:
        base = rows < self._nb
        if base.all():
            return getattr(self._base, name)[rows]
        return np.concatenate(
            [
                getattr(self._base, name)[rows[base]],
                getattr(self._delta, name)[rows[~base] - self._nb],
            ]
        )

    def _base_row(self, layer_id: str, feature_id: str) -> int | None:
        code = self._vocabulary.layers.codes.get(layer_id)
        if code is None or not self._nb:
            return None
        layer, ids = self._base.layer, self._base.ids
        wanted = (code, feature_id.encode())
        at = bisect.bisect_left(self._order, wanted, key=lambda r: (int(layer[r]), ids[r]))
        if at < self._nb:
            row = int(self._order[at])
            if (int(layer[row]), ids[row]) == wanted:
                return row
        return None

    def row_of(self, layer_id: str, feature_id: str) -> int | None:
        """The live row of a site, or None."""
        row = self._delta_rows.get((layer_id, feature_id))
        if row is None:
            row = self._base_row(layer_id, feature_id)
        if row is None or row in self._dead or row in self._vanished:
            return None
        return row

    def rows(self) -> Iterator[int]:
        """The rows of the live sites."""
        gone = self._dead | self._vanished
        for row in range(self._nb + len(self._delta)):
            if row not in gone:
                yield row

    def __len__(self) -> int:
        return self._nb + len(self._delta) - len(self._dead)

    def layer_id(self, row: int) -> str:
        return self._vocabulary.layers.values[int(self._column("layer", row))]

    def feature_id(self, row: int) -> str:
        return bytes(self._column("ids", row)).decode()

    def kind(self, row: int) -> str:
        return self._vocabulary.kinds.values[int(self._column("kind", row))]

    def lonlat(self, row: int) -> tuple[float, float]:
        return float(self._column("lon", row)), float(self._column("lat", row))

    def opening_hours(self, row: int) -> str | None:
        """The site's opening-hours expression, or None."""
        code = int(self._column("hours", row))
        return self._vocabulary.hours.values[code] if code >= 0 else None

    def hours_values(self) -> set[str]:
        """Every distinct opening-hours expression of the live sites."""
        live = np.ones(self._nb + len(self._delta), dtype=bool)
        live[list(self._dead | self._vanished)] = False
        codes = set(np.unique(self._base.hours[live[: self._nb]]).tolist())
        codes |= set(self._delta.hours[live[self._nb :]].tolist())
        values = self._vocabulary.hours.values
        return {values[c] for c in codes if c >= 0}

    def group_of(self, row: int) -> int:
        """The row standing for the site's place (itself unless it is a window)."""
        group = self._group_over.get(row)
        if group is None:
            group = int(self._group[row]) if row < self._nb else row
        return group

    def members(self, group: int) -> list[int] | None:
        """The rows of a place with several windows, or None."""
        if group in self._members_over:
            return self._members_over[group]
        return self._members.get(group)

    def kinds(self, layer_id: str) -> list[str]:
        return sorted(kind for layer, kind in self._trees if layer == layer_id and kind)

    # -- features ----------------------------------------------------------------

    def features_at(self, rows: Iterable[int]) -> dict[int, StoredFeature]:
        """The features of ``rows``; a row whose feature is gone from the store
        (deleted since the index was built) is left out and marked vanished."""
        found: dict[int, StoredFeature] = {}
        missing: dict[str, dict[str, int]] = {}
        nb, given = self._nb, self._given
        # The base columns read inline (not layer_id()/feature_id()): k rows a query.
        layer_names, layer_codes, ids = (
            self._vocabulary.layers.values,
            self._base.layer,
            self._base.ids,
        )
        for row in rows:
            if row >= nb:
                found[row] = self._delta_features[row - nb]
            elif given is not None:
                found[row] = given[row]
            else:
                layer_id, feature_id = layer_names[layer_codes[row]], ids[row].decode()
                feature = self._fetched.get(layer_id, feature_id, "feature")
                if feature is None:
                    missing.setdefault(layer_id, {})[feature_id] = row
                else:
                    found[row] = feature
        if missing and _MEMORY_ONLY.get():
            raise NotInMemory(f"{sum(map(len, missing.values()))} sites to read from the store")
        for layer_id, wanted in missing.items():
            assert self._store is not None
            fetched = self._store.get_many(layer_id, list(wanted))
            for feature_id, row in wanted.items():
                feature = fetched.get(feature_id)
                if feature is None:
                    self._vanished.add(row)
                else:
                    self._fetched.put(layer_id, feature_id, "feature", feature)
                    found[row] = feature
        return found

    @property
    def features(self) -> list[StoredFeature]:
        """Every live site as a feature, in row order: fetched, so for small
        indexes, tests and exports, never on a query's path."""
        rows = list(self.rows())
        found = self.features_at(rows)
        return [found[row] for row in rows if row in found]

    # -- hours -------------------------------------------------------------------

    def open_state(self, row: int, when: dt.datetime) -> OpenState:
        """Open, closed or unknown at ``when`` (aware), by the site's hours."""
        return self._open_state_local(row, when.astimezone(LOCAL_TIME).replace(tzinfo=None))

    def _parsed_hours(self, row: int) -> Any:
        """The site's parsed opening hours, or False when unknown or unreadable."""
        return self._vocabulary.parsed_hours(int(self._column("hours", row)))

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

    def _hours_state(self, code: int, local: dt.datetime) -> OpenState:
        # Opening hours are written to the minute, so a state holds for its
        # whole minute: remembered per (hours, minute), as a district's few
        # dozen hours are asked again and again within one.
        minute = local.replace(second=0, microsecond=0)
        states = self._vocabulary.states
        found = states.get((code, minute))
        if found is not None:
            return found
        parsed = self._vocabulary.parsed_hours(code)
        if parsed is False:
            return OpenState.unknown
        state = parsed.state(minute)[0]
        if state == opening_hours.State.OPEN:
            found = OpenState.open
        elif state == opening_hours.State.CLOSED:
            found = OpenState.closed
        else:
            found = OpenState.unknown
        if len(states) >= 4096:
            states.clear()
        states[(code, minute)] = found
        return found

    def _open_state_local(self, row: int, local: dt.datetime) -> OpenState:
        return self._hours_state(int(self._column("hours", row)), local)

    # -- filters -----------------------------------------------------------------

    def asked(self, layers: Iterable[str] | None, filters: NearestFilters) -> _Asked:
        """``filters`` (and ``layers``, default every layer) in this index's
        codes; remembered, as residents ask the same few questions."""
        key = filters if layers is None else (tuple(layers), filters)
        asked = self._asked.get(key)
        if asked is None:
            if len(self._asked) >= 256:
                self._asked.clear()
            asked = self._asked[key] = self._asked_now(None if layers is None else key[0], filters)
        return asked

    def _asked_now(self, layers: Iterable[str] | None, filters: NearestFilters) -> _Asked:
        vocabulary = self._vocabulary
        known = vocabulary.layers.codes
        wanted = self.layers if layers is None else [x for x in layers if x in known]
        kinds = None
        if filters.kinds is not None:
            kinds = np.array(
                [vocabulary.kinds.codes[k] for k in filters.kinds if k in vocabulary.kinds.codes],
                dtype="int16",
            )
        statuses = status_codes = None
        if filters.statuses:
            # Every code this index holds is below the table's length now:
            # the shared vocabulary only grows.
            statuses = np.array(
                [value in filters.statuses for value in vocabulary.statuses.values], dtype=bool
            )
            status_codes = frozenset(np.flatnonzero(statuses).tolist())
        services = vocabulary.services.wanted(filters.services)
        eligible = vocabulary.eligible.wanted([filters.eligible]) if filters.eligible else 0
        return _Asked(
            layers=np.array([known[x] for x in wanted if x in known], dtype="int16"),
            kinds=kinds,
            statuses=statuses,
            status_codes=status_codes,
            services=services or 0,
            eligible=eligible or 0,
            impossible=services is None or eligible is None,
            max_distance=filters.max_distance,
            open_at_local=filters.open_at_local,
            hours_known=filters.hours_known,
            trees=self._searched(self.trees_for(layers, filters.kinds)),
            status_only=not (
                services is None
                or eligible is None
                or services
                or eligible
                or filters.open_at_local is not None
                or filters.hours_known
            ),
        )

    def _passing(
        self, columns: _Columns, local: np.ndarray, offset: int, asked: _Asked
    ) -> np.ndarray:
        """Which of ``local`` (rows of ``columns``, index rows from ``offset``)
        pass the filters other than layer, kind and distance."""
        if asked.impossible:
            return np.zeros(len(local), dtype=bool)
        if asked.statuses is not None:
            keep = asked.statuses[columns.status[local]]
        else:
            keep = np.ones(len(local), dtype=bool)
        if asked.services:
            keep &= (columns.services[local] & np.uint64(asked.services)) == np.uint64(
                asked.services
            )
        if asked.eligible:
            keep &= (columns.eligible[local] & np.uint64(asked.eligible)) != 0
        if asked.hours_known or asked.open_at_local is not None:
            codes = columns.hours[local]
            good = [c for c in np.unique(codes[keep]).tolist() if self._hours_pass(c, asked)]
            keep &= np.isin(codes, good)
        dead, vanished = self._dead, self._vanished
        if dead or vanished:
            keep &= np.fromiter(
                (r + offset not in dead and r + offset not in vanished for r in local.tolist()),
                bool,
                len(local),
            )
        return keep

    def _hours_pass(self, code: int, asked: _Asked) -> bool:
        """Whether opening-hours code ``code`` passes ``asked`` (remembered per question)."""
        ok = asked.hours_pass.get(code)
        if ok is None:
            if asked.open_at_local is not None:
                ok = self._hours_state(code, asked.open_at_local) == OpenState.open
            else:
                ok = self._vocabulary.parsed_hours(code) is not False
            asked.hours_pass[code] = ok
        return ok

    def _admits(self, row: int, status: int, asked: _Asked) -> bool:
        """``_passing`` for one base row (whose status code is given): for
        the few candidates of a common query, plain Python beats a dozen
        numpy calls on arrays of five."""
        if asked.impossible:
            return False
        if asked.status_codes is not None and status not in asked.status_codes:
            return False
        base = self._base
        if asked.services and int(base.services[row]) & asked.services != asked.services:
            return False
        if asked.eligible and not int(base.eligible[row]) & asked.eligible:
            return False
        if (asked.hours_known or asked.open_at_local is not None) and not self._hours_pass(
            int(base.hours[row]), asked
        ):
            return False
        return row not in self._dead and row not in self._vanished

    def passes(self, row: int, filters: NearestFilters) -> bool:
        """Whether a site passes the filters other than layer, kind and distance
        (those are answered by the choice of tree and by the search)."""
        asked = self.asked(None, filters)
        columns, local, offset = (
            (self._base, row, 0) if row < self._nb else (self._delta, row - self._nb, self._nb)
        )
        return bool(self._passing(columns, np.array([local]), offset, asked)[0])

    # -- search ------------------------------------------------------------------

    @staticmethod
    def _searched(trees: list[_Tree]) -> list[_Tree]:
        """The trees a question searches: several small ones as one (a
        district's layers), large ones each with its own KD-tree."""
        if len(trees) > 1 and all(t.small for t in trees) and sum(t.n for t in trees) <= UNION_MAX:
            return [_Tree.union(trees)]
        return trees

    def trees_for(self, layers: Iterable[str] | None, kinds: Iterable[str] | None) -> list[_Tree]:
        """The fewest trees holding exactly the base sites of ``layers`` × ``kinds``."""
        asked = None if layers is None else set(layers)
        wanted = self.layers if asked is None else [x for x in self.layers if x in asked]
        if kinds is None:
            keys: list[_TreeKey] = (
                [(None, None)] if wanted == self.layers else [(layer, None) for layer in wanted]
            )
        else:
            keys = [(layer, kind) for layer in wanted for kind in sorted(kinds)]
        return [self._trees[key] for key in keys if key in self._trees]

    def _measure(
        self,
        columns: _Columns,
        local: np.ndarray,
        offset: int,
        lon: float,
        lat: float,
        k: int,
        asked: _Asked,
    ) -> list[_Found]:
        """The ``k`` nearest passing sites among ``local``, measured on the
        ellipsoid, nearest first, ties by id."""
        chosen = local[self._passing(columns, local, offset, asked)]
        count = len(chosen)
        if count <= _FEW:  # one call per site beats numpy's fixed costs
            limit = math.inf if asked.max_distance is None else asked.max_distance
            inv, found = GEOD.inv, []
            for row, x, y, site_id in zip(
                chosen.tolist(),
                columns.lon[chosen].tolist(),
                columns.lat[chosen].tolist(),
                columns.ids[chosen].tolist(),
                strict=True,
            ):
                azimuth, _back, distance = inv(lon, lat, x, y)
                if distance <= limit:
                    found.append((distance, site_id.decode(), row + offset, azimuth))
            found.sort()
            return found[:k]
        azimuths, _back, metres = GEOD.inv(
            np.full(count, lon), np.full(count, lat), columns.lon[chosen], columns.lat[chosen]
        )
        keep = np.ones(count, dtype=bool)
        if asked.max_distance is not None:
            keep &= metres <= asked.max_distance
        if keep.sum() > k:  # only those that can make the first k (ties included)
            keep &= metres <= np.partition(metres[keep], k - 1)[k - 1]
        chosen, metres, azimuths = chosen[keep], metres[keep], azimuths[keep]
        found = sorted(
            zip(
                metres.tolist(),
                [bytes(i).decode() for i in columns.ids[chosen]],
                (chosen + offset).tolist(),
                azimuths.tolist(),
                strict=True,
            )
        )
        return found[:k]

    def _measure_few(
        self,
        chords: np.ndarray,
        rows: np.ndarray,
        lon: float,
        lat: float,
        k: int,
        asked: _Asked,
    ) -> tuple[list[_Found], bool]:
        """``_measure`` of a few base rows given nearest first by chord, one
        geodesic call each (numpy's fixed costs outweigh the work on arrays
        this small), and whether they prove the answer: measuring stops as
        soon as the k-th best is shorter than the next chord, since neither
        that site nor any further one can be nearer than its chord (the
        margin keeps sites tied with the k-th measured, to be ranked by id)."""
        limit = math.inf if asked.max_distance is None else asked.max_distance
        base, inv = self._base, GEOD.inv
        # The common question asks for a status and nothing else: checked inline.
        statuses = asked.status_codes if asked.status_only else None
        check = not asked.status_only or self._dead or self._vanished
        found: list[_Found] = []
        for chord, row, status, x, y in zip(
            chords.tolist(),
            rows.tolist(),
            base.status.take(rows).tolist(),  # take(): cheaper than [] on a few rows
            base.lon.take(rows).tolist(),
            base.lat.take(rows).tolist(),
            strict=True,
        ):
            if len(found) >= k and found[k - 1][0] < chord - CHORD_MARGIN_M:
                return found[:k], True
            if statuses is not None and status not in statuses:
                continue
            if not check or self._admits(row, status, asked):
                azimuth, _back, distance = inv(lon, lat, x, y)
                if distance <= limit:
                    bisect.insort(found, (distance, base.ids[row].decode(), row, azimuth))
        return found[:k], False

    def search(
        self,
        tree: _Tree,
        origin: tuple[float, float, float],
        lon: float,
        lat: float,
        k: int,
        asked: _Asked,
    ) -> list[_Found]:
        """Exact k nearest passing sites in one tree.

        Candidates come from the tree in increasing chord length, a batch at
        a time, and are measured on the ellipsoid; the search stops once the
        k-th best geodesic is shorter than the last chord of the batch, since
        no site further down can be nearer than its chord.
        """
        n = tree.n
        limit = asked.max_distance
        bound = math.inf if limit is None else limit + CHORD_MARGIN_M
        # One more than asked usually proves the k-th.
        want = min(n, k + 1)
        while True:
            chords, positions = tree.nearest(origin, want, bound, lon, lat)
            rows = tree.base_rows(positions)
            if len(rows) <= _FEW:
                best, proven = self._measure_few(chords, rows, lon, lat, k, asked)
                if proven:
                    return best
            else:
                best = self._measure(self._base, rows, 0, lon, lat, k, asked)
            if len(chords) < want or want >= n:  # every site within the bound seen
                return best
            # The margin covers rounding in the ECEF chord (~1e-8 m), so sites
            # tied with the k-th are still measured and ranked by id.
            if len(best) == k and best[-1][0] < chords[-1] - CHORD_MARGIN_M:
                return best
            want = min(n, want * 4)

    def search_all(
        self,
        trees: list[_Tree],
        origin: tuple[float, float, float],
        lon: float,
        lat: float,
        k: int,
        asked: _Asked,
    ) -> list[_Found]:
        """The exact k nearest passing sites of ``trees`` and of the delta."""
        if len(trees) == 1:
            found = self.search(trees[0], origin, lon, lat, k, asked)
        else:
            found = heapq.nsmallest(
                k, (c for tree in trees for c in self.search(tree, origin, lon, lat, k, asked))
            )
        if not len(self._delta):
            return found
        delta = self._delta
        local = np.flatnonzero(np.isin(delta.layer, asked.layers))
        if asked.kinds is not None:
            local = local[np.isin(delta.kind[local], asked.kinds)]
        # A delta site can enter the first k only if its chord (never longer
        # than its geodesic) is within the k-th distance found so far.
        reach = found[-1][0] if len(found) == k else math.inf
        if asked.max_distance is not None:
            reach = min(reach, asked.max_distance)
        if reach < math.inf:
            chords = np.sqrt(((delta.xyz[local] - origin) ** 2).sum(axis=1))
            local = local[chords <= reach + CHORD_MARGIN_M]
        extra = self._measure(delta, local, self._nb, lon, lat, k, asked)
        return heapq.nsmallest(k, [*found, *extra]) if extra else found

    def windows(self, rows: list[int], lon: float, lat: float, asked: _Asked) -> list[_Found]:
        """The windows of one institution that pass the filters, nearest first."""
        found = []
        for row in rows:
            if asked.kinds is not None and self._column("kind", row) not in asked.kinds:
                continue
            columns, local, offset = (
                (self._base, row, 0) if row < self._nb else (self._delta, row - self._nb, self._nb)
            )
            found += self._measure(columns, np.array([local]), offset, lon, lat, 1, asked)
        return sorted(found)

    def result(
        self,
        row: int,
        distance: float,
        azimuth: float,
        clock: Callable[[], dt.datetime],
        feature: StoredFeature,
    ) -> NearestResult:
        """A found site, with its open state at ``clock()`` (naive China time),
        asked only of a site that gives hours."""
        nb = self._nb  # the column read inline: this runs k times a query
        code = int(self._base.hours[row] if row < nb else self._delta.hours[row - nb])
        return NearestResult(
            feature=feature,
            distance_m=distance,
            bearing_deg=azimuth % 360.0,
            open_state=OpenState.unknown if code < 0 else self._hours_state(code, clock()),
            index=self,
            row=row,
        )


class _Clock:
    """The moment a query reports open states for, as naive China time:
    read once, and only when a site found gives opening hours."""

    __slots__ = ("_local", "_moment")

    def __init__(self, moment: dt.datetime | None):
        self._moment = moment
        self._local: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        if self._local is None:
            moment = self._moment or dt.datetime.now(LOCAL_TIME)
            self._local = moment.astimezone(LOCAL_TIME).replace(tzinfo=None)
        return self._local


#: The filters of a question that gives none (made once: a frozen dataclass
#: costs microseconds to build and to hash anew).
_ANY_SITE = NearestFilters()


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
    filters = filters or _ANY_SITE
    lon, lat = float(lon), float(lat)  # numpy scalars would slow every geodesic call
    origin = ecef_point(lon, lat)
    asked = index.asked(layers, filters)
    trees = asked.trees
    grouping = group_windows and index.grouping
    clock = _Clock(filters.open_at or now)
    while True:  # again when a site found was deleted since the index was built
        want = k
        while True:
            found = index.search_all(trees, origin, lon, lat, want, asked)
            if not grouping:
                chosen = found
                break
            # Sites nearest first: an institution's first window is its place.
            seen: set[int] = set()
            chosen = []
            for candidate in found:
                group = index.group_of(candidate[2])
                if group not in seen:
                    seen.add(group)
                    chosen.append(candidate)
            if len(chosen) >= k or len(found) < want:
                del chosen[k:]
                break
            want += k - len(chosen)  # windows took places: look further
        windows: dict[int, list[_Found]] = {}
        if grouping:
            for _d, _id, row, _az in chosen:
                rows = index.members(index.group_of(row))
                if rows:
                    windows[row] = index.windows(rows, lon, lat, asked)
        wanted = {row for _d, _id, row, _az in chosen}
        for found_windows in windows.values():
            wanted.update(w[2] for w in found_windows)
        features = index.features_at(wanted)
        if len(features) == len(wanted):
            break
    results = []
    for distance, _id, row, azimuth in chosen:
        result = index.result(row, distance, azimuth, clock, features[row])
        if row in windows:
            result.windows = [
                index.result(w_row, w_distance, w_azimuth, clock, features[w_row])
                for w_distance, _w_id, w_row, w_azimuth in windows[row]
            ]
        results.append(result)
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


class NotInMemory(Exception):
    """Raised under ``memory_only()`` where an answer would read the store."""


_MEMORY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("memory_only", default=False)


@contextlib.contextmanager
def memory_only() -> Iterator[None]:
    """Within: a search that would read a site's feature from the store raises
    ``NotInMemory`` instead. For answers made on an event loop, which must not
    wait on the store: they go to a thread when this is raised."""
    reset = _MEMORY_ONLY.set(True)
    try:
        yield
    finally:
        _MEMORY_ONLY.reset(reset)


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

    def current(self) -> SiteIndex | None:
        """The index, when it is known current without asking the store: the
        store's change token (a memory read) has not moved since it was
        checked. Otherwise None: then ``get``, in a thread."""
        current = self._current
        if current is None:
            return None
        index, known = current
        token = self.store.change_token()
        return index if token is not None and token == known else None

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
