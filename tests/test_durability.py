"""Nothing committed is lost and nothing half-written survives: real processes
killed with SIGKILL in the middle of an import and of a burst of writes; a
backup taken while writes go on; tokens added from the CLI honoured by a
running service without a restart."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import shapely

from geo_service.sources.catalog import Catalog
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.server

SITE = "st-town-mashang"

#: Writes one feature over and over, one transaction each: the counter goes
#: into a property and into the geometry together, and is printed only after
#: its commit returned.
WRITER = """
import sys
from shapely.geometry import Point
from geo_service.sources.catalog import ValidFeature, load_catalog
from geo_service.store import open_store

store = open_store(sys.argv[1], load_catalog())
site = store.get("stations", sys.argv[2])
for n in range(1, 1_000_000):
    props = dict(site.properties, responsible_unit=f"write {n}")
    point = Point(site.geometry.x + n * 1e-7, site.geometry.y)
    store.change("stations", site.id, ValidFeature(site.id, props, point), actor="burst",
                 action="patch")
    print(n, flush=True)
"""


def seeded(path: Path, catalog: Catalog):
    store = open_store(path, catalog)
    seed_store(store, catalog)
    return store


def cli(*args: str, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *args],
        env=dict(os.environ, GEO_SERVICE_STORE=str(store)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def start_writer(store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), SITE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def committed_counts(process: subprocess.Popen) -> list[int]:
    out = process.stdout.read() if process.stdout else ""
    return [int(line) for line in out.split()]


def assert_burst_state(store, last_printed: int) -> int:
    """The burst's feature holds a whole write: property and geometry agree,
    and the audit trail has exactly one record per write that landed."""
    site = store.get("stations", SITE)
    landed = int(site.properties["responsible_unit"].split()[1])
    # Printed after the commit: at most one commit may land unprinted.
    assert landed in (last_printed, last_printed + 1)
    records = [r for r in store.audit_records(SITE) if r["actor"] == "burst"]
    assert len(records) == landed
    after = orjson.loads(records[-1]["after"])
    assert after["properties"]["responsible_unit"] == f"write {landed}"
    first = orjson.loads(records[0]["before"])["geometry"]["coordinates"][0]
    assert site.geometry.x == pytest.approx(first + landed * 1e-7, abs=1e-9)
    return landed


def test_kill_9_during_a_burst_of_writes_keeps_every_commit_and_no_partial_one(
    tmp_path: Path, catalog: Catalog
):
    path = tmp_path / "burst.gpkg"
    seeded(path, catalog).close()
    process = start_writer(path)
    time.sleep(2.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    counts = committed_counts(process)
    assert len(counts) > 10, process.stderr.read() if process.stderr else ""
    store = open_store(path, catalog)
    try:
        assert store.check() == []
        landed = assert_burst_state(store, counts[-1])
        assert landed >= 10
    finally:
        store.close()


def _district_points(store, n: int, seed: int = 5) -> list[tuple[float, float]]:
    """Random points inside the district's towns (shrunk a little off the edges)."""
    rng = np.random.default_rng(seed)
    towns = shapely.union_all([t.geometry for t in store.all_features("towns")]).buffer(-0.002)
    west, south, east, north = towns.bounds
    points: list[tuple[float, float]] = []
    while len(points) < n:
        xs = rng.uniform(west, east, n)
        ys = rng.uniform(south, north, n)
        inside = shapely.contains_xy(towns, xs, ys)
        points += list(zip(xs[inside].tolist(), ys[inside].tolist(), strict=True))
    return points[:n]


