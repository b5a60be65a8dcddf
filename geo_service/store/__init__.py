"""Stores: one interface (``Store``), an embedded GeoPackage backend and, for scale, PostGIS."""

from __future__ import annotations

from pathlib import Path

from geo_service.sources.catalog import Catalog
from geo_service.store.base import (
    CHANGE_REPLAY_LIMIT,
    JOB_STATUSES,
    AuditQuery,
    BBox,
    Change,
    ChangeFeed,
    Envelopes,
    JobRecord,
    Page,
    SessionRecord,
    SiteRows,
    Store,
    StoredFeature,
    TokenRecord,
    UserRecord,
    WriteResult,
)

__all__ = [
    "CHANGE_REPLAY_LIMIT",
    "JOB_STATUSES",
    "AuditQuery",
    "BBox",
    "Change",
    "ChangeFeed",
    "Envelopes",
    "JobRecord",
    "Page",
    "SessionRecord",
    "SiteRows",
    "Store",
    "StoredFeature",
    "TokenRecord",
    "UserRecord",
    "WriteResult",
    "open_store",
]


def open_store(
    location: str | Path, catalog: Catalog, *, pool_size: int = 4, pool_timeout: float = 30.0
) -> Store:
    """Open (creating if needed) the store at ``location``: a file path for the
    embedded GeoPackage, or a ``postgresql://`` URL for PostGIS.

    At most ``pool_size`` connections are open at once (per process); a call
    that waits ``pool_timeout`` seconds for one fails with ``StoreError``."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from geo_service.store.postgis import PostGISStore

        return PostGISStore(text, catalog, pool_size=pool_size, pool_timeout=pool_timeout)
    from geo_service.store.geopackage import GeoPackageStore

    return GeoPackageStore(Path(text), catalog, pool_size=pool_size, pool_timeout=pool_timeout)
