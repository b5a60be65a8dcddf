"""The bulk load (``geo-service db load``, ``Store.load_layers``): every row
checked, all or nothing even when killed, one audit record per layer, and the
history of the sites it brought still right after later edits."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import shapely

from geo_service.errors import Conflict, Forbidden, InvalidFeature, InvalidParameter
from geo_service.services.importing import apply_import, plan_import
from geo_service.services.loading import load_store
from geo_service.sources.catalog import ValidFeature
from geo_service.sources.crs import CoordinateSystem
from geo_service.store import open_store
from geo_service.store.base import now
from geo_service.store.seeding import seed_store
from tests.test_import import TODAY, _gbk_rows, write_gbk_csv

ROOT = Path(__file__).resolve().parent.parent


def _office_file(tmp_path: Path, catalog, extra_stations: int = 0) -> Path:
    """An office's embedded store: the shipped layers, and as many more
    generated stations as asked (put in by the bulk path itself)."""
    path = tmp_path / "office.gpkg"
    office = open_store(path, catalog)
    seed_store(office, catalog)
    if extra_stations:
        base = office.all_features("stations")[0]

        def chunks():
            for start in range(0, extra_stations, 5_000):
                yield [
                    ValidFeature(
                        f"st-gen-{i:07d}",
                        dict(base.properties, id=f"st-gen-{i:07d}", name=f"生成站点{i}"),
                        shapely.Point(
                            base.geometry.x + (i % 997) * 1e-5, base.geometry.y + (i % 991) * 1e-5
                        ),
                    )
                    for i in range(start, min(start + 5_000, extra_stations))
                ]

        office.load_layers({"stations": chunks()}, actor="test", source="gen", sha256="0")
    office.close()
    return path


def _snapshot(store, catalog):
    """Everything a load could change: every feature, the trail, the versions."""
    return (
        {layer_id: store.all_features(layer_id) for layer_id in catalog.layers},
        len(store.audit_records()),
        store.layer_versions(),
    )


def test_db_load_copies_every_feature_with_one_audit_record_per_layer(
    empty_store, tmp_path, catalog
):
    source = _office_file(tmp_path, catalog, extra_stations=3_000)
    office = open_store(source, catalog)
    versions = empty_store.layer_versions()
    results = load_store(office, empty_store, source, actor="db load", chunk=700)
    for layer_id in catalog.layers:
        mine, theirs = office.all_features(layer_id), empty_store.all_features(layer_id)
        assert [f.id for f in theirs] == [f.id for f in mine], layer_id
        for a, b in zip(mine, theirs, strict=True):
            assert a.properties == b.properties, a.id
            assert a.geometry.equals_exact(b.geometry, 0), a.id
        assert (results[layer_id].inserted and not results[layer_id].updated) or not mine
    assert empty_store.check() == []
    # The spatial index answers for the bulk rows: a box around some generated stations.
    box = (118.0, 36.7, 118.2, 36.9)
    for layer_id in ("stations", "towns"):
        want = office.query(layer_id, bbox=box, limit=10_000)
        got = empty_store.query(layer_id, bbox=box, limit=10_000)
        assert want.number_matched > 0
        assert [f.id for f in got.features] == [f.id for f in want.features]
    records = empty_store.audit_records()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    loaded = [layer_id for layer_id in catalog.layers if office.count(layer_id)]
    assert sorted(r["layer_id"] for r in records) == sorted(loaded)
    for record in records:
        summary = orjson.loads(record["after"])
        assert record["action"] == "load" and record["feature_id"] == ""
        assert record["before"] is None
        assert summary["inserted"] == office.count(record["layer_id"])
        assert summary["source"] == "office.gpkg" and summary["sha256"] == digest
    after = empty_store.layer_versions()
    assert all(after[layer_id] == versions[layer_id] + 1 for layer_id in loaded)
    office.close()


def test_loading_again_changes_nothing(empty_store, tmp_path, catalog):
    source = _office_file(tmp_path, catalog)
    office = open_store(source, catalog)
    load_store(office, empty_store, source, actor="db load")
    before = _snapshot(empty_store, catalog)
    again = load_store(office, empty_store, source, actor="db load")
    for layer_id, result in again.items():
        assert not result.changed
        assert len(result.unchanged) == office.count(layer_id)
    assert _snapshot(empty_store, catalog) == before
    office.close()


def _hand_edit(path: Path, sql: str, params=()) -> None:
    """Another program's edit: the R-tree triggers only need the functions to
    exist (the edits keep every geometry and fid)."""
    with sqlite3.connect(path) as conn:
        for name in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
            conn.create_function(name, 1, lambda blob: 0)
        conn.execute(sql, params)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A control character typed into the file by another program.
        ("UPDATE stations SET name = 'A\x07B' WHERE fid = (SELECT max(fid) FROM stations)", "name"),
        # A town that the district does not have.
        (
            "UPDATE stations SET town_code = '999999999' "
            "WHERE fid = (SELECT min(fid) FROM stations)",
            "town_code",
        ),
    ],
)
def test_a_bad_row_stops_the_load_and_names_it(empty_store, tmp_path, catalog, edit, expected):
    source = _office_file(tmp_path, catalog)
    _hand_edit(source, edit)
    office = open_store(source, catalog)
    before = _snapshot(empty_store, catalog)
    with pytest.raises(InvalidFeature) as refused:
        load_store(office, empty_store, source, actor="db load")
    assert "row " in refused.value.detail and "office.gpkg" in refused.value.detail
    assert expected in refused.value.detail
    assert _snapshot(empty_store, catalog) == before
    assert empty_store.check() == []
    office.close()


def test_an_id_given_twice_or_reserved_by_a_deletion_is_refused(store, catalog):
    before_site = store.all_features("stations")[0]
    store.change("stations", before_site.id, None, actor="editor:test", action="delete")
    before = _snapshot(store, catalog)
    fresh = ValidFeature(
        "st-bulk-one", dict(before_site.properties, id="st-bulk-one"), before_site.geometry
    )
    with pytest.raises(InvalidParameter, match="appears twice"):
        store.load_layers({"stations": [[fresh], [fresh]]}, actor="t", source="f.gpkg", sha256="0")
    assert _snapshot(store, catalog) == before
    revived = ValidFeature(before_site.id, before_site.properties, before_site.geometry)
    with pytest.raises(Conflict, match="reserved"):
        store.load_layers({"stations": [[fresh, revived]]}, actor="t", source="f.gpkg", sha256="0")
    assert _snapshot(store, catalog) == before
    assert store.check() == []


def _in_progress(target: str, schema_or_path) -> bool:
    """Whether the killed-to-be load is writing: COPY running, or the WAL growing."""
    if target == "geopackage":
        wal = Path(f"{schema_or_path}-wal")
        return wal.exists() and wal.stat().st_size > 4_000_000
    import psycopg

    with psycopg.connect(os.environ["GEO_SERVICE_TEST_PG"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY%%' AND query LIKE %s",
            (f"%{schema_or_path}%",),
        ).fetchall()
    return bool(rows)


def test_a_load_killed_midway_leaves_nothing(empty_store, tmp_path, catalog):
    source = _office_file(tmp_path, catalog, extra_stations=120_000)
    before = _snapshot(empty_store, catalog)
    kind = "geopackage" if empty_store.location.endswith(".gpkg") else "postgis"
    marker = empty_store.location if kind == "geopackage" else empty_store.schema
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "db",
            "load",
            "--from",
            str(source),
            "--store",
            empty_store.location,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not _in_progress(kind, marker):
            assert load.poll() is None, f"the load ended before it was seen: {load.stderr.read()!r}"
            assert time.monotonic() < deadline, "the load never showed progress"
            time.sleep(0.02)
        os.kill(load.pid, signal.SIGKILL)
        load.wait(30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == -signal.SIGKILL
    # A new store object: what the file or database holds after the crash.
    reopened = open_store(empty_store.location, catalog)
    deadline = time.monotonic() + 30
    while kind == "postgis" and _in_progress(kind, marker) and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the dead client and rolls back
    assert _snapshot(reopened, catalog) == before
    assert reopened.check() == []
    reopened.close()


def test_history_of_bulk_loaded_sites_after_edits_and_deletions(empty_store, tmp_path, catalog):
    source = _office_file(tmp_path, catalog, extra_stations=50)
    office = open_store(source, catalog)
    store = empty_store
    before_load = now()
    time.sleep(0.01)
    load_store(office, store, source, actor="db load")
    office.close()
    time.sleep(0.01)
    after_load = now()
    time.sleep(0.01)
    edited, deleted, untouched = "st-gen-0000001", "st-gen-0000002", "st-gen-0000003"
    loaded_edited = store.get("stations", edited)
    loaded_deleted = store.get("stations", deleted)
    changed = ValidFeature(
        edited, dict(loaded_edited.properties, name="改过的名字"), loaded_edited.geometry
    )
    store.change("stations", edited, changed, actor="editor:t", action="replace")
    store.change("stations", deleted, None, actor="editor:t", action="delete")
    time.sleep(0.01)
    after_edits = now()

    def as_of(moment):
        return {f.id: f for f in store.features_as_of(moment, ["stations"])["stations"]}

    assert as_of(before_load) == {}
    then = as_of(after_load)
    assert then[edited].properties == loaded_edited.properties
    assert then[deleted].properties == loaded_deleted.properties
    assert untouched in then and len(then) == store.count("stations") + 1
    later = as_of(after_edits)
    assert later[edited].properties["name"] == "改过的名字"
    assert deleted not in later and untouched in later
    assert store.unrecorded_features("stations") == []
    # The edited site's versions: the load, then the edit; back to the load's version.
    records = store.feature_records("stations", edited)
    assert [r["action"] for r in records] == ["load", "replace"]
    assert store.feature_records("stations", untouched)[0]["action"] == "load"
    store.restore_version("stations", edited, int(records[0]["seq"]), actor="editor:t")
    assert store.get("stations", edited).properties == loaded_edited.properties
    # The deleted one's id is reserved, and it comes back as it was.
    assert deleted in store.audited_ids("stations") and "" not in store.audited_ids("stations")
    store.restore("stations", deleted, actor="editor:t")
    assert store.get("stations", deleted).properties == loaded_deleted.properties
    assert store.check() == []


def test_two_loads_into_one_layer_keep_their_own_times(empty_store):
    """A site the second load brought did not exist between the loads, even
    once edited or deleted (which load brought it: its fid, or the last load
    before its first record)."""
    store = empty_store
    geometry = shapely.Point(118.05, 36.8)

    def sites(*ids):
        return [[ValidFeature(i, {"id": i, "name": i, "sample": True}, geometry) for i in ids]]

    store.load_layers({"memorials": sites("m-a1", "m-a2")}, actor="t", source="a", sha256="a")
    time.sleep(0.01)
    between = now()
    time.sleep(0.01)
    store.load_layers(
        {"memorials": sites("m-b1", "m-b2", "m-b3")}, actor="t", source="b", sha256="b"
    )
    time.sleep(0.01)
    after_loads = now()
    time.sleep(0.01)
    store.change("memorials", "m-b1", None, actor="t", action="delete")
    b2 = store.get("memorials", "m-b2")
    renamed = ValidFeature("m-b2", dict(b2.properties, name="renamed"), geometry)
    store.change("memorials", "m-b2", renamed, actor="t", action="replace")

    def ids_as_of(moment):
        return [f.id for f in store.features_as_of(moment, ["memorials"])["memorials"]]

    assert ids_as_of(between) == ["m-a1", "m-a2"]
    assert ids_as_of(after_loads) == ["m-a1", "m-a2", "m-b1", "m-b2", "m-b3"]
    assert ids_as_of(now()) == ["m-a1", "m-a2", "m-b2", "m-b3"]
    loads = [r for r in store.audit_records() if r["action"] == "load"]
    assert store.feature_records("memorials", "m-b2")[0]["seq"] == loads[1]["seq"]
    assert store.feature_records("memorials", "m-a1")[0]["seq"] == loads[0]["seq"]


def test_a_large_import_of_new_sites_is_one_load_record_and_keeps_its_row_report(
    store, tmp_path, catalog
):
    """Made large by lowering the threshold: the three rows of an office's
    CSV are new sites, written in bulk; the row report is the plan's."""
    path = write_gbk_csv(tmp_path / "公园街道绿色通道.csv", _gbk_rows())
    plan = plan_import(
        path, "green_channels", catalog, store, crs=CoordinateSystem.gcj02, today=TODAY
    )
    assert [row.action for row in plan.rows] == ["insert"] * 3
    before = _snapshot(store, catalog)
    refused_id = next(iter(plan.features.values())).id

    def editor_of_other_towns(before_row, new):
        if new is not None and new.id == refused_id:
            raise Forbidden(f"{new.id} is outside the editor's towns")

    # An editor's towns hold in bulk as row by row: nothing is written.
    with pytest.raises(Forbidden):
        apply_import(plan, store, actor="editor:bulk", bulk_from=3, authorize=editor_of_other_towns)
    assert _snapshot(store, catalog) == before
    trail = len(store.audit_records())
    written = apply_import(plan, store, actor="editor:bulk", bulk_from=3)
    assert sorted(written["green_channels"].inserted) == sorted(
        f.id for f in plan.features.values()
    )
    records = store.audit_records()[trail:]
    assert [(r["action"], r["feature_id"]) for r in records] == [("load", "")]
    summary = orjson.loads(records[0]["after"])
    assert summary["inserted"] == 3 and summary["source"] == path.name
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for feature in plan.features.values():
        assert store.get("green_channels", feature.id).properties == feature.properties
        assert store.feature_records("green_channels", feature.id)[0]["action"] == "load"
    assert store.check() == []


