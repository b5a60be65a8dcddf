"""Seed a new store from the sample layers in ``layers/``, in one transaction."""

from __future__ import annotations

from geo_service.sources.catalog import Catalog
from geo_service.sources.layerfiles import read_layer_file
from geo_service.sources.towns import TownIndex
from geo_service.store import Store, WriteResult

__all__ = ["seed_store"]

SEED_ACTOR = "seed:layers"


def seed_store(store: Store, catalog: Catalog) -> dict[str, WriteResult]:
    """Load every catalog layer's file; facilities get their ``town_code``
    checked against the town polygons. Re-seeding changes nothing that is
    already identical; it never deletes what a user added."""
    polygon_layers = [layer for layer in catalog.layers.values() if not layer.is_facility]
    batches = {layer.id: read_layer_file(catalog, layer.id) for layer in polygon_layers}
    towns = batches.get("towns", [])
    index = TownIndex((town.id, town.geometry) for town in towns)
    codes = set(index.codes)
    for layer in catalog.facility_layers:
        features = read_layer_file(catalog, layer.id, town_codes=codes)
        batches[layer.id] = [index.assign(feature) for feature in features]
    return store.write_layers(batches, actor=SEED_ACTOR, action="seed")
