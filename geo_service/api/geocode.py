"""``GET /geocode`` and ``GET /reverse``: the offline geocoder over HTTP."""

from __future__ import annotations

import re

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.media import MediaType
from geo_service.api.openapi import json_body
from geo_service.api.params import query_params
from geo_service.errors import InvalidParameter
from geo_service.services.geocode import MAX_LIMIT, MAX_QUERY, candidate_feature, geocode_address
from geo_service.services.queries import CRS_NAMES, parse_lonlat, reject_unknown
from geo_service.sources.crs import CoordinateSystem, convert

__all__ = ["router"]

router = APIRouter()

_CRS_PARAMETER = {
    "name": "crs",
    "in": "query",
    "description": "Coordinate system of the answer (and of lon/lat for /reverse): "
    "wgs84 (default), gcj02, bd09",
    "schema": {"type": "string", "enum": CRS_NAMES},
}


@router.get(
    "/geocode",
    summary="Address or place name to ranked positions (offline)",
    description="Candidates from the project's gazetteer of 张店区, its towns and the "
    "stored facilities, best first, each with its match level (address, place, "
    "intersection, road, town), a confidence in 0..1 and the matched text. "
    "Parameters: `q` (required), `limit` 1..20 (default 5), `crs` of the output.",
    tags=["Geocoding"],
    response_class=Response,
    responses={200: json_body("GeocodeResult", MediaType.geojson.value)},
    openapi_extra={
        "parameters": [
            {
                "name": "q",
                "in": "query",
                "required": True,
                "description": "Address or place name, e.g. 张店区共青团西路54号",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_QUERY,
                    "pattern": r"\S",
                },
            },
            {
                "name": "limit",
                "in": "query",
                "description": f"Most candidates, 1..{MAX_LIMIT} (default 5)",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
            _CRS_PARAMETER,
        ]
    },
)
def geocode(request: Request) -> Response:
    params = query_params(request)
    reject_unknown(params, sorted({"q", "limit", "crs"}))
    crs = CoordinateSystem.parse(params.get("crs"), "crs")
    raw_limit = params.get("limit", "5")
    if not re.fullmatch(r"[0-9]{1,3}", raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    geocoder = request.app.state.runtime.geocoders.get()
    candidates = geocode_address(geocoder, params.get("q"), int(raw_limit))
    body = {
        "type": "FeatureCollection",
        "query": params.get("q"),
        "numberReturned": len(candidates),
        "features": [candidate_feature(c, crs) for c in candidates],
    }
    if crs != CoordinateSystem.wgs84:
        body["coordinate_system"] = crs.value
    return Response(orjson.dumps(body), media_type=MediaType.geojson)


@router.get(
    "/reverse",
    summary="A point's town and nearest named place (offline)",
    description="Parameters: `lon`, `lat` (WGS-84, or `crs=gcj02|bd09`).",
    tags=["Geocoding"],
    response_class=Response,
    responses={200: json_body("ReverseResult")},
    openapi_extra={
        "parameters": [
            {
                "name": "lon",
                "in": "query",
                "required": True,
                "description": "Longitude (degrees)",
                "schema": {"type": "number", "minimum": -180, "maximum": 180},
            },
            {
                "name": "lat",
                "in": "query",
                "required": True,
                "description": "Latitude (degrees)",
                "schema": {"type": "number", "minimum": -90, "maximum": 90},
            },
            _CRS_PARAMETER,
        ]
    },
)
def reverse(request: Request) -> Response:
    params = query_params(request)
    reject_unknown(params, sorted({"lon", "lat", "crs"}))
    crs = CoordinateSystem.parse(params.get("crs"), "crs")
    lon, lat = parse_lonlat(params)
    w_lon, w_lat = convert(lon, lat, crs, CoordinateSystem.wgs84)
    answer = request.app.state.runtime.geocoders.get().reverse(float(w_lon), float(w_lat))
    place = answer["nearest_place"]
    if place is not None and crs != CoordinateSystem.wgs84:
        p_lon, p_lat = convert(place["lon"], place["lat"], CoordinateSystem.wgs84, crs)
        place["lon"], place["lat"] = round(float(p_lon), 7), round(float(p_lat), 7)
    body = {"point": [lon, lat], "crs": crs.value, **answer}
    return Response(orjson.dumps(body), media_type=MediaType.json)
