"""Stores: one interface (``Store``), an embedded GeoPackage backend and, for scale, PostGIS."""

from __future__ import annotations

from pathlib import Path

from geo_service.sources.catalog import Catalog
from geo_service.store.base import (
    AuditQuery,
    BBox,
    Change,
    Page,
    Store,
    StoredFeature,
    TokenRecord,
    WriteResult,
)

__all__ = [
    "AuditQuery",
    "BBox",
    "Change",
    "Page",
    "Store",
    "StoredFeature",
    "TokenRecord",
    "WriteResult",
    "open_store",
]


def open_store(location: str | Path, catalog: Catalog) -> Store:
    """Open (creating if needed) the store at ``location``: a file path for the
    embedded GeoPackage, or a ``postgresql://`` URL for PostGIS."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from geo_service.store.postgis import PostGISStore

        return PostGISStore(text, catalog)
    from geo_service.store.geopackage import GeoPackageStore

    return GeoPackageStore(Path(text), catalog)
