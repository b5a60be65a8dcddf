"""The runtime: settings -> catalog -> store -> caches, opened in one place.

The app (in its lifespan), every CLI command and every job worker process
start from ``Runtime.open``; nothing else opens a store. The caches here are
the ones that follow the store's layer versions, so any process sees another's
writes: the nearest index, the geocoder, the towns, and computed results.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from geo_service.analysis.nearest import SiteIndexCache
from geo_service.settings import Settings
from geo_service.sources.catalog import Catalog, load_catalog
from geo_service.sources.geocoding import Geocoder, load_gazetteer
from geo_service.sources.style import MapStyle, load_style
from geo_service.sources.towns import TownIndex, Towns
from geo_service.store import Store, open_store
from geo_service.store.seeding import seed_store

__all__ = ["GeocoderCache", "ResultCache", "Runtime", "TownsCache"]

log = logging.getLogger("geo_service.runtime")

T = TypeVar("T")


class TownsCache:
    """``Towns`` rebuilt only when the towns layer changes."""

    def __init__(self, store: Store):
        self.store = store
        self._cached: tuple[int, Towns] | None = None
        self._lock = threading.Lock()

    def get(self) -> Towns:
        version = self.store.layer_version("towns")
        cached = self._cached
        if cached is None or cached[0] != version:
            with self._lock:
                towns = self.store.all_features("towns")
                built = Towns(
                    TownIndex((t.id, t.geometry) for t in towns),
                    {t.id: str(t.properties.get("name") or t.id) for t in towns},
                    any(t.properties.get("approximate") for t in towns),
                )
                self._cached = cached = (version, built)
        return cached[1]


class GeocoderCache:
    """A ``Geocoder`` over the store, rebuilt when the towns or facilities change."""

    def __init__(self, store: Store, catalog: Catalog):
        self.store = store
        self.catalog = catalog
        self._gazetteer: tuple | None = None
        self._geocoder: Geocoder | None = None
        self._versions: dict[str, int] | None = None
        self._lock = threading.Lock()

    def get(self) -> Geocoder:
        versions = self.store.layer_versions()
        if self._geocoder is None or versions != self._versions:
            with self._lock:
                if self._geocoder is None or versions != self._versions:
                    if self._gazetteer is None:
                        # Read on first use: most CLI commands never geocode.
                        self._gazetteer = load_gazetteer(self.catalog.directory / "gazetteer.csv")
                    facilities = [
                        site
                        for layer in self.catalog.facility_layers
                        for site in self.store.all_features(layer.id)
                    ]
                    places, roads = self._gazetteer
                    self._geocoder = Geocoder(
                        places, roads, self.store.all_features("towns"), facilities
                    )
                    self._versions = versions
        return self._geocoder


class ResultCache:
    """Computed results (coverage reports, recommendations, grids) keyed by
    their inputs AND the store's layer versions: a write anywhere makes them
    stale, so a cached answer is never older than the data. Least recently
    used entries go first."""

    def __init__(self, store: Store, size: int = 16):
        self.store = store
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        key = (tuple(sorted(self.store.layer_versions().items())), key)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = build()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value


@dataclass
class Runtime:
    """What every use case needs, opened once per process."""

    settings: Settings
    catalog: Catalog
    store: Store
    style: MapStyle
    site_indexes: SiteIndexCache = field(init=False)
    geocoders: GeocoderCache = field(init=False)
    towns: TownsCache = field(init=False)
    results: ResultCache = field(init=False)

    def __post_init__(self) -> None:
        self.site_indexes = SiteIndexCache(self.store)
        self.geocoders = GeocoderCache(self.store, self.catalog)
        self.towns = TownsCache(self.store)
        self.results = ResultCache(self.store)

    @classmethod
    def open(cls, settings: Settings | None = None, *, seed: bool = True) -> Runtime:
        """Read the catalog and the style, open the store (seeding a new one
        from the shipped layers unless ``seed`` is false)."""
        settings = settings or Settings()
        catalog = load_catalog(settings.layers_dir, limits=settings.write_limits())
        style = load_style(settings.style_file, catalog)
        store = open_store(settings.store, catalog, pool_size=settings.store_pool_size)
        try:
            if seed and store.is_empty():
                results = seed_store(store, catalog)
                log.info(
                    "seeded a new store at %s with %d features",
                    store.location,
                    sum(len(r.inserted) for r in results.values()),
                )
        except BaseException:
            store.close()
            raise
        return cls(settings, catalog, store, style)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
