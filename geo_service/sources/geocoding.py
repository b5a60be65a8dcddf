"""The offline geocoder of 张店区: address text to ranked positions, and back.

Built from the project's own gazetteer (``layers/gazetteer.csv``: places, and
roads with an approximate course), the town polygons, and every facility in
the store (its name and its address). It never calls an online service.

How a query is read:

1. ``cpca`` (a maintained parser of Chinese administrative names) strips the
   province/city/district prefix; an address in another district gets no
   candidate rather than a wrong one in this one.
2. Candidates, each with a match level and a confidence in 0..1:
   ``address`` (a stored facility has exactly this address), ``place`` (the
   text names a known place), ``intersection`` (X路与Y路), ``road`` (X路N号:
   the number is placed along the road by interpolating the house numbers of
   known addresses on it, or at the middle of the named half without them),
   ``town`` (only a town is recognised: its centre).
3. Ranked by confidence, nearly identical positions merged.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from shapely import wkt
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from geo_service.sources.crs import geodesic_distance
from geo_service.sources.towns import TownIndex

__all__ = [
    "LANDMARK_CATEGORIES",
    "Candidate",
    "Geocoder",
    "Landmark",
    "PlacedFeature",
    "gazetteer_landmarks",
    "load_gazetteer",
]


class PlacedFeature(Protocol):
    """What the geocoder reads of a stored town or site (the store's
    ``PlacedFeature`` is one; sources never import the store)."""

    id: str
    properties: dict[str, Any]
    geometry: BaseGeometry


DISTRICT_CODE = "370303"
#: Zhangdian's east-west roads split into 西/东 at the city's central north-south
#: axis, where their house numbers start (人民西路 runs west from 柳泉路).
AXIS_ROAD = "柳泉路"
#: Without known numbers on a road: odd and even numbers face each other, a
#: plot is ~20 m wide, so a number is ~10 m further from the start. An assumption.
METRES_PER_NUMBER = 10.0
_ROAD = r"[\u4e00-\u9fffA-Za-z0-9]{1,12}?(?:大道|大街|路|街|巷|线)"
_ROAD_NUMBER = re.compile(rf"({_ROAD})(\d+)号")
_CROSSING = re.compile(rf"({_ROAD})(?:与|和|、|-|—)({_ROAD})(?:交叉口|交汇处|路口|口)?")


def _clean(text: str) -> str:
    """Width-normalised, without spaces or bracketed notes."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[(（][^)）]*[)）]", "", text)
    return re.sub(r"\s+", "", text)


@dataclass(frozen=True)
class Candidate:
    lon: float
    lat: float
    level: str  # address, place, intersection, road, town
    confidence: float
    matched: str
    source: str
    town_code: str | None = None


@dataclass
class _Place:
    name: str
    key: str  # cleaned name
    lon: float
    lat: float
    source: str
    address: str = ""  # when the position is at this street address


