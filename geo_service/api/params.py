"""Query parameters parsed and checked once, raising domain errors with the parameter's name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Query, Request

from geo_service.errors import InvalidParameter
from geo_service.services.queries import CRS_NAMES
from geo_service.sources.crs import CoordinateSystem

__all__ = ["output_crs", "query_params", "wants_html"]


def query_params(request: Request, lists: Iterable[str] = ()) -> dict[str, str]:
    """The query string as one value per name. A list parameter given more than
    once (``kind=a&kind=b``) is read as ``kind=a,b``; any other parameter given
    twice is a 400: taking the first or the last silently would answer a
    question the client did not ask."""
    lists = set(lists)
    params: dict[str, str] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if len(values) > 1 and name not in lists:
            raise InvalidParameter(name, "given more than once")
        params[name] = ",".join(values)
    return params


def output_crs(
    crs: Annotated[
        str | None,
        Query(
            description="Coordinate system of the output: `wgs84` (default, RFC 7946), "
            "`gcj02` (Amap, Tencent, WeChat) or `bd09` (Baidu); case-insensitive",
            examples=["gcj02"],
            json_schema_extra={"enum": CRS_NAMES},
        ),
    ] = None,
) -> CoordinateSystem:
    return CoordinateSystem.parse(crs, "crs")


def wants_html(request: Request, f: str | None) -> bool:
    """``?f=html`` or ``?f=json`` decide; otherwise HTML only when the client
    prefers ``text/html`` over JSON (browsers do; OGC clients do not)."""
    if f is not None:
        # Exact names, as the OpenAPI enum states them.
        if f == "html":
            return True
        if f in {"json", "geojson"}:
            return False
        raise InvalidParameter("f", f"unknown format {f!r}; use json or html")
    accept = request.headers.get("accept", "")
    best_html = best_json = 0.0
    for part in accept.split(","):
        fields = [x.strip() for x in part.split(";")]
        media, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media == "text/html":
            best_html = max(best_html, q)
        elif media in {"application/json", "application/geo+json"}:
            best_json = max(best_json, q)
    return best_html > 0 and best_html > best_json
