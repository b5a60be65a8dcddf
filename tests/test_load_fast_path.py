"""``db load``'s fast path: a GeoPackage this service wrote under the target's
own catalog is read raw and each row only gets cheap checks; a hand edit
the cheap checks are for is refused by layer, row and file with nothing
written, and every other file (another catalog) or ``--check`` gets full
validation."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from geo_service.errors import InvalidFeature, InvalidParameter
from geo_service.services import loading
from geo_service.services.loading import load_store, trusted_source
from geo_service.sources.catalog import load_catalog
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.test_bulk_load import _hand_edit, _office_file, _snapshot

ROOT = Path(__file__).resolve().parent.parent
_CLI = [sys.executable, "-m", "geo_service.cli"]


@pytest.fixture
def validated_layers(monkeypatch) -> list[str]:
    """The layers a load validates fully, in order."""
    seen: list[str] = []
    full = loading._validated

    def spy(catalog, layer_id, *args):
        seen.append(layer_id)
        return full(catalog, layer_id, *args)

    monkeypatch.setattr(loading, "_validated", spy)
    return seen


def _blob(x: float, y: float) -> bytes:
    """A GeoPackage point blob as another program could write it."""
    return struct.pack("<2sBBi", b"GP", 0, 1, 4326) + struct.pack("<BIdd", 1, 1, x, y)


def test_an_office_file_loads_by_the_fast_path_feature_for_feature(
    empty_store, tmp_path, catalog, validated_layers
):
    source = _office_file(tmp_path, catalog, extra_stations=2_500)
    office = open_store(source, catalog)
    assert trusted_source(office, catalog)
    results = load_store(office, empty_store, source, actor="db load", chunk=900)
    # Only the layers that are not points (the towns, the context) are validated fully.
    assert sorted(validated_layers) == sorted(
        layer.id for layer in catalog.layers.values() if not layer.is_facility
    )
    for layer_id in catalog.layers:
        mine, theirs = office.all_features(layer_id), empty_store.all_features(layer_id)
        assert [f.id for f in theirs] == [f.id for f in mine], layer_id
        for a, b in zip(mine, theirs, strict=True):
            assert a.properties == b.properties, a.id
            assert a.geometry.equals_exact(b.geometry, 0), a.id
            assert b.revision == 1
        assert len(results[layer_id].inserted) == len(mine)
    assert empty_store.check() == []
    # The loaded sites are found by place, as any other.
    box = (118.0, 36.7, 118.2, 36.9)
    want = office.query("stations", bbox=box, limit=10_000)
    got = empty_store.query("stations", bbox=box, limit=10_000)
    assert want.number_matched > 2_000
    assert [f.id for f in got.features] == [f.id for f in want.features]
    office.close()


_LAST_STATION = "WHERE fid = (SELECT max(fid) FROM stations)"


@pytest.mark.parametrize(
    ("edit", "params", "field"),
    [
        # A bell typed into a name by another program.
        (f"UPDATE stations SET name = 'A' || char(7) || 'B' {_LAST_STATION}", (), "name"),
        # An escaped control character inside a list column's JSON.
        (f"UPDATE stations SET services = ? {_LAST_STATION}", ('["a\\u0001"]',), "services"),
        # A C1 control character in the extras.
        (f"UPDATE stations SET extra = ? {_LAST_STATION}", ('{"note": "x\u0085"}',), "note"),
        # A town that the district does not have.
        (f"UPDATE stations SET town_code = '370303999' {_LAST_STATION}", (), "town_code"),
        # A position that is not a number.
        (
            f"UPDATE stations SET geom = ? {_LAST_STATION}",
            (_blob(math.nan, 36.8),),
            "geometry",
        ),
        # A position off the globe.
        (f"UPDATE stations SET geom = ? {_LAST_STATION}", (_blob(418.0, 36.8),), "geometry"),
        # Bytes where text belongs.
        (f"UPDATE stations SET name = ? {_LAST_STATION}", (b"\x00\x01",), "name"),
        # A list column that is not JSON: every read of the layer would fail.
        (f"UPDATE stations SET services = '[oops' {_LAST_STATION}", (), "cannot be read"),
        # A list value the catalog does not have.
        (f"UPDATE stations SET services = '[\"nope\"]' {_LAST_STATION}", (), "services"),
        # A kind the catalog does not have.
        (f"UPDATE stations SET kind = 'mobile_post' {_LAST_STATION}", (), "kind"),
        # An extra that overrides a checked column on every read.
        (f"UPDATE stations SET extra = ? {_LAST_STATION}", ('{"kind": "bogus"}',), "kind"),
        # An extra shadowing a column with a valid value: the column the store
        # filters on (an editor's towns) and the value read back would differ.
        (f"UPDATE stations SET extra = ? {_LAST_STATION}", ('{"status": "open"}',), "status"),
        # An empty id, the mark of a bulk load's audit record.
        (f"UPDATE stations SET id = '' {_LAST_STATION}", (), "id"),
        # Hours in a form the service never stores (it writes the OSM form).
        (
            f"UPDATE stations SET opening_hours = '周一至周五 9:00-17:00' {_LAST_STATION}",
            (),
            "opening_hours",
        ),
    ],
)
def test_a_hand_edit_the_cheap_checks_look_for_is_refused_and_nothing_is_written(
    empty_store, tmp_path, catalog, edit, params, field
):
    source = _office_file(tmp_path, catalog, extra_stations=1_200)
    _hand_edit(source, edit, params)
    office = open_store(source, catalog)
    assert trusted_source(office, catalog)  # the edit left the catalog's record alone
    rows = office.count("stations")
    before = _snapshot(empty_store, catalog)
    with pytest.raises(InvalidFeature) as refused:
        load_store(office, empty_store, source, actor="db load", chunk=500)
    detail = refused.value.detail
    assert f"row {rows} of stations in office.gpkg" in detail
    assert field in detail
    row_problem = refused.value.problems[0]
    assert row_problem.zh == f"office.gpkg 中 stations 的第 {rows} 行未通过校验，未导入任何数据"
    assert _snapshot(empty_store, catalog) == before
    assert empty_store.check() == []
    office.close()


def test_an_id_given_twice_in_a_hand_edited_file_is_refused(empty_store, tmp_path, catalog):
    source = _office_file(tmp_path, catalog)
    # Another program that rebuilt the table without its UNIQUE constraint,
    # then copied a row.
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE copied AS SELECT * FROM stations;
            INSERT INTO copied SELECT * FROM stations WHERE fid = (SELECT min(fid) FROM stations);
            UPDATE copied SET fid = (SELECT max(fid) + 1 FROM copied)
              WHERE rowid = (SELECT max(rowid) FROM copied);
            DROP TABLE stations;
            ALTER TABLE copied RENAME TO stations;
            """
        )
    office = open_store(source, catalog)
    assert trusted_source(office, catalog)
    rows = office.count("stations")
    before = _snapshot(empty_store, catalog)
    with pytest.raises(InvalidParameter, match=f"row {rows} of stations in office.gpkg") as refused:
        load_store(office, empty_store, source, actor="db load")
    assert "appears twice" in refused.value.detail and "重复" in refused.value.detail
    assert _snapshot(empty_store, catalog) == before
    office.close()


