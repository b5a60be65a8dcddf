"""Vector tiles of a dense point layer, on both stores: thinned below
DETAIL_ZOOM to one dot per cell and kind (the lowest id, with the count of
sites it stands for) and without names, complete with names from it on, and
the same tiles from the embedded encoder as from ``ST_AsMVT``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import mapbox_vector_tile
import numpy as np
import pytest

from geo_service.sources.catalog import Catalog, ValidFeature
from geo_service.sources.layerfiles import read_layer_file
from geo_service.store import Store, open_store
from geo_service.store.tiles import BUFFER, CELL, DETAIL_ZOOM, EXTENT
from tests.conftest import TEST_PG, missing
from tests.hostile import STORED

LAYER = "stations"
PARK = (118.045, 36.807)
KINDS = ("community_station", "town_station", "support_post")


def _sites(catalog: Catalog) -> list[ValidFeature]:
    """~1,500 stations crowded around 人民公园 (several on one spot, of two
    kinds), a thin spread over the district, and the hostile corpus as names."""
    template = read_layer_file(catalog, LAYER)[0].properties
    rng = np.random.default_rng(20261205)
    spots = [
        *(PARK + rng.normal(0, 0.004, (1000, 2))).tolist(),
        *rng.uniform((117.95, 36.70), (118.15, 36.90), (400, 2)).tolist(),
        *[[118.05, 36.81]] * 6,  # a building holding six sites
    ]
    kinds = [KINDS[i % 3] for i in rng.integers(0, 3, len(spots))]
    kinds[-6:] = [KINDS[0]] * 4 + [KINDS[1]] * 2
    names = [f"服务站{i:05d}" for i in range(len(spots))]
    for n, (_what, text) in enumerate(STORED):
        spots.append([118.0 + 0.01 * n, 36.75])
        kinds.append(KINDS[0])
        names.append(text)
    # Ids deliberately not in position order, so "lowest id" is a real choice.
    order = rng.permutation(len(spots))
    return [
        catalog.validate_feature(
            LAYER,
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": spots[i]},
                "properties": {
                    **template,
                    "id": f"st-t-{order[i]:05d}",
                    "name": names[i],
                    "kind": kinds[i],
                },
            },
        )
        for i in range(len(spots))
    ]


@pytest.fixture(scope="module")
def dense(catalog, tmp_path_factory) -> Iterator[tuple[list[ValidFeature], dict[str, Store]]]:
    """The same sites in a GeoPackage and, when there is a database, in PostGIS."""
    import uuid

    sites = _sites(catalog)
    stores = {"geopackage": open_store(tmp_path_factory.mktemp("tiles") / "t.gpkg", catalog)}
    if TEST_PG:
        separator = "&" if "?" in TEST_PG else "?"
        stores["postgis"] = open_store(
            f"{TEST_PG}{separator}schema=t_{uuid.uuid4().hex[:12]}", catalog
        )
    try:
        for store in stores.values():
            store.write(LAYER, sites, actor="test:tiles")
        yield sites, stores
    finally:
        for store in stores.values():
            if "postgis" in type(store).__name__.lower():
                store.drop()
            store.close()


@pytest.fixture(params=["geopackage", "postgis"])
def each_store(request, dense) -> tuple[list[ValidFeature], Store]:
    sites, stores = dense
    if request.param not in stores:
        missing("no PostGIS database (set GEO_SERVICE_TEST_PG=postgresql://...)")
    return sites, stores[request.param]


def _pixel(lon: float, lat: float, z: int) -> tuple[float, float]:
    """World position at zoom z in tile units (4096 per tile), y down."""
    size = EXTENT * 2**z
    x = (lon + 180) / 360 * size
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * size
    return x, y


def _tiles_with_sites(sites: list[ValidFeature], z: int) -> set[tuple[int, int]]:
    out = set()
    for site in sites:
        px, py = _pixel(site.geometry.x, site.geometry.y, z)
        out.add((int(px // EXTENT), int(py // EXTENT)))
    return out


def _decoded(store: Store, z: int, x: int, y: int) -> list[dict]:
    body = store.tile(LAYER, z, x, y)
    tile = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    return tile.get(LAYER, {"features": []})["features"]


def _inside(feature: dict) -> bool:
    cx, cy = feature["geometry"]["coordinates"]
    return 0 <= cx < EXTENT and 0 <= cy < EXTENT


@pytest.mark.parametrize("z", [10, 12, DETAIL_ZOOM - 1])
def test_a_thinned_tile_keeps_the_lowest_id_of_each_cell_and_kind_with_its_count(each_store, z):
    """Worked out here from the sites' own positions: each cell of 64 tile
    units keeps, per kind, the site with the lowest id, counting them all; and
    every site is counted once, in the tile that holds it."""
    sites, store = each_store
    expected: dict[tuple[int, int], dict[tuple, list[str]]] = defaultdict(lambda: defaultdict(list))
    for site in sites:
        px, py = (round(v) for v in _pixel(site.geometry.x, site.geometry.y, z))
        tile = (px // EXTENT, py // EXTENT)
        expected[tile][(px // CELL, py // CELL, site.properties["kind"])].append(site.id)
    counted = 0
    for (x, y), cells in expected.items():
        features = _decoded(store, z, x, y)
        assert features == _decoded(store, z, x, y)  # the same tile every time
        drawn = {f["properties"]["id"]: f["properties"]["count"] for f in features if _inside(f)}
        assert drawn == {min(ids): len(ids) for ids in cells.values()}, (z, x, y)
        counted += sum(drawn.values())
        assert all("name" not in f["properties"] for f in features)
    assert counted == len(sites)
    assert sum(len(cells) for cells in expected.values()) < len(sites)  # it did thin


def test_at_the_detail_zoom_every_site_is_in_its_tile_with_its_name(each_store):
    sites, store = each_store
    by_id = {site.id: site for site in sites}
    seen: dict[str, dict] = {}
    for x, y in _tiles_with_sites(sites, DETAIL_ZOOM):
        for feature in _decoded(store, DETAIL_ZOOM, x, y):
            if _inside(feature):
                assert feature["properties"]["id"] not in seen
                seen[feature["properties"]["id"]] = feature["properties"]
    assert seen.keys() == by_id.keys()
    for site_id, props in seen.items():
        site = by_id[site_id].properties
        assert props == {
            "id": site_id,
            "name": site["name"],
            "kind": site["kind"],
            "status": site["status"],
        }


def test_hostile_names_reach_the_tile_as_given(each_store):
    """Names are data: every text of the hostile corpus comes back from the
    tile exactly as stored, neither escaped nor cut."""
    sites, store = each_store
    hostile = [site for site in sites if site.properties["name"] in {t for _, t in STORED}]
    assert len(hostile) == len(STORED)
    for site in hostile:
        px, py = _pixel(site.geometry.x, site.geometry.y, DETAIL_ZOOM)
        features = _decoded(store, DETAIL_ZOOM, int(px // EXTENT), int(py // EXTENT))
        (found,) = [f for f in features if f["properties"]["id"] == site.id]
        assert found["properties"]["name"] == site.properties["name"]


@pytest.mark.parametrize("z", [9, 11, 13, DETAIL_ZOOM, 16])
def test_embedded_tiles_are_postgis_tiles(dense, z):
    """The embedded encoder against ST_AsMVT on the same sites: the same
    features, attributes and counts, positions within a unit."""
    sites, stores = dense
    if "postgis" not in stores:
        missing("no PostGIS database (set GEO_SERVICE_TEST_PG=postgresql://...)")
    tiles = _tiles_with_sites(sites, z)
    if z == 16:
        tiles = set(sorted(tiles)[:: max(1, len(tiles) // 40)])
    # The neighbours too: their buffers hold the edges of the tiles with sites.
    tiles |= {(x + dx, y + dy) for x, y in tiles for dx in (-1, 1) for dy in (-1, 1)}
    compared = 0
    for x, y in sorted(tiles):
        embedded, postgis = (
            {f["properties"]["id"]: f for f in _decoded(stores[label], z, x, y)}
            for label in ("geopackage", "postgis")
        )
        assert embedded.keys() == postgis.keys(), (z, x, y)
        for site_id, feature in embedded.items():
            other = postgis[site_id]
            assert feature["properties"] == other["properties"], site_id
            a, b = feature["geometry"]["coordinates"], other["geometry"]["coordinates"]
            assert abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1, site_id
            assert -BUFFER <= a[0] <= EXTENT + BUFFER and -BUFFER <= a[1] <= EXTENT + BUFFER
        compared += len(embedded)
    assert compared > 100


@pytest.mark.parametrize("z", [11, DETAIL_ZOOM])
def test_the_geopackage_fast_path_is_the_generic_encoder(dense, z):
    """Rows straight from the R-tree give the tile that the store's features do."""
    from geo_service.store.tiles import encode_tile

    sites, stores = dense
    store = stores["geopackage"]
    for x, y in sorted(_tiles_with_sites(sites, z))[:12]:
        fast = _decoded(store, z, x, y)
        body = encode_tile(store, LAYER, z, x, y)
        generic = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
        assert sorted(fast, key=lambda f: f["properties"]["id"]) == sorted(
            generic[LAYER]["features"], key=lambda f: f["properties"]["id"]
        )


def test_points_written_with_an_envelope_are_read_too():
    """GDAL and QGIS may write a point's blob with an envelope; such blobs are
    read one by one rather than as one array."""
    import struct

    from shapely.geometry import Point

    from geo_service.store.geopackage import _point_coordinates, _to_blob

    plain = _to_blob(Point(118.05, 36.81))
    enveloped = (
        struct.pack("<2sBBi4d", b"GP", 0, 0b00000011, 4326, 118.05, 118.05, 36.81, 36.81)
        + plain[8:]
    )
    for blobs, expected in (
        ([plain, plain], ([118.05, 118.05], [36.81, 36.81])),
        ([plain, enveloped], ([118.05, 118.05], [36.81, 36.81])),
    ):
        lon, lat = _point_coordinates(blobs)
        assert lon.tolist() == expected[0] and lat.tolist() == expected[1]
