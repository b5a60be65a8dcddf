"""The store interface every backend implements, and the records it returns."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from shapely.geometry.base import BaseGeometry

from geo_service.catalog import Catalog, ValidFeature

__all__ = ["BBox", "Page", "Store", "StoredFeature", "WriteResult"]

#: (west, south, east, north) in WGS-84 degrees.
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class StoredFeature:
    """One feature as the store holds it (WGS-84 geometry)."""

    layer_id: str
    id: str
    properties: dict[str, Any]
    geometry: BaseGeometry
    revision: int = 1

    @property
    def etag(self) -> str:
        """A strong validator that changes whenever the feature changes."""
        digest = hashlib.sha256(
            orjson.dumps([self.id, self.revision, self.properties], option=orjson.OPT_SORT_KEYS)
            + self.geometry.wkb
        ).hexdigest()[:20]
        return f'"{digest}"'


@dataclass(frozen=True)
class Page:
    """A page of query results and how many features matched in all."""

    features: list[StoredFeature]
    number_matched: int


@dataclass
class WriteResult:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.deleted)


class Store(ABC):
    """Where layers live. One interface; an embedded and a PostGIS backend.

    Readers may call from many threads at once. ``write`` is one transaction:
    either every feature lands, or none does.
    """

    catalog: Catalog
    location: str

    @abstractmethod
    def is_empty(self) -> bool:
        """True when no layer holds any feature (a new store, to be seeded)."""

    @abstractmethod
    def layer_version(self, layer_id: str) -> int:
        """A number that changes whenever ``layer_id`` changes, in any process."""

    def layer_versions(self) -> dict[str, int]:
        """``layer_version`` of every layer (backends answer in one round trip)."""
        return {layer_id: self.layer_version(layer_id) for layer_id in self.catalog.layers}

    @abstractmethod
    def count(self, layer_id: str) -> int:
        """Number of (live) features in a layer."""

    @abstractmethod
    def extent(self, layer_id: str) -> BBox | None:
        """The bounding box of a layer's features, or None when it is empty."""

    @abstractmethod
    def get(self, layer_id: str, feature_id: str) -> StoredFeature:
        """One feature, or ``FeatureNotFound``."""

    @abstractmethod
    def query(
        self,
        layer_id: str,
        *,
        bbox: BBox | None = None,
        filters: dict[str, Sequence[str]] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page:
        """Features intersecting ``bbox`` whose properties match ``filters``
        (property -> accepted values), ordered by id, paged."""

    @abstractmethod
    def all_features(self, layer_id: str) -> list[StoredFeature]:
        """Every live feature of a layer, ordered by id (for snapshots and exports)."""

    @abstractmethod
    def write_layers(
        self,
        batches: dict[str, Iterable[ValidFeature]],
        *,
        actor: str,
        action: str = "upsert",
        replace: bool = False,
    ) -> dict[str, WriteResult]:
        """Insert or update features of several layers by id in ONE transaction,
        with an audit record per change: either everything lands or nothing.
        Unchanged features are left alone (re-running a write is idempotent).
        ``replace`` also deletes each named layer's features that were not given."""

    def write(
        self,
        layer_id: str,
        features: Iterable[ValidFeature],
        *,
        actor: str,
        action: str = "upsert",
        replace: bool = False,
    ) -> WriteResult:
        """``write_layers`` for a single layer."""
        return self.write_layers({layer_id: features}, actor=actor, action=action, replace=replace)[
            layer_id
        ]

    def tile(self, layer_id: str, z: int, x: int, y: int) -> bytes:
        """A Mapbox vector tile of the layer (encoded in Python; PostGIS overrides)."""
        from geo_service.tiles import encode_tile

        return encode_tile(self, layer_id, z, x, y)

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