def test_a_false_alarm_of_the_cheap_checks_is_validated_and_loaded(empty_store, tmp_path, catalog):
    # A backslash before an "n" in a name is text, not a line break.
    source = _office_file(tmp_path, catalog)
    _hand_edit(source, f"UPDATE stations SET name = ? {_LAST_STATION}", ("A\\nB",))
    office = open_store(source, catalog)
    load_store(office, empty_store, source, actor="db load")
    assert empty_store.all_features("stations") == office.all_features("stations")
    office.close()


def _their_catalog(tmp_path: Path, catalog):
    """An office's catalog with one more station kind than today's."""
    layers = tmp_path / "their-layers"
    shutil.copytree(ROOT / "layers", layers)
    text = (layers / "catalog.toml").read_text(encoding="utf-8")
    line = 'support_base = { zh = "社会化拥军总部基地", en = "Socialised military support base" }\n'
    assert line in text
    text = text.replace(line, line + 'mobile_post = { zh = "流动服务点", en = "Mobile post" }\n')
    (layers / "catalog.toml").write_text(text, encoding="utf-8")
    theirs = load_catalog(layers)
    assert theirs.fingerprint != catalog.fingerprint
    return theirs


def test_a_file_written_under_another_catalog_is_validated_fully(
    empty_store, tmp_path, catalog, validated_layers
):
    theirs = _their_catalog(tmp_path, catalog)
    source = tmp_path / "theirs.gpkg"
    office = open_store(source, theirs)
    seed_store(office, theirs)
    # A kind their catalog has and today's has not, written through their service.
    site = office.all_features("stations")[0]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [site.geometry.x, site.geometry.y]},
        "properties": dict(site.properties, kind="mobile_post"),
    }
    town_codes = {town.id for town in office.all_features("towns")}
    valid = theirs.validate_feature("stations", feature, town_codes=town_codes)
    office.write("stations", [valid], actor="editor:theirs")
    office.close()
    office = open_store(source, catalog)
    assert not trusted_source(office, catalog)
    before = _snapshot(empty_store, catalog)
    with pytest.raises(InvalidFeature, match="kind") as refused:
        load_store(office, empty_store, source, actor="db load")
    assert "of stations in theirs.gpkg" in refused.value.detail
    assert "stations" in validated_layers
    assert _snapshot(empty_store, catalog) == before
    office.close()


def test_check_validates_every_row_fully(empty_store, tmp_path, catalog, validated_layers):
    # A kind today's catalog does not know, typed into the file: --check
    # validates every row, the command line says so in the user's words.
    source = _office_file(tmp_path, catalog)
    _hand_edit(source, f"UPDATE stations SET kind = 'mobile_post' {_LAST_STATION}")
    office = open_store(source, catalog)
    assert trusted_source(office, catalog)
    before = _snapshot(empty_store, catalog)
    with pytest.raises(InvalidFeature, match="kind"):
        load_store(office, empty_store, source, actor="db load", check=True)
    assert "stations" in validated_layers
    assert _snapshot(empty_store, catalog) == before
    office.close()
    # The command line's --check does the same, in the user's words.
    run = subprocess.run(
        [*_CLI, "db", "load", "--from", str(source), "--store", empty_store.location, "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "office.gpkg" in run.stderr and "kind" in run.stderr
    assert _snapshot(empty_store, catalog) == before


def test_a_file_from_before_the_catalog_was_recorded_is_validated_fully(
    empty_store, tmp_path, catalog, validated_layers
):
    source = _office_file(tmp_path, catalog)
    with sqlite3.connect(source) as conn:
        conn.execute("DELETE FROM gs_meta WHERE key = 'catalog'")
    office = open_store(source, catalog)  # rows of an unknown catalog: never trusted
    assert not trusted_source(office, catalog)
    load_store(office, empty_store, source, actor="db load")
    assert "stations" in validated_layers
    assert empty_store.all_features("stations") == office.all_features("stations")
    office.close()
