"""Query parameters parsed and checked once, raising domain errors with the parameter's name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Query, Request

from geo_service.errors import InvalidParameter
from geo_service.services.queries import OGC_CRS_NAMES
from geo_service.sources.crs import CRS84_URI, EPSG4326_URI, CrsReference

__all__ = ["MAX_JSON_DEPTH", "load_json_body", "output_crs", "query_params", "wants_html"]

#: How deeply a request body's JSON may nest. A GeoJSON MultiPolygon feature
#: nests 6 deep and a process's inputs 3; a body hundreds deep is an attack on
#: every recursive walk after the parser (Python's stack, orjson.dumps' 254).
MAX_JSON_DEPTH = 32


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


async def output_crs(
    crs: Annotated[
        str | None,
        Query(
            description="Coordinate system of the output (OGC API - Features Part 2): "
            f"`{CRS84_URI}` (WGS-84 longitude first, the default, RFC 7946) or "
            f"`{EPSG4326_URI}` (WGS-84, **latitude first**); or a short name, longitude "
            "first and case-insensitive: `wgs84` (= CRS84), and the non-standard Chinese "
            "web-map systems `gcj02` (Amap, Tencent, WeChat) and `bd09` (Baidu), which "
            "have no CRS URI. The answer's `Content-Crs` header names the URI.",
            examples=["gcj02"],
            json_schema_extra={"enum": OGC_CRS_NAMES},
        ),
    ] = None,
) -> CrsReference:
    return CrsReference.parse(crs, "crs")


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


def load_json_body(raw: bytes) -> Any:
    """A request body as JSON, or ``InvalidParameter("body", ...)``: not JSON,
    or nested deeper than ``MAX_JSON_DEPTH`` (orjson itself stops at 1,024
    levels, deep enough to break any recursive walk after it)."""
    too_deep = InvalidParameter("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "depth" in error.msg:
            raise too_deep from None
        raise InvalidParameter("body", f"not valid JSON ({error.msg})") from None
    # A body with few brackets cannot nest deeply: most bodies skip the count.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _json_depth(raw) > MAX_JSON_DEPTH:
        raise too_deep
    return value


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def _json_depth(raw: bytes) -> int:
    """How deeply valid JSON text nests: its brackets outside strings, counted
    (a megabyte in milliseconds, where walking the parsed value takes a tenth
    of a second on the event loop)."""
    brackets = np.frombuffer(_NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw)), dtype=np.uint8)
    if brackets.size == 0:
        return 0
    opens = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max())
