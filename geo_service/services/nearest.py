"""Nearest sites for a resident: the question read from text parameters, the
answer as GeoJSON bytes. The same call answers ``GET /nearest``, the CLI and
the printed sheet."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any

import orjson

from geo_service.analysis.nearest import (
    LOCAL_TIME,
    WALKING_LIMIT_M,
    NearestFilters,
    NearestResult,
    NotInMemory,
    OpenState,
    SiteIndex,
    SiteIndexCache,
    memory_only,
    nearest_sites,
    opening_phrase,
    walking_assumption,
)
from geo_service.errors import InvalidParameter
from geo_service.services.geocode import candidate_feature, geocode_address
from geo_service.services.queries import list_param, parse_lonlat, parse_number, reject_unknown
from geo_service.sources.catalog import Catalog
from geo_service.sources.crs import CoordinateSystem, convert
from geo_service.sources.geocoding import Geocoder

__all__ = [
    "DEFAULT_LAYERS",
    "LIST_PARAMETERS",
    "MAX_ADDRESS",
    "MAX_DISTANCE_M",
    "MAX_K",
    "NEAREST_PARAMETERS",
    "NearestQuery",
    "geocoded_params",
    "nearest_geojson",
    "nearest_geojson_in_memory",
    "parse_nearest_query",
]

MAX_K = 100
#: The layers a resident means by "nearest service" when none are named: where
#: to get help, priority windows and medical support. Memorials and defence-
#: education sites are places to visit, searched only when ``layers=`` asks.
DEFAULT_LAYERS = ("stations", "green_channels", "medical")
#: Beyond 1,000 km a "nearest service" answer is no longer a resident's question.
MAX_DISTANCE_M = 1_000_000.0
#: Longest address accepted (the geocoder's own limit).
MAX_ADDRESS = 200
#: Every parameter of the question; the lists may be repeated (``kind=a&kind=b``).
NEAREST_PARAMETERS = (
    "lon",
    "lat",
    "k",
    "layers",
    "kind",
    "services",
    "eligible",
    "open_now",
    "open_at",
    "status",
    "max_distance",
    "crs",
    "address",
)
LIST_PARAMETERS = frozenset({"layers", "kind", "services", "status"})


@dataclass(frozen=True)
class NearestQuery:
    lon: float  # WGS-84
    lat: float
    k: int
    layers: list[str]
    filters: NearestFilters
    crs: CoordinateSystem
    given: dict[str, Any]  # the parameters as understood, echoed back


def _parse_open_at(raw: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(raw.strip().replace(" ", "T"))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=LOCAL_TIME)
        # In local time now: opening hours are read in Asia/Shanghai, and a
        # moment at the edge of the calendar (year 1 or 9999) must fail here,
        # not deep in the opening-hours evaluation.
        return moment.astimezone(LOCAL_TIME)
    except (ValueError, OverflowError):
        raise InvalidParameter(
            "open_at", f"{raw!r} is not an ISO date-time such as 2026-12-01T09:30"
        ) from None


def parse_nearest_query(params: dict[str, str], catalog: Catalog) -> NearestQuery:
    """Check every parameter; raise ``InvalidParameter`` naming the first bad one."""
    reject_unknown(params, NEAREST_PARAMETERS)
    crs = CoordinateSystem.parse(params.get("crs"), "crs")
    lon, lat = parse_lonlat(params)
    if crs == CoordinateSystem.wgs84:  # most questions: nothing to convert
        wgs_lon, wgs_lat = lon, lat
    else:
        wgs_lon, wgs_lat = convert(lon, lat, crs, CoordinateSystem.wgs84)

    raw_k = params.get("k", "5")
    if not re.fullmatch(r"[0-9]{1,4}", raw_k.strip()) or not 1 <= int(raw_k) <= MAX_K:
        raise InvalidParameter("k", f"must be a whole number from 1 to {MAX_K}, got {raw_k!r}")
    k = int(raw_k)

    facility = {layer.id: layer for layer in catalog.facility_layers}
    layers = list_param(params.get("layers"), "layers") or (
        [layer_id for layer_id in DEFAULT_LAYERS if layer_id in facility] or list(facility)
    )
    for layer_id in layers:
        if layer_id not in facility:
            raise InvalidParameter(
                "layers", f"unknown facility layer {layer_id!r}; known: " + ", ".join(facility)
            )
    kinds = list_param(params.get("kind"), "kind")
    known_kinds = {kind for layer_id in layers for kind in facility[layer_id].kinds}
    for kind in kinds:
        if kind not in known_kinds:
            raise InvalidParameter(
                "kind",
                f"unknown kind {kind!r} for layers "
                f"{', '.join(layers)}; known: {', '.join(sorted(known_kinds))}",
            )
    services = list_param(params.get("services"), "services")
    for service in services:
        if service not in catalog.values["services"]:
            raise InvalidParameter(
                "services",
                f"unknown service {service!r}; known: " + ", ".join(catalog.values["services"]),
            )
    eligible = params.get("eligible") or None
    if eligible is not None and eligible not in catalog.values["eligible"]:
        raise InvalidParameter(
            "eligible",
            f"unknown beneficiary type {eligible!r}; known: "
            + ", ".join(catalog.values["eligible"]),
        )
    statuses = list_param(params.get("status"), "status") or ["open"]
    for status in statuses:
        if status not in catalog.values["status"]:
            raise InvalidParameter(
                "status",
                f"unknown status {status!r}; known: " + ", ".join(catalog.values["status"]),
            )
    open_at = None
    if params.get("open_at"):
        open_at = _parse_open_at(params["open_at"])
    raw_open_now = (params.get("open_now") or "").lower()
    if raw_open_now not in {"", "true", "false", "1", "0"}:
        raise InvalidParameter("open_now", f"must be true or false, got {params['open_now']!r}")
    if raw_open_now in {"true", "1"}:
        if open_at is not None:
            raise InvalidParameter("open_now", "give either open_now or open_at, not both")
        open_at = dt.datetime.now(LOCAL_TIME)
    max_distance = None
    if params.get("max_distance") not in (None, ""):
        max_distance = parse_number("max_distance", params["max_distance"])
        if not 0 < max_distance <= MAX_DISTANCE_M:
            raise InvalidParameter(
                "max_distance",
                f"must be more than 0 and at most "
                f"{MAX_DISTANCE_M:.0f} metres, got {max_distance:g}",
            )
    filters = NearestFilters(
        kinds=frozenset(kinds) or None,
        services=frozenset(services),
        eligible=eligible,
        open_at=open_at,
        statuses=frozenset(statuses),
        max_distance=max_distance,
    )
    given = {
        "point": [lon, lat],
        "crs": crs.value,
        "k": k,
        "layers": layers,
        "kind": kinds or None,
        "services": services or None,
        "eligible": eligible,
        "open_at": open_at.isoformat(timespec="minutes") if open_at else None,
        "status": statuses,
        "max_distance": max_distance,
    }
    return NearestQuery(
        lon=wgs_lon, lat=wgs_lat, k=k, layers=layers, filters=filters, crs=crs, given=given
    )


def _site_fragment(result: NearestResult, crs: CoordinateSystem) -> bytes:
    """The part of a result feature that does not depend on the query: the
    feature up to and including its stored properties, layer and navigation
    links, left open for the per-query fields. Serialized once per site
    revision and coordinate system and kept in the index's per-site memo
    (bounded, shared by the indexes updates derive, a changed site forgotten)."""
    feature = result.feature
    memo = result.index.memo
    key = ("nearest-fragment", feature.revision, crs)
    fragment = memo.get(feature.layer_id, feature.id, key)
    if fragment is None:
        lon, lat = result.position(crs)
        whole = orjson.dumps(
            {
                "type": "Feature",
                "id": feature.id,
                "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
                "properties": {
                    **feature.properties,
                    "layer": feature.layer_id,
                    "navigation": result.navigation,
                },
            }
        )
        fragment = whole[:-2]  # drop the closing "}}" of properties and feature
        memo.put(feature.layer_id, feature.id, key, fragment)
    return fragment


def _walk(result: NearestResult, outside: bool) -> tuple[float | None, dict[str, str] | None]:
    """Walking minutes, or None with the reason where walking makes no sense."""
    if outside:
        return None, {
            "zh": "您不在张店区内，步行时间不适用",
            "en": "outside the district: no walking time",
        }
    if result.distance_m > WALKING_LIMIT_M:
        return None, {
            "zh": f"直线距离超过{WALKING_LIMIT_M / 1000:g}公里，建议乘车",
            "en": f"more than {WALKING_LIMIT_M / 1000:g} km in a straight line: take a bus or taxi",
        }
    return round(result.walk_minutes, 1), None


def _window(result: NearestResult) -> dict[str, Any]:
    props = result.feature.properties
    state = result.open_state
    return {
        "id": result.feature.id,
        "name": props.get("name"),
        "window": props.get("window"),
        "distance_m": round(result.distance_m, 1),
        "open_now": None if state == OpenState.unknown else state == OpenState.open,
        "opening_hours": props.get("opening_hours"),
        "phone": props.get("phone"),
    }


def _result_feature(
    result: NearestResult,
    crs: CoordinateSystem,
    outside: bool = False,
    next_open: tuple[dt.datetime | None, dt.datetime] | None = None,
) -> bytes:
    state = result.open_state
    walk, walk_note = _walk(result, outside)
    fields: dict[str, Any] = {
        "distance_m": round(result.distance_m, 1),
        "bearing_deg": round(result.bearing_deg, 1),
        "walk_minutes": walk,
        "open_now": None if state == OpenState.unknown else state == OpenState.open,
        "hours_known": state != OpenState.unknown,
        "windows": None if result.windows is None else [_window(w) for w in result.windows],
    }
    if walk_note is not None:
        fields["walk_note"] = walk_note
    if next_open is not None:
        opens, asked = next_open
        fields["next_open"] = opens.isoformat(timespec="minutes") if opens else None
        zh, en = opening_phrase(opens, asked) if opens else ("近期无开放时间", "not within a week")
        fields["next_open_text"] = {"zh": zh, "en": en}
    per_query = orjson.dumps(fields)
    return b"".join((_site_fragment(result, crs), b",", per_query[1:], b"}"))


def _where(index: SiteIndex, lon: float, lat: float) -> tuple[dict[str, Any], list[dict]]:
    """Whether the point is outside the district, and how far, with a note."""
    if index.district is None:
        return {}, []
    if index.district.contains(lon, lat):
        return {"outside_district": False, "district_boundary_m": None}, []
    metres = index.district.distance_to_boundary_m(lon, lat)
    km = f"{metres / 1000:.1f}"
    note = {
        "code": "outside_district",
        "zh": f"您所在位置不在张店区内（距区界约{km}公里），以下为区内最近的服务点",
        "en": f"This point is outside Zhangdian District ({km} km from its boundary); "
        "these are the nearest sites in the district.",
    }
    return {"outside_district": True, "district_boundary_m": round(metres, 1)}, [note]


_WALKING_ASSUMPTION = walking_assumption()

#: Asks for more places than this go to a thread even when memory holds all
#: they need: their search and grouping may take milliseconds.
IN_MEMORY_MAX_K = 20


def nearest_geojson(
    query: NearestQuery, cache: SiteIndexCache, extra: dict[str, Any] | None = None
) -> bytes:
    """The whole answer as GeoJSON FeatureCollection bytes (pure: no HTTP
    here). May read the store: run it in a thread."""
    return _answer(cache.get(), query, extra)


def nearest_geojson_in_memory(query: NearestQuery, cache: SiteIndexCache) -> bytes | None:
    """``nearest_geojson``, when memory holds everything it needs (the index is
    known current by the store's change token, every site found has been
    fetched before); else None, having read nothing from the store. For the
    event loop: most answers are made here, without a thread hop."""
    index = cache.current()
    if index is None or query.k > IN_MEMORY_MAX_K:
        return None
    try:
        with memory_only():
            return _answer(index, query, None)
    except NotInMemory:
        return None


def _answer(index: SiteIndex, query: NearestQuery, extra: dict[str, Any] | None) -> bytes:
    """Assembled from per-site fragments: serializing every site's properties
    and links again on each request costs more than finding the sites.
    When an open-now (or open-at) question finds nothing open, the nearest
    sites with known hours are answered anyway, each with when it next opens,
    and ``none_open`` says so."""
    filters = query.filters
    results = nearest_sites(index, query.lon, query.lat, query.k, query.layers, filters)
    none_open = False
    asked = filters.open_at
    if not results and asked is not None:
        # Nothing open: the nearest sites anyway, with when they open.
        fallback = replace(filters, open_at=None, hours_known=True)
        results = nearest_sites(
            index, query.lon, query.lat, query.k, query.layers, fallback, now=asked
        )
        none_open = True
    where, notes = _where(index, query.lon, query.lat)
    head: dict[str, Any] = {
        "type": "FeatureCollection",
        "query": query.given,
        "walking_assumption": _WALKING_ASSUMPTION,
        "walking_limit_m": WALKING_LIMIT_M,
        "distance": "geodesic on the WGS-84 ellipsoid, metres",
        "numberReturned": len(results),
        **where,
        "none_open": none_open,
    }
    if none_open:
        notes.append(
            {
                "code": "none_open",
                "zh": "附近暂无正在开放的服务点，以下为最近的服务点及下次开放时间",
                "en": "No site is open then; these are the nearest sites and when they open.",
            }
        )
    head["notes"] = notes
    if query.crs != CoordinateSystem.wgs84:
        head["coordinate_system"] = query.crs.value
    head.update(extra or {})
    outside = bool(where.get("outside_district"))
    if none_open and asked is not None:
        local = asked.astimezone(LOCAL_TIME).replace(tzinfo=None)
        features = b",".join(
            _result_feature(r, query.crs, outside, (index.next_open(r.row, local), asked))
            for r in results
        )
    else:
        features = b",".join(_result_feature(r, query.crs, outside) for r in results)
    return b"".join((orjson.dumps(head)[:-1], b',"features":[', features, b"]}"))


def geocoded_params(params: dict[str, str], geocoder: Geocoder) -> tuple[dict[str, str], dict]:
    """``address=`` becomes lon/lat (in the query's crs) plus what the answer
    says about it; an address the gazetteer cannot place is a 400."""
    if params.get("lon") or params.get("lat"):
        raise InvalidParameter("address", "give either address or lon/lat, not both")
    crs = CoordinateSystem.parse(params.get("crs"), "crs")
    address = params.pop("address")
    candidates = geocode_address(geocoder, address, 1, parameter="address")
    if not candidates:
        raise InvalidParameter(
            "address", "not found in the offline gazetteer of 张店区; give lon/lat instead"
        )
    placed = candidate_feature(candidates[0], crs)
    params["lon"], params["lat"] = (str(v) for v in placed["geometry"]["coordinates"])
    return params, {"geocoded": placed}