def _write_csv(path: Path, points: list[tuple[float, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "名称", "类型", "地址", "经度", "纬度"])
        for i, (lon, lat) in enumerate(points):
            writer.writerow(
                [f"bulk-{i:06d}", f"批量驿站{i}", "拥军服务驿站", f"测试路{i}号", lon, lat]
            )


def test_kill_9_during_a_large_import_leaves_all_or_nothing(tmp_path: Path, catalog: Catalog):
    # Large enough that the bulk path's write outlasts SQLite's page cache
    # (2 MB) by far: its pages spill into the WAL while the transaction is open.
    rows = 20_000
    source = tmp_path / "bulk.csv"
    store_path = tmp_path / "import.gpkg"
    store = seeded(store_path, catalog)
    _write_csv(source, _district_points(store, rows))
    before = store.count("stations")
    store.close()
    wal = store_path.with_name(store_path.name + "-wal")
    base_wal = wal.stat().st_size if wal.exists() else 0
    process = subprocess.Popen(
        [sys.executable, "-m", "geo_service.cli", "import", str(source), "--layer", "stations"],
        env=dict(os.environ, GEO_SERVICE_STORE=str(store_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    # Kill once the write transaction is under way: its pages spill into the WAL.
    deadline = time.monotonic() + 240
    killed_mid_write = False
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > base_wal + 200_000:
            process.send_signal(signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.005)
    process.wait(timeout=30)
    assert killed_mid_write, "the import finished (or failed) before it could be killed: " + (
        process.stderr.read().decode() if process.stderr else ""
    )
    store = open_store(store_path, catalog)
    try:
        assert store.check() == []
        assert store.count("stations") == before  # the import never committed
        # Neither per-row records nor the bulk path's one record (this many new sites: bulk).
        assert not [r for r in store.audit_records() if r["action"] in {"import", "load"}]
        with pytest.raises(LookupError):
            store.get("stations", "bulk-000000")
    finally:
        store.close()
    # The same import, left alone, lands completely.
    done = cli("import", str(source), "--layer", "stations", store=store_path)
    assert done.returncode == 0, done.stderr
    store = open_store(store_path, catalog)
    try:
        assert store.check() == []
        assert store.count("stations") == before + rows
        (load,) = [r for r in store.audit_records() if r["action"] in {"import", "load"}]
        assert load["action"] == "load" and orjson.loads(load["after"])["inserted"] == rows
    finally:
        store.close()


def test_a_backup_taken_during_writes_is_one_consistent_snapshot(tmp_path: Path, catalog: Catalog):
    path = tmp_path / "live.gpkg"
    seeded(path, catalog).close()
    process = start_writer(path)
    try:
        time.sleep(1.0)
        out = tmp_path / "backup.gpkg"
        result = cli("backup", "--out", str(out), store=path)
        assert result.returncode == 0, result.stderr
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    copy = open_store(out, catalog)
    try:
        assert copy.check() == []
        landed = int(copy.get("stations", SITE).properties["responsible_unit"].split()[1])
        assert landed > 0  # taken while the writer was writing
        # Feature table and audit table come from the same instant.
        assert len([r for r in copy.audit_records(SITE) if r["actor"] == "burst"]) == landed
    finally:
        copy.close()
    assert cli("backup", "--out", str(out), store=path).returncode != 0  # never overwrites


def test_tokens_added_and_revoked_from_the_cli_count_at_once_in_every_worker(tmp_path: Path):
    with running_server(tmp_path, "--workers", "2") as base:
        store = tmp_path / "live.gpkg"
        added = cli(
            "tokens", "add", "--name", "ms", "--role", "editor", "--towns", "370303009", store=store
        )
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().splitlines()[-1]
        listed = cli("tokens", "list", store=store)
        assert "ms" in listed.stdout and token not in listed.stdout
        url = f"{base}/collections/stations/items/{SITE}"
        with httpx.Client(timeout=10) as http:
            statuses = set()
            for _ in range(12):  # spread over both workers
                etag = http.get(url).headers["ETag"]
                response = http.patch(
                    url,
                    json={"properties": {"phone": "0533-2100009"}},
                    headers={"Authorization": f"Bearer {token}", "If-Match": etag},
                )
                statuses.add(response.status_code)
            assert statuses == {200}
            assert cli("tokens", "revoke", "ms", store=store).returncode == 0
            for _ in range(6):
                response = http.patch(
                    url,
                    json={"properties": {"phone": "0533-2100010"}},
                    headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
                )
                assert response.status_code == 401
        audit = cli("audit", "--user", "ms", store=store)
        assert audit.returncode == 0 and "patch" in audit.stdout
        assert token not in audit.stdout


def test_backup_of_either_backend_holds_the_store(store, tmp_path: Path):
    target = tmp_path / "backup.bin"
    store.backup(target)
    if store.location.startswith("postgresql"):
        listing = subprocess.run(
            ["pg_restore", "--list", str(target)], capture_output=True, text=True, check=False
        )
        assert listing.returncode == 0, listing.stderr
        assert "layer_stations" in listing.stdout and "gs_audit" in listing.stdout
        return
    copy = open_store(target, store.catalog)
    try:
        assert copy.check() == []
        for layer_id in store.catalog.layers:
            assert copy.count(layer_id) == store.count(layer_id)
        assert len(copy.audit_records()) == len(store.audit_records())
    finally:
        copy.close()


def test_restore_from_the_cli_brings_back_a_deleted_site(tmp_path: Path, catalog: Catalog):
    path = tmp_path / "restore.gpkg"
    store = seeded(path, catalog)
    before = store.get("stations", SITE)
    store.change("stations", SITE, None, actor="office", action="delete", if_match=before.etag)
    store.close()
    result = cli("restore", SITE, store=path)
    assert result.returncode == 0, result.stderr
    store = open_store(path, catalog)
    try:
        after = store.get("stations", SITE)
        assert after.properties == before.properties
        assert after.geometry.equals(before.geometry)
        assert [r["action"] for r in store.audit_records(SITE)][-2:] == ["delete", "restore"]
        assert store.audit_records(SITE)[-1]["actor"].startswith("cli:")
    finally:
        store.close()
    again = cli("restore", SITE, store=path)
    assert again.returncode == 2 and "not a deleted feature" in again.stderr
    never = cli("restore", "no-such-site", store=path)
    assert never.returncode == 2 and "never been deleted" in never.stderr
