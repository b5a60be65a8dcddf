"""Addresses to positions with the offline geocoder, as every adapter asks."""

from __future__ import annotations

from typing import Any

from geo_service.errors import InvalidParameter
from geo_service.sources.crs import CoordinateSystem, convert
from geo_service.sources.geocoding import Candidate, Geocoder

__all__ = ["MAX_LIMIT", "MAX_QUERY", "candidate_feature", "geocode_address"]

MAX_QUERY = 200
MAX_LIMIT = 20


def geocode_address(
    geocoder: Geocoder, address: str | None, limit: int = 5, parameter: str = "q"
) -> list[Candidate]:
    """Candidates for an address, or ``InvalidParameter`` (naming ``parameter``)
    for an empty or absurd one."""
    text = (address or "").strip()
    if not text:
        raise InvalidParameter(
            parameter, "give an address or place name, e.g. 张店区共青团西路54号"
        )
    if len(address or "") > MAX_QUERY:
        raise InvalidParameter(parameter, f"at most {MAX_QUERY} characters")
    return geocoder.geocode(text, limit)


def candidate_feature(candidate: Candidate, crs: CoordinateSystem) -> dict[str, Any]:
    lon, lat = convert(candidate.lon, candidate.lat, CoordinateSystem.wgs84, crs)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [round(float(lon), 7), round(float(lat), 7)]},
        "properties": {
            "level": candidate.level,
            "confidence": candidate.confidence,
            "matched": candidate.matched,
            "town_code": candidate.town_code,
            "source": candidate.source,
        },
    }
