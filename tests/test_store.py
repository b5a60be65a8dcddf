"""The embedded GeoPackage store: seeding, transactions, queries, and GDAL's view of the file."""

from __future__ import annotations

import sqlite3

import pyogrio
import pytest
import shapely

from geo_service.errors import FeatureNotFound, Forbidden, InvalidParameter, StoreError
from geo_service.sources.catalog import ValidFeature
from geo_service.store import open_store
from geo_service.store.seeding import seed_store


def _feature(store, feature_id="gc-new-window", **changes):
    base = store.get("green_channels", "gc-bank-abc-chengdong")
    props = dict(base.properties, id=feature_id, **changes)
    return ValidFeature(id=feature_id, properties=props, geometry=base.geometry)


def test_seeding_loads_every_layer_file(store, catalog):
    for layer in catalog.layers.values():
        assert (store.count(layer.id) > 0) != layer.is_context, layer.id
    assert store.count("towns") == 13


def test_reseeding_is_idempotent(store, catalog):
    versions = {layer_id: store.layer_version(layer_id) for layer_id in catalog.layers}
    results = seed_store(store, catalog)
    assert all(r.changed == 0 for r in results.values())
    assert versions == {layer_id: store.layer_version(layer_id) for layer_id in catalog.layers}


def test_a_write_that_fails_half_way_leaves_nothing(store):
    before = store.count("green_channels")
    good = _feature(store, "gc-first-of-two")
    with pytest.raises(InvalidParameter, match="appears twice"):
        store.write("green_channels", [good, good], actor="test")
    assert store.count("green_channels") == before
    with pytest.raises(FeatureNotFound):
        store.get("green_channels", "gc-first-of-two")


def test_update_bumps_revision_version_and_audit(store):
    version = store.layer_version("green_channels")
    original = store.get("green_channels", "gc-bank-abc-chengdong")
    changed = _feature(store, "gc-bank-abc-chengdong", window="5号窗口")
    result = store.write("green_channels", [changed], actor="editor:test")
    assert result.updated == ["gc-bank-abc-chengdong"]
    stored = store.get("green_channels", "gc-bank-abc-chengdong")
    assert stored.properties["window"] == "5号窗口"
    assert stored.revision == original.revision + 1
    assert stored.etag != original.etag
    assert store.layer_version("green_channels") == version + 1
    audit = store.audit_records("gc-bank-abc-chengdong")[-1]
    assert audit["actor"] == "editor:test" and audit["action"] == "update"
    assert '"window":"5号窗口"' in audit["after"] and "5号窗口" not in audit["before"]


def test_store_survives_reopening(tmp_path, catalog):
    path = tmp_path / "reopen.gpkg"
    first = open_store(path, catalog)
    seed_store(first, catalog)
    count = first.count("stations")
    first.close()
    again = open_store(path, catalog)
    assert again.count("stations") == count
    assert not again.is_empty()
    again.close()


def test_bbox_and_filters_match_a_brute_force_scan(store):
    box = (118.02, 36.78, 118.08, 36.83)
    everything = store.all_features("green_channels")
    expected = sorted(
        f.id
        for f in everything
        if shapely.box(*box).intersects(f.geometry) and f.properties["kind"] in {"hospital", "bank"}
    )
    page = store.query(
        "green_channels", bbox=box, filters={"kind": ["hospital", "bank"]}, limit=1000
    )
    assert [f.id for f in page.features] == expected
    assert page.number_matched == len(expected) > 0


def test_polygon_bbox_uses_true_intersection(store):
    # A box in the south-west corner, outside the district's envelope-sharing towns' shapes
    page = store.query("towns", bbox=(117.93, 36.90, 117.935, 36.905), limit=100)
    box = shapely.box(117.93, 36.90, 117.935, 36.905)
    expected = sorted(f.id for f in store.all_features("towns") if f.geometry.intersects(box))
    assert [f.id for f in page.features] == expected
    assert page.number_matched == len(expected)


def test_polygon_bbox_pages_agree_with_the_count(store):
    # Envelopes match more towns than the box really touches: pages must hold
    # only true matches, and walking the pages must give numberMatched in all.
    box = (118.0, 36.78, 118.06, 36.82)
    everything = store.query("towns", bbox=box, limit=100)
    pages = [
        store.query("towns", bbox=box, limit=2, offset=o)
        for o in range(0, everything.number_matched, 2)
    ]
    assert [f.id for p in pages for f in p.features] == [f.id for f in everything.features]
    assert all(
        len(p.features) == min(2, everything.number_matched - 2 * i) for i, p in enumerate(pages)
    )


def test_list_property_filter_matches_any_listed_value(store):
    page = store.query("green_channels", filters={"services": ["free_admission"]}, limit=1000)
    assert page.features
    assert all("free_admission" in f.properties["services"] for f in page.features)


def test_paging_is_stable_and_complete(store):
    ids = [f.id for f in store.all_features("medical")]
    pages = [store.query("medical", limit=7, offset=o) for o in range(0, len(ids), 7)]
    assert [f.id for p in pages for f in p.features] == ids
    assert {p.number_matched for p in pages} == {len(ids)}


