"""Media types the API speaks, so none is ever a bare string."""

from enum import StrEnum

__all__ = ["MediaType"]


class MediaType(StrEnum):
    json = "application/json"
    geojson = "application/geo+json"
    problem = "application/problem+json"
    merge_patch = "application/merge-patch+json"
    schema = "application/schema+json"
    html = "text/html; charset=utf-8"
    openapi = "application/vnd.oai.openapi+json;version=3.0"
    csv = "text/csv; charset=utf-8"
    gpkg = "application/geopackage+sqlite3"
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