@dataclass
class _Road:
    name: str
    keys: list[str]  # cleaned names and aliases
    line: LineString
    orientation: str  # E-W or N-S
    #: name as written (人民西路) -> (house number, distance along the road) of
    #: known addresses: each named part numbers its houses on its own.
    numbers: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def load_gazetteer(path: Path) -> tuple[list[_Place], list[_Road]]:
    places, roads = [], []
    with path.open(encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(lines):
            source = f"gazetteer: {row['source']}"
            if row["kind"] in {"place", "address"}:
                places.append(
                    _Place(
                        row["name"],
                        # a bare house number is an address, never a place name
                        _clean(row["name"]) if row["kind"] == "place" else "",
                        float(row["lon"]),
                        float(row["lat"]),
                        source,
                        row.get("address") or "",
                    )
                )
            elif row["kind"] == "road":
                names = [row["name"], *[a for a in row["aliases"].split("|") if a]]
                roads.append(
                    _Road(
                        row["name"],
                        [_clean(n) for n in names],
                        wkt.loads(row["wkt"]),
                        row["category"],
                    )
                )
    return places, roads


class Geocoder:
    def __init__(
        self,
        places: list[_Place],
        roads: list[_Road],
        towns: Iterable[PlacedFeature],
        facilities: Iterable[PlacedFeature] = (),
    ):
        self.places = list(places)
        self.roads = [_Road(r.name, r.keys, r.line, r.orientation) for r in roads]
        towns = list(towns)
        self.towns = TownIndex((t.id, t.geometry) for t in towns)
        self.town_places = [
            (t.id, _clean(str(t.properties.get("name") or "")), t.geometry.representative_point())
            for t in towns
        ]
        self.addresses: dict[str, _Place] = {}
        for place in self.places:
            if place.address:
                self._add_address(
                    place.address, place.name, Point(place.lon, place.lat), place.source
                )
        for site in facilities:
            name = str(site.properties.get("name") or "")
            source = f"{site.layer_id}/{site.id}"
            if len(_clean(name)) >= 2:
                self.places.append(
                    _Place(name, _clean(name), site.geometry.x, site.geometry.y, source)
                )
            address = site.properties.get("address")
            if address and site.properties.get("position_quality") in {"surveyed", "address"}:
                self._add_address(address, address, site.geometry, source)

    @classmethod
    def _address_key(cls, text: str) -> str:
        key = cls._strip_admin(text)
        # "四宝山街道政通路165号": the street address is what follows the town
        return re.sub(r"^[\u4e00-\u9fff]{2,4}?(街道|镇)(?=[\u4e00-\u9fff]+(路|街|道))", "", key)

    def _add_address(self, address: str, name: str, point, source: str) -> None:
        key = self._address_key(address)
        self.addresses[key] = _Place(name, key, point.x, point.y, source, address)
        self._learn_number(key, point)

    # -- parsing ------------------------------------------------------------------

    @staticmethod
    def _strip_admin(text: str) -> str:
        text = _clean(text)
        return re.sub(r"^(山东省)?(淄博市)?(张店区)?", "", text)

    @staticmethod
    def _other_district(text: str) -> str | None:
        """The district an address names, when it is not 张店区 (via cpca)."""
        import cpca

        frame = cpca.transform([text])
        code = frame.loc[0, "adcode"]
        if (
            isinstance(code, str)
            and len(code) == 6
            and not code.endswith("00")
            and code != DISTRICT_CODE
        ):
            return str(frame.loc[0, "区"])
        return None

    def _find_road(self, name: str) -> tuple[_Road, str] | None:
        key = _clean(name)
        for road in self.roads:
            if key in road.keys:
                return road, key
        return None

    def _learn_number(self, address_key: str, point) -> None:
        match = _ROAD_NUMBER.search(address_key)
        if not match:
            return
        found = self._find_road(match.group(1))
        if found:
            road, key = found
            along = road.line.project(Point(point.x, point.y))
            road.numbers.setdefault(key, []).append((int(match.group(2)), along))

    # -- candidates -----------------------------------------------------------------

    def _road_part(self, road: _Road, key: str) -> tuple[float, float]:
        """Where along the road (from, to) a 西/东 (or 南/北) name points; all of it otherwise."""
        length = road.line.length
        start, end = 0.0, length
        if road.orientation == "E-W":
            split = self._axis_along(road)
            split = length / 2 if split is None else split
            if "西" in key and "西" not in road.keys[0]:
                end = split
            elif "东" in key and "东" not in road.keys[0]:
                start = split
        elif road.orientation == "N-S":
            if key.startswith("南") or "南" in key[len(road.keys[0]) - 1 :]:
                end = length / 2
            elif key.startswith("北"):
                start = length / 2
        return start, end

    def _axis_along(self, road: _Road) -> float | None:
        """Where along an east-west road the central axis crosses it."""
        axis = self._find_road(AXIS_ROAD)
        if axis is None or road.orientation != "E-W":
            return None
        x = axis[0].line.interpolate(0.5, normalized=True).x
        return road.line.project(Point(x, road.line.coords[0][1]))

    def _house_number(self, road: _Road, key: str, number: int) -> tuple[Point, float, str]:
        known = sorted(set(road.numbers.get(key, [])))
        start, end = self._road_part(road, key)
        if len({n for n, _ in known}) >= 2:
            numbers = np.array([n for n, _ in known], dtype=float)
            along = np.array([d for _, d in known])
            slope, intercept = np.polyfit(numbers, along, 1)
            distance = float(np.clip(intercept + slope * number, start, end))
            return (
                road.line.interpolate(distance),
                0.6,
                f"{len(known)} known house numbers on {road.name}",
            )
        if known and abs(known[0][0] - number) <= 20:
            return road.line.interpolate(known[0][1]), 0.45, f"near {road.name} {known[0][0]}号"
        axis = self._axis_along(road)
        west, east = (
            "西" in key and "西" not in road.keys[0],
            "东" in key and "东" not in road.keys[0],
        )
        if axis is not None and (west or east):
            lat = road.line.coords[0][1]
            step = number * METRES_PER_NUMBER / (111_320.0 * np.cos(np.radians(lat)))
            along = float(np.clip(axis - step if west else axis + step, start, end))
            return (
                road.line.interpolate(along),
                0.35,
                f"{number}号 counted from {AXIS_ROAD} at ~{METRES_PER_NUMBER:.0f} m per number",
            )
        return (
            road.line.interpolate((start + end) / 2),
            0.3,
            f"middle of {key} (no house numbers known)",
        )

    def geocode(self, query: str, limit: int = 5) -> list[Candidate]:
        text = self._strip_admin(query)
        if not text or self._other_district(query):
            return []
        found: list[Candidate] = []
        for code, name, point in self.town_places:
            if text in {name, re.sub(r"(街道|镇)$", "", name)}:  # just a town's name
                return [self._candidate(point.x, point.y, "town", 0.5, name, f"towns/{code}")]
        known = self.addresses.get(self._address_key(query))
        if known:
            found.append(
                self._candidate(known.lon, known.lat, "address", 0.95, known.name, known.source)
            )
        whole = _clean(query)  # "淄博市中心医院" is a name, not 淄博市 + 中心医院
        for place in self.places:
            if len(place.key) < 2:
                continue
            if place.key in text or place.key in whole:
                share = min(len(place.key) / max(len(text), 1), 1.0)
                confidence = round(0.5 + 0.4 * share, 3)
            elif len(text) >= 3 and text in place.key:  # part of a longer name
                confidence = round(0.3 + 0.4 * len(text) / len(place.key), 3)
            else:
                continue
            found.append(
                self._candidate(place.lon, place.lat, "place", confidence, place.name, place.source)
            )
        crossing = _CROSSING.search(text)
        if crossing:
            first, second = self._find_road(crossing.group(1)), self._find_road(crossing.group(2))
            if first and second:
                meet = first[0].line.intersection(second[0].line)
                if not meet.is_empty and meet.geom_type == "Point":
                    found.append(
                        self._candidate(
                            meet.x,
                            meet.y,
                            "intersection",
                            0.6,
                            f"{crossing.group(1)}与{crossing.group(2)}",
                            "gazetteer roads",
                        )
                    )
        for match in _ROAD_NUMBER.finditer(text):
            road = self._find_road(match.group(1))
            if road:
                point, confidence, how = self._house_number(road[0], road[1], int(match.group(2)))
                found.append(
                    self._candidate(
                        point.x,
                        point.y,
                        "road",
                        confidence,
                        f"{match.group(1)}{match.group(2)}号",
                        f"gazetteer road; {how}",
                    )
                )
        if not found:
            for code, name, point in self.town_places:
                short = re.sub(r"(街道|镇)$", "", name)
                # A two-character short name ("公园") is too common a word to trust.
                if name and (name in text or (len(short) >= 3 and short in text)):
                    found.append(
                        self._candidate(point.x, point.y, "town", 0.2, name, f"towns/{code}")
                    )
        return self._rank(found, limit)

    def _candidate(self, lon, lat, level, confidence, matched, source) -> Candidate:
        return Candidate(
            float(lon), float(lat), level, confidence, matched, source, self.towns.locate(lon, lat)
        )

    @staticmethod
    def _rank(found: list[Candidate], limit: int) -> list[Candidate]:
        ranked: list[Candidate] = []
        for candidate in sorted(found, key=lambda c: (-c.confidence, c.matched)):
            if all(
                geodesic_distance(candidate.lon, candidate.lat, kept.lon, kept.lat) > 50
                for kept in ranked
            ):
                ranked.append(candidate)
        return ranked[:limit]

    def reverse(self, lon: float, lat: float) -> dict:
        """The town a point lies in and the nearest named place."""
        code = self.towns.locate(lon, lat)
        town = next(((c, n) for c, n, _ in self.town_places if c == code), None)
        nearest = None
        if self.places:
            lons = np.array([p.lon for p in self.places])
            lats = np.array([p.lat for p in self.places])
            distances = geodesic_distance(
                np.full(len(lons), lon), np.full(len(lats), lat), lons, lats
            )
            best = int(np.argmin(distances))
            place = self.places[best]
            nearest = {
                "name": place.name,
                "distance_m": round(float(distances[best]), 1),
                "lon": place.lon,
                "lat": place.lat,
                "source": place.source,
            }
        return {
            "town": {"code": code, "name": town[1] if town else None} if code else None,
            "nearest_place": nearest,
        }


#: Gazetteer places a map may label as landmarks: each row of these
#: categories is the position of the named place itself. Left out: town
#: centres and seats (derived by the compiler, or a bank standing in for the
#: office), hospitals, the city government and the service centres (bus stops
#: named after them), and house numbers.
LANDMARK_CATEGORIES = frozenset(
    {
        "railway_station",
        "bus_station",
        "park",
        "museum",
        "government_service_centre",
        "red_education_base",
        "theme_park_civic",
    }
)


@dataclass(frozen=True)
class Landmark:
    name: str
    lon: float  # WGS-84
    lat: float
    category: str


def gazetteer_landmarks(path: Path) -> list[Landmark]:
    """The gazetteer's real named places to label a map with when it has no
    tiles and no context layers: rows of ``LANDMARK_CATEGORIES`` at the place
    itself (no proxy, nothing derived) of medium confidence or better, one
    per name (the first, best-sourced row).

    The gazetteer's roads are never drawn: each is a straight segment spanning
    the addresses that name the road (``extent DERIVED``), good for placing a
    house number but not a line a resident could follow."""
    landmarks: dict[str, Landmark] = {}
    with path.open(encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(lines):
            if (
                row["kind"] != "place"
                or row["category"] not in LANDMARK_CATEGORIES
                or "proxy" in row["source"]
                or "DERIVED" in row["source"]
                or row["confidence"].strip().startswith("low")
                or "low (coords" in row["confidence"]  # the address is known, not the point
                # A bus stop named after the place stands in for it, unless
                # the place is the bus station itself.
                or ("POI_BUS" in row["source"] and row["category"] != "bus_station")
                or row["name"] in landmarks
            ):
                continue
            landmarks[row["name"]] = Landmark(
                row["name"], float(row["lon"]), float(row["lat"]), row["category"]
            )
    return list(landmarks.values())