def test_the_store_is_a_geopackage_gdal_reads(tmp_path, catalog):
    # About the embedded store's file itself, so it does not run on PostGIS.
    store = open_store(tmp_path / "gdal.gpkg", catalog)
    seed_store(store, catalog)
    store.close()
    path = store.location
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    layers = {name for name, _geometry in pyogrio.list_layers(path)}
    assert set(catalog.layers) <= layers
    frame = pyogrio.read_dataframe(path, layer="stations")
    assert len(frame) == 25 and frame.crs.to_epsg() == 4326
    # GDAL uses our R-tree for its own bbox reads too
    subset = pyogrio.read_dataframe(path, layer="stations", bbox=(118.02, 36.78, 118.08, 36.83))
    assert 0 < len(subset) < len(frame)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path, catalog):
    path = tmp_path / "notes.gpkg"
    path.write_text("these are my notes, not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite file"):
        open_store(path, catalog)
    assert path.read_text().startswith("these are my notes")  # never overwritten


def test_layer_versions_see_writes_from_here_and_from_another_process(store, catalog):
    import subprocess
    import sys

    before = store.layer_versions()
    assert store.layer_versions() == before  # memoised read: same answer
    store.write("green_channels", [_feature(store, "gc-from-here")], actor="test")
    assert store.layer_versions()["green_channels"] == before["green_channels"] + 1
    # Another process writes through its own connection (as a second worker would).
    script = (
        "import sys; from geo_service.sources.catalog import load_catalog; "
        "from geo_service.store import open_store; "
        "s = open_store(sys.argv[1], load_catalog()); "
        "f = s.get('stations', s.query('stations', limit=1).features[0].id); "
        "from geo_service.sources.catalog import ValidFeature; "
        "p = dict(f.properties, name=f.properties['name'] + '（改）'); "
        "s.write('stations', [ValidFeature(f.id, p, f.geometry)], actor='other')"
    )
    subprocess.run([sys.executable, "-c", script, store.location], check=True)
    after = store.layer_versions()
    assert after["stations"] == before["stations"] + 1
    assert after["green_channels"] == before["green_channels"] + 1


def test_an_editors_import_refuses_a_site_moved_out_of_their_towns_after_planning(store):
    """An editor of one town plans an import (a new site, an updated phone);
    before it is written, someone moves one of those sites into another town.
    The towns are checked again inside the write, against the rows as they
    are then: the import is refused and nothing of it lands."""
    stations = store.all_features("stations")
    site = stations[0]
    home = site.properties["town_code"]
    elsewhere = next(s for s in stations if s.properties["town_code"] != home)
    editor_towns = {home}

    def authorize(before, new) -> None:
        if before is not None and before.properties.get("town_code") not in editor_towns:
            raise Forbidden(f"{before.id} is outside the towns this editor may change")

    # Planning: the import's rows, checked against the store as it is now.
    new_site = ValidFeature(
        "st-import-new",
        dict(site.properties, id="st-import-new", name="样例驿站（导入）"),
        site.geometry,
    )
    phone = ValidFeature(site.id, dict(site.properties, phone="0533-1234567"), site.geometry)
    authorize(None, new_site)
    authorize(site, phone)

    # Meanwhile the site moves into another town.
    moved = dict(site.properties, town_code=elsewhere.properties["town_code"])
    store.change(
        "stations",
        site.id,
        ValidFeature(site.id, moved, elsewhere.geometry),
        actor="admin",
        action="replace",
    )
    count, version = store.count("stations"), store.layer_version("stations")
    audit = len(store.audit_records())

    with pytest.raises(Forbidden, match=site.id):
        store.write_layers(
            {"stations": [new_site, phone]}, actor="editor", action="import", authorize=authorize
        )
    assert store.count("stations") == count
    with pytest.raises(FeatureNotFound):
        store.get("stations", "st-import-new")  # written before the refusal, rolled back
    kept = store.get("stations", site.id)
    assert kept.properties["town_code"] == elsewhere.properties["town_code"]
    assert kept.properties["phone"] == site.properties["phone"]
    assert store.layer_version("stations") == version
    assert len(store.audit_records()) == audit


def test_write_layers_asks_authorize_about_every_row_and_every_deletion(store):
    medical = store.all_features("medical")
    first, gone = medical[0], medical[1:]
    changed = ValidFeature(first.id, dict(first.properties, phone="0533-7654321"), first.geometry)
    added = ValidFeature("md-new", dict(first.properties, id="md-new"), first.geometry)
    asked = []
    result = store.write(
        "medical",
        [changed, added],
        actor="admin",
        replace=True,
        authorize=lambda before, new: asked.append(
            (before and before.id, new and new.id, before is not None and before.revision)
        ),
    )
    assert asked[:2] == [(first.id, first.id, first.revision), (None, "md-new", False)]
    assert sorted(a[0] for a in asked[2:]) == sorted(f.id for f in gone)
    assert all(a[1] is None for a in asked[2:])
    assert result.updated == [first.id] and result.inserted == ["md-new"]
    assert sorted(result.deleted) == sorted(f.id for f in gone)