def test_the_console_apis_show_a_loaded_site_and_the_load_itself(empty_store, tmp_path, catalog):
    """Over HTTP: a site a load brought has a history (its first version is
    the load), goes back to that version, and the audit log and the
    supervision report read the load's record without stumbling on it."""
    from fastapi.testclient import TestClient

    from geo_service.api import create_app
    from geo_service.services.access import issue_token
    from geo_service.services.supervision import supervision_report
    from geo_service.settings import Settings

    source = _office_file(tmp_path, catalog)
    office = open_store(source, catalog)
    load_store(office, empty_store, source, actor="db load")
    office.close()
    towns = [town.id for town in empty_store.all_features("towns")]
    token = issue_token(empty_store, "office", "admin", [], towns)
    site = empty_store.all_features("stations")[0]
    url = f"/collections/stations/items/{site.id}"
    settings = Settings(store=empty_store.location)
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        history = client.get(f"{url}/history", headers=auth)
        assert history.status_code == 200, history.text
        (loaded,) = history.json()["versions"]
        assert loaded["action"] == "load" and loaded["actor"] == "db load"
        assert {c["field"] for c in loaded["changes"]} >= {"name", "kind", "town_code"}
        etag = client.get(url).headers["ETag"]
        patched = client.patch(
            url, json={"properties": {"name": "改名后的站点"}}, headers={**auth, "If-Match": etag}
        )
        assert patched.status_code == 200, patched.text
        versions = client.get(f"{url}/history", headers=auth).json()["versions"]
        assert [v["action"] for v in versions][-1] == "load" and len(versions) == 2
        etag = client.get(url).headers["ETag"]
        restored = client.post(
            f"{url}/history/{loaded['version']}/restore", headers={**auth, "If-Match": etag}
        )
        assert restored.status_code == 200, restored.text
        assert client.get(url).json()["properties"]["name"] == site.properties["name"]
        audit = client.get("/audit", params={"collection": "stations"}, headers=auth)
        assert audit.status_code == 200, audit.text
        load_records = [r for r in audit.json()["records"] if r["action"] == "load"]
        assert load_records and load_records[0]["feature_id"] == ""
        assert load_records[0]["after"]["inserted"] == empty_store.count("stations")
        from geo_service.runtime import Runtime

        # The supervision state counts every loaded site once, as the office's own file does.
        with Runtime.open(settings, seed=False) as rt:
            loaded_report = supervision_report(rt, None)
        with Runtime.open(Settings(store=str(source)), seed=False) as rt:
            office_report = supervision_report(rt, None)
        assert loaded_report["towns"] and loaded_report["towns"] == office_report["towns"]


def test_bulk_rows_are_stored_as_the_write_path_stores_them(empty_store):
    """Features with different properties in one chunk (an extra column here,
    an optional one missing there) come back exactly as a per-row write keeps them."""
    geometry = shapely.Point(118.05, 36.8)
    shapes = [
        {"name": "甲", "sample": True},
        {"name": "乙", "sample": False, "phone": "0533-2181234", "备注": "办公室自己的列"},
        {"name": "丙", "services": ["priority_queue"]},
    ]

    def features(prefix):
        return [
            ValidFeature(f"{prefix}{i}", {"id": f"{prefix}{i}", **props}, geometry)
            for i, props in enumerate(shapes)
        ]

    empty_store.load_layers({"memorials": [features("bulk-")]}, actor="t", source="f", sha256="0")
    empty_store.write("memorials", features("row-"), actor="t")
    for i in range(len(shapes)):
        bulk = empty_store.get("memorials", f"bulk-{i}").properties
        row = empty_store.get("memorials", f"row-{i}").properties
        assert {**bulk, "id": None} == {**row, "id": None}
