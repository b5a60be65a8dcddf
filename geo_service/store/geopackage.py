"""The embedded store: one SQLite file that is a valid GeoPackage (QGIS opens it).

Each catalog layer is a GeoPackage feature table in EPSG:4326 with an R-tree
spatial index (the ``gpkg_rtree_index`` extension, maintained by the standard
triggers). Catalog properties are real columns, so QGIS shows them; lists are
JSON text and unknown properties live in a JSON ``extra`` column. Private
tables prefixed ``gs_`` hold per-layer change counters and the audit trail.

Every write is one ``BEGIN IMMEDIATE`` transaction in WAL mode with
``synchronous=FULL``: a crash leaves either all of a write or none of it.
Reads and writes borrow one of at most ``pool_size`` connections; in WAL mode
readers see every committed write and never wait for the writer.

After each commit a writer also writes a new random number into 8 bytes of a
file beside the store (``<store>-changes``) that every process with the
store open has mapped into memory: the store's ``change_token``, which the
hot read paths compare without a query, in any worker.
"""

from __future__ import annotations

import mmap
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import FeatureNotFound, InvalidParameter, StoreError
from geo_service.sources.catalog import Catalog, Layer, PropertySpec, ValidFeature
from geo_service.store.base import (
    SITE_ROWS_BATCH,
    BBox,
    Envelopes,
    Page,
    SiteRows,
    Store,
    StoredFeature,
    stored_geometry,
)
from geo_service.store.filtering import Filter, SqlDialect, register_sqlite_functions

__all__ = [
    "GeoPackageStore",
    "PackageLayout",
    "blob_wkb",
    "package_columns",
    "package_layout",
    "package_properties",
    "point_positions",
]

_SRS_ID = 4326
_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_SCHEMA_VERSION = "1"
_MIXED = "mixed"  # gs_meta catalog: rows checked against more than one catalog

_GPKG_CORE = """
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
CREATE TABLE IF NOT EXISTS gpkg_extensions (
  table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL,
  scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name));
CREATE TABLE IF NOT EXISTS gs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gs_layer_state (
  layer_id TEXT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS gs_audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, layer_id TEXT NOT NULL, feature_id TEXT NOT NULL, town_code TEXT,
  before TEXT, after TEXT, previous_town_code TEXT);
CREATE INDEX IF NOT EXISTS gs_audit_feature ON gs_audit (layer_id, feature_id);
CREATE INDEX IF NOT EXISTS gs_audit_layer_seq ON gs_audit (layer_id, seq);
CREATE TABLE IF NOT EXISTS gs_tokens (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, towns TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS gs_users (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, towns TEXT NOT NULL, password_hash TEXT NOT NULL,
  created_at TEXT NOT NULL, disabled_at TEXT, failed_sign_ins INTEGER NOT NULL DEFAULT 0,
  locked_until TEXT);
CREATE TABLE IF NOT EXISTS gs_sessions (
  session_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES gs_users (name),
  csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, last_seen TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS gs_sessions_user ON gs_sessions (user_name);
CREATE TABLE IF NOT EXISTS gs_jobs (
  id TEXT PRIMARY KEY, process TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('accepted', 'running', 'successful', 'failed',
    'dismissed')),
  progress INTEGER NOT NULL DEFAULT 0, message TEXT, inputs TEXT, cache_key TEXT, owner TEXT,
  actor TEXT, created TEXT NOT NULL, started TEXT, finished TEXT, updated TEXT NOT NULL,
  result BLOB, result_media TEXT);
CREATE INDEX IF NOT EXISTS gs_jobs_cache ON gs_jobs (process, cache_key, status);
CREATE INDEX IF NOT EXISTS gs_jobs_created ON gs_jobs (created);
"""

_SQL_TYPES = {"boolean": "BOOLEAN", "integer": "INTEGER", "date": "DATE"}


# -- GeoPackage geometry blobs (GPKG spec 2.1.3) ------------------------------


#: A point's blob header: little-endian, no envelope, EPSG:4326.
_POINT_HEADER = struct.pack("<2sBBi", b"GP", 0, 0b00000001, _SRS_ID)


def _to_blob(geometry: BaseGeometry) -> bytes:
    if geometry.geom_type == "Point":
        return _POINT_HEADER + shapely.to_wkb(geometry, byte_order=1, flavor="iso")
    minx, miny, maxx, maxy = geometry.bounds
    header = struct.pack("<2sBBi4d", b"GP", 0, 0b00000011, _SRS_ID, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geometry, byte_order=1, flavor="iso")


_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_POINT_WKB = struct.Struct("<BIdd")


def blob_wkb(blob: bytes) -> bytes:
    """The WKB inside a GeoPackage geometry blob (its header sliced off)."""
    envelope = _ENVELOPE_BYTES[(blob[3] >> 1) & 0b111]
    return bytes(blob[8 + envelope :])


def _from_blob(blob: bytes) -> BaseGeometry:
    return shapely.from_wkb(blob_wkb(blob))


#: A point blob as this store writes it, up to its coordinates: the header,
#: then little-endian WKB of type 1.
_POINT_PREFIX = np.frombuffer(_POINT_HEADER + b"\x01\x01\x00\x00\x00", dtype=np.uint8)


def point_positions(blobs: Sequence[Any]) -> np.ndarray:
    """The lon/lat of many point blobs read straight from their bytes, one
    row each, NaN for a blob that is not a point as this store writes it
    (another geometry, an envelope, big-endian, not bytes)."""
    out = np.full((len(blobs), 2), np.nan)
    size = len(_POINT_PREFIX) + 16
    sized = [i for i, blob in enumerate(blobs) if type(blob) is bytes and len(blob) == size]
    if sized:
        cells = np.frombuffer(b"".join([blobs[i] for i in sized]), dtype=np.uint8)
        cells = cells.reshape(len(sized), size)
        points = (cells[:, : len(_POINT_PREFIX)] == _POINT_PREFIX).all(axis=1)
        xy = np.ascontiguousarray(cells[:, len(_POINT_PREFIX) :]).view("<f8")
        out[np.asarray(sized)[points]] = xy[points]
    return out


#: Ids per ``IN (...)`` list: SQLite allows 32,766 variables; stay well below.
_IDS_PER_QUERY = 500


def _blob_bounds(blob: bytes | None) -> tuple[float, float, float, float] | None:
    if blob is None:
        return None
    # The R-tree triggers ask four times per written row: read a point's
    # coordinates straight from its little-endian WKB instead of parsing it.
    if len(blob) == 8 + _POINT_WKB.size and (blob[3] >> 1) & 0b111 == 0:
        order, kind, x, y = _POINT_WKB.unpack_from(blob, 8)
        if order == 1 and kind == 1 and x == x and y == y:  # not NaN (an empty point)
            return (x, y, x, y)
    geometry = _from_blob(blob)
    return None if geometry.is_empty else geometry.bounds


def _point_coordinates(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of point blobs, read as one array when every
    blob is the plain little-endian point ``_to_blob`` writes."""
    size = 8 + _POINT_WKB.size
    joined = b"".join(blobs)
    if len(joined) == size * len(blobs):
        raw = np.frombuffer(joined, np.uint8).reshape(len(blobs), size)
        plain = (
            ((raw[:, 3] >> 1) & 0b111 == 0).all()
            and (raw[:, 8] == 1).all()
            and (raw[:, 9:13] == (1, 0, 0, 0)).all()
        )
        if plain:
            xy = raw[:, 13:].copy().view("<f8")
            return xy[:, 0], xy[:, 1]
    points = [_from_blob(blob) for blob in blobs]
    return shapely.get_x(points), shapely.get_y(points)


def _register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the GeoPackage R-tree triggers call."""

    def pick(i: int):
        def fn(blob):
            bounds = _blob_bounds(blob)
            return None if bounds is None else bounds[i]

        return fn

    conn.create_function("ST_MinX", 1, pick(0), deterministic=True)
    conn.create_function("ST_MinY", 1, pick(1), deterministic=True)
    conn.create_function("ST_MaxX", 1, pick(2), deterministic=True)
    conn.create_function("ST_MaxY", 1, pick(3), deterministic=True)
    conn.create_function(
        "ST_IsEmpty", 1, lambda blob: 1 if _blob_bounds(blob) is None else 0, deterministic=True
    )
    register_sqlite_functions(conn, _from_blob)


def _rtree_sql(table: str) -> str:
    t, c, i = table, "geom", "fid"
    r = f"rtree_{t}_{c}"
    values = f"(NEW.{i}, ST_MinX(NEW.{c}), ST_MaxX(NEW.{c}), ST_MinY(NEW.{c}), ST_MaxY(NEW.{c}))"
    return f"""
CREATE VIRTUAL TABLE "{r}" USING rtree(id, minx, maxx, miny, maxy);
CREATE TRIGGER "{r}_insert" AFTER INSERT ON "{t}"
  WHEN (NEW.{c} NOT NULL AND NOT ST_IsEmpty(NEW.{c}))
  BEGIN INSERT OR REPLACE INTO "{r}" VALUES {values}; END;
CREATE TRIGGER "{r}_update1" AFTER UPDATE OF {c} ON "{t}"
  WHEN OLD.{i} = NEW.{i} AND (NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c}))
  BEGIN INSERT OR REPLACE INTO "{r}" VALUES {values}; END;
CREATE TRIGGER "{r}_update2" AFTER UPDATE OF {c} ON "{t}"
  WHEN OLD.{i} = NEW.{i} AND (NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c}))
  BEGIN DELETE FROM "{r}" WHERE id = OLD.{i}; END;
CREATE TRIGGER "{r}_update3" AFTER UPDATE ON "{t}"
  WHEN OLD.{i} != NEW.{i} AND (NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c}))
  BEGIN DELETE FROM "{r}" WHERE id = OLD.{i}; INSERT OR REPLACE INTO "{r}" VALUES {values}; END;
CREATE TRIGGER "{r}_update4" AFTER UPDATE ON "{t}"
  WHEN OLD.{i} != NEW.{i} AND (NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c}))
  BEGIN DELETE FROM "{r}" WHERE id IN (OLD.{i}, NEW.{i}); END;
CREATE TRIGGER "{r}_delete" AFTER DELETE ON "{t}" WHEN OLD.{c} NOT NULL
  BEGIN DELETE FROM "{r}" WHERE id = OLD.{i}; END;
INSERT INTO gpkg_extensions VALUES ('{t}', '{c}', 'gpkg_rtree_index',
  'http://www.geopackage.org/spec120/#extension_rtree', 'write-only');
"""


#: How often a reader makes sure the change file it maps is still the one at
#: its path (a clean-up or a restore of the folder may have replaced it).
SIGNAL_RECHECK_S = 0.5


class _ChangeSignal:
    """The change token shared by every process that has the store open: 8
    bytes of ``<store>-changes`` beside the real file (a symlinked store
    shares it with its target), mapped shared, so reading it is a memory
    read. Each commit writes a new random value (not a count: two writers
    incrementing at once could write the same number and hide a change);
    a torn read can only look like another change, never like none.

    A writer writes to the file at the path, mapping it again if it was
    replaced or removed; a reader looks at most every ``SIGNAL_RECHECK_S``
    and answers None (ask the store) once after mapping a new one."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) mapped
        self._checked = time.monotonic()
        self._open()

    def _open(self) -> None:
        # The mapping replaced is left to a reader that may still hold it.
        self._map, self._file = None, None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # a folder we cannot write: no token, the stores ask the versions
        try:
            stat = os.fstat(fd)
            if stat.st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
            self._file = (stat.st_dev, stat.st_ino)
        except OSError:
            self._map = None
        finally:
            os.close(fd)

    def _mapped_again(self) -> bool:
        """Map the file now at the path if it is not the one mapped; whether it was not."""
        try:
            stat = os.stat(self.path)
            there = (stat.st_dev, stat.st_ino)
        except OSError:
            there = None
        if there is not None and there == self._file:
            return False
        with self._lock:
            self._open()
        return True

    def token(self) -> int | None:
        now = time.monotonic()
        if now - self._checked >= SIGNAL_RECHECK_S:
            self._checked = now
            if self._mapped_again():
                return None  # what the new file says was never seen here
        signal = self._map
        return None if signal is None else int.from_bytes(signal[:8], "little")

    def changed(self) -> None:
        self._mapped_again()
        signal = self._map
        if signal is not None:
            signal[:8] = secrets.token_bytes(8)

    def close(self) -> None:
        self._map, self._file = None, None


class _Connection(sqlite3.Connection):
    """A pooled connection. ``versions`` memoises ``layer_versions`` for this
    connection alone: SQLite's ``data_version`` is per connection."""

    versions: tuple[tuple[int, int], dict[str, int]] | None = None
    generation = 0


class _ConnectionPool:
    """At most ``size`` connections to one file, opened when first needed and
    lent to one thread at a time."""

    def __init__(self, connect: Callable[[], _Connection], size: int, timeout: float):
        self._connect = connect
        self.size = size
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._count = 0  # open or being opened, idle or lent: never above size
        self._opened = 0
        self._generation = 0  # close() moves it; older connections close on return
        self._cond = threading.Condition()

    def acquire(self) -> _Connection:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not self._idle and self._count >= self.size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreError(
                        f"no database connection came free within {self.timeout:g} s "
                        f"(all {self.size} are busy)"
                    )
                self._cond.wait(remaining)
            if self._idle:
                return self._idle.pop()  # the most recently used: its pages are warm
            self._count += 1
            generation = self._generation
        try:
            conn = self._connect()
        except BaseException:
            self._forget()
            raise
        conn.generation = generation
        with self._cond:
            self._opened += 1
        return conn

    def release(self, conn: _Connection) -> None:
        usable = conn.generation == self._generation
        if usable and conn.in_transaction:  # a failed ROLLBACK left one open
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                usable = False
        if not usable:
            conn.close()
            self._forget()
            return
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def _forget(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()

    def close(self) -> None:
        """Close the idle connections now and lent ones when they come back."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._generation += 1
            self._cond.notify_all()
        for conn in idle:
            conn.close()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "max_size": self.size,
                "open": self._count,
                "opened": self._opened,
                "in_use": self._count - len(self._idle),
            }


class GeoPackageStore(Store):
    """A GeoPackage file holding every catalog layer; created on first open.

    ``pool_size`` bounds the connections open at once; a read or write that
    finds them all busy for ``pool_timeout`` seconds fails with ``StoreError``.
    """

    def __init__(
        self,
        path: Path | str,
        catalog: Catalog,
        *,
        pool_size: int = 4,
        pool_timeout: float = 30.0,
    ):
        if pool_size < 1:
            raise InvalidParameter("pool_size", "the pool needs at least one connection")
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.catalog = catalog
        self._pool = _ConnectionPool(self._connect, pool_size, pool_timeout)
        self._held = threading.local()  # the connection this thread has borrowed
        self._lock = threading.Lock()
        self._writes = 0  # commits through this object: part of the layer_versions memo
        self._layouts: dict[str, PackageLayout] = {}  # by layer id (the catalog is fixed)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the store's folder: {error.strerror}") from None
        try:
            self._initialise()
        except BaseException:
            self._pool.close()
            raise
        # Only beside a file that proved to be a store. Opening may have
        # created or upgraded it: that is a change too.
        real = self.path.resolve()
        self._signal = _ChangeSignal(real.with_name(real.name + "-changes"))
        self._signal.changed()

    # -- connections ----------------------------------------------------------

    def _connect(self) -> _Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=30.0,
                check_same_thread=False,  # lent to one thread at a time by the pool
                factory=_Connection,
            )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path.name} is not a usable SQLite file: {error}") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            conn.close()
            raise StoreError(f"{self.path.name} is not a usable SQLite file: {error}") from None
        _register_functions(conn)
        return conn

    @contextmanager
    def _borrow(self) -> Iterator[_Connection]:
        # A thread already holding a connection (a read inside its own write)
        # keeps using it: a second borrow could wait on itself, and the read
        # should see the write's rows, as it did with one connection per thread.
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        conn = self._pool.acquire()
        self._held.conn = conn
        try:
            yield conn
        finally:
            self._held.conn = None
            self._pool.release(conn)

    def close(self) -> None:
        self._pool.close()
        self._signal.close()

    #: The writer moves the shared signal right after its COMMIT.
    token_moves_at_commit = True

    def change_token(self) -> int | None:
        """The shared change signal (``_ChangeSignal``): a memory read."""
        return self._signal.token()

    def pool_stats(self) -> dict[str, int]:
        return self._pool.stats()

    def _initialise(self) -> None:
        with self._borrow() as conn:
            self._initialise_on(conn)

    def _initialise_on(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
            conn.execute("PRAGMA user_version = 10400")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path.name} is not a usable SQLite file: {error}") from None
        try:
            for statement in _GPKG_CORE.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES "
                "('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', NULL), "
                "('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', NULL), "
                "('WGS 84 geodetic', 4326, 'EPSG', 4326, ?, 'longitude/latitude, WGS 84')",
                (_WGS84_WKT,),
            )
            conn.execute(
                "INSERT OR IGNORE INTO gs_meta VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
            )
            audit_columns = {row["name"] for row in conn.execute("PRAGMA table_info(gs_audit)")}
            if "previous_town_code" not in audit_columns:  # a store from before tokens
                conn.execute("ALTER TABLE gs_audit ADD COLUMN previous_town_code TEXT")
            for layer in self.catalog.layers.values():
                self._ensure_table(conn, layer)
            self._record_catalog(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _record_catalog(self, conn: sqlite3.Connection) -> None:
        """Which catalog the rows were checked against (``validated_against``):
        this one for an empty file; for rows checked against another catalog
        or an unrecorded one, "mixed", never to match again."""
        fingerprint = self.catalog.fingerprint
        row = conn.execute("SELECT value FROM gs_meta WHERE key = 'catalog'").fetchone()
        if row is not None and row[0] == fingerprint:
            return
        empty = all(
            conn.execute(f'SELECT 1 FROM "{layer_id}" LIMIT 1').fetchone() is None
            for layer_id in self.catalog.layers
        )
        conn.execute(
            "INSERT OR REPLACE INTO gs_meta VALUES ('catalog', ?)",
            (fingerprint if empty else _MIXED,),
        )

    def _ensure_table(self, conn: sqlite3.Connection, layer: Layer) -> None:
        exists = conn.execute(
            "SELECT 1 FROM gpkg_contents WHERE table_name = ?", (layer.id,)
        ).fetchone()
        columns = ", ".join(
            f'"{spec.name}" {_SQL_TYPES.get(spec.type, "TEXT")}'
            for spec in layer.properties.values()
            if spec.name != "id"
        )
        gtype = {"Point": "POINT", "Polygon": "MULTIPOLYGON"}.get(layer.geometry, "GEOMETRY")
        if not exists:
            conn.execute(
                f'CREATE TABLE "{layer.id}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, '
                f'geom {gtype}, "id" TEXT NOT NULL UNIQUE, {columns}, extra TEXT, '
                f"revision INTEGER NOT NULL DEFAULT 1)"
            )
            conn.execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, "
                "srs_id) VALUES (?, 'features', ?, ?, ?)",
                (layer.id, layer.id, f"{layer.zh} / {layer.en}", _SRS_ID),
            )
            conn.execute(
                "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
                (layer.id, gtype, _SRS_ID),
            )
            for statement in _rtree_sql(layer.id).split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO gs_layer_state VALUES (?, 0)", (layer.id,))
            return
        # A property added to the catalog after the store was created: add its column.
        present = {row["name"] for row in conn.execute(f'PRAGMA table_info("{layer.id}")')}
        for spec in layer.properties.values():
            if spec.name not in present:
                conn.execute(
                    f'ALTER TABLE "{layer.id}" ADD COLUMN "{spec.name}" '
                    f"{_SQL_TYPES.get(spec.type, 'TEXT')}"
                )

    # -- row mapping ----------------------------------------------------------

    def _row_to_feature(self, layer: Layer, row: sqlite3.Row) -> StoredFeature:
        layout = self._layout(layer)
        props = package_properties(layout, [row[name] for name in layout.columns])
        return StoredFeature(
            layer_id=layer.id,
            id=row["id"],
            properties=props,
            geometry=_from_blob(row["geom"]),
            revision=row["revision"],
        )

    def _layout(self, layer: Layer) -> PackageLayout:
        layout = self._layouts.get(layer.id)
        if layout is None:
            layout = self._layouts[layer.id] = package_layout(layer)
        return layout

    def _bulk_rows(self, layer: Layer, features: Sequence[ValidFeature]) -> list[tuple]:
        # The per-row encoder, in the table's column order (package_columns).
        columns = package_columns(layer)[1:]
        return [(f.id, *map(self._feature_values(layer, f).get, columns)) for f in features]

    def _bulk_rows_of_package(self, layer: Layer, rows: Sequence[tuple]) -> list[tuple]:
        return list(rows)  # already this store's own encoding

    def _feature_values(self, layer: Layer, feature: ValidFeature) -> dict[str, Any]:
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in feature.properties.items():
            spec = layer.properties.get(name)
            if spec is None:
                extra[name] = value
            elif name != "id":
                values[name] = _encode(spec, value)
        values["geom"] = _to_blob(stored_geometry(layer, feature.geometry))
        values["extra"] = (
            orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode() if extra else None
        )
        return values

    # -- reads ----------------------------------------------------------------

    def is_empty(self) -> bool:
        with self._reading() as conn:
            return all(
                conn.execute(f'SELECT 1 FROM "{layer_id}" LIMIT 1').fetchone() is None
                for layer_id in self.catalog.layers
            )

    def layer_version(self, layer_id: str) -> int:
        self.catalog.layer(layer_id)
        with self._reading() as conn:
            row = conn.execute(
                "SELECT version FROM gs_layer_state WHERE layer_id = ?", (layer_id,)
            ).fetchone()
        return int(row["version"]) if row else 0

    def layer_versions(self) -> dict[str, int]:
        # Asked on every nearest query, so the table is read only when SQLite's
        # data_version (moves when another connection commits) or this
        # store's own write count says something may have changed. Both the
        # data_version and the memo belong to the connection borrowed: another
        # pooled connection's memo says nothing about this one's data_version.
        with self._reading() as conn:
            stamp = (conn.execute("PRAGMA data_version").fetchone()[0], self._writes)
            memo = conn.versions
            if memo is None or memo[0] != stamp:
                rows = conn.execute("SELECT layer_id, version FROM gs_layer_state").fetchall()
                memo = (stamp, {row["layer_id"]: int(row["version"]) for row in rows})
                conn.versions = memo
        return dict(memo[1])

    def count(self, layer_id: str) -> int:
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            return int(conn.execute(f'SELECT count(*) FROM "{layer.id}"').fetchone()[0])

    def extent(self, layer_id: str) -> BBox | None:
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            row = conn.execute(
                f'SELECT min(minx), min(miny), max(maxx), max(maxy) FROM "rtree_{layer.id}_geom"'
            ).fetchone()
        return None if row[0] is None else (row[0], row[1], row[2], row[3])

    def get(self, layer_id: str, feature_id: str) -> StoredFeature:
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            row = conn.execute(
                f'SELECT * FROM "{layer.id}" WHERE "id" = ?', (feature_id,)
            ).fetchone()
        if row is None:
            raise FeatureNotFound(layer_id, feature_id)
        return self._row_to_feature(layer, row)

    def envelopes(self, layer_id: str) -> Envelopes:
        # The R-tree's own boxes: ``query`` matches a point by them alone.
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            cursor = conn.execute(
                f'SELECT f."id", f.revision, r.minx, r.miny, r.maxx, r.maxy FROM "{layer.id}" '
                f'AS f LEFT JOIN "rtree_{layer.id}_geom" AS r ON r.id = f.fid ORDER BY f."id"'
            )
            cursor.row_factory = None
            rows = cursor.fetchall()
        return Envelopes.of(rows)

    def all_features(self, layer_id: str) -> list[StoredFeature]:
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            rows = conn.execute(f'SELECT * FROM "{layer.id}" ORDER BY "id"').fetchall()
        return [self._row_to_feature(layer, row) for row in rows]

    def get_many(self, layer_id: str, feature_ids: Sequence[str]) -> dict[str, StoredFeature]:
        layer = self.catalog.layer(layer_id)
        wanted = list(dict.fromkeys(feature_ids))
        found: dict[str, StoredFeature] = {}
        with self._reading() as conn:
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" for _ in chunk)
                rows = conn.execute(
                    f'SELECT * FROM "{layer.id}" WHERE "id" IN ({marks})', chunk
                ).fetchall()
                for row in rows:
                    found[row["id"]] = self._row_to_feature(layer, row)
        return found

    def site_rows(
        self, layer_id: str, *, names: bool = False, batch: int = SITE_ROWS_BATCH
    ) -> Iterator[SiteRows]:
        layer = self.catalog.layer(layer_id)
        columns = '"id", geom, "kind", "status", "services", "eligible", "opening_hours"'
        if names:
            columns += ', "name", "address"'
        with self._reading() as conn:
            cursor = conn.execute(f'SELECT {columns} FROM "{layer.id}"')
            cursor.row_factory = None  # plain tuples: a Row per site costs more than the read
            while rows := cursor.fetchmany(batch):
                lon, lat = _point_coordinates([row[1] for row in rows])
                yield SiteRows.of(rows, lon, lat, 2, names)

    def query(
        self,
        layer_id: str,
        *,
        bbox: BBox | None = None,
        filters: dict[str, Sequence[str]] | None = None,
        where: Filter | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page:
        layer = self.catalog.layer(layer_id)
        conditions: list[str] = []
        params: list[Any] = []
        source = f'"{layer.id}" AS f'
        if bbox is not None:
            west, south, east, north = bbox
            # CROSS JOIN fixes the loop order, R-tree outside: with statistics
            # (after ANALYZE) SQLite otherwise walks the whole id index to
            # skip the sort and probes the R-tree per row, 100x slower.
            source = f'"rtree_{layer.id}_geom" AS r CROSS JOIN "{layer.id}" AS f ON f.fid = r.id'
            conditions.append("r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?")
            params += [west, east, south, north]
        for name, accepted in (filters or {}).items():
            clause, values = _filter_clause(layer, name, accepted)
            conditions.append(clause)
            params += values
        if where is not None:
            clause, values = SQL_DIALECT.compile(where)
            conditions.append(clause)
            params += values
        sql_where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        select = f'SELECT f.* FROM {source}{sql_where} ORDER BY f."id"'
        if bbox is not None and layer.geometry != "Point":
            # The R-tree matches envelopes; a polygon must really intersect the box,
            # and that test has to come before paging so pages and counts agree.
            box = shapely.box(*bbox)
            with self._reading() as conn:
                rows = [
                    row
                    for row in conn.execute(select, params)
                    if _from_blob(row["geom"]).intersects(box)
                ]
            features = [self._row_to_feature(layer, row) for row in rows[offset : offset + limit]]
            return Page(features=features, number_matched=len(rows))
        with self._reading() as conn:
            rows = conn.execute(f"{select} LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
            matched = conn.execute(f"SELECT count(*) FROM {source}{sql_where}", params).fetchone()[
                0
            ]
        features = [self._row_to_feature(layer, row) for row in rows]
        return Page(features=features, number_matched=int(matched))

    def tile(self, layer_id: str, z: int, x: int, y: int) -> bytes:
        """A point layer's tile from the R-tree and only the columns the tile
        carries (no feature objects: a low-zoom tile may cover 100,000 sites);
        any other layer by the generic encoder."""
        from geo_service.store.tiles import check_tile, encode_points, query_box, tile_attributes

        check_tile(z, x, y)
        layer = self.catalog.layer(layer_id)
        attributes = tile_attributes(z)
        specs = [layer.properties.get(name) for name in attributes]
        if layer.geometry != "Point" or any(
            spec is None or spec.type in ("list", "boolean") for spec in specs
        ):
            return super().tile(layer_id, z, x, y)
        columns = "".join(f', f."{name}"' for name in attributes)
        west, south, east, north = query_box(z, x, y)
        with self._reading() as conn:
            cursor = conn.cursor()
            cursor.row_factory = None  # plain tuples: Row objects cost more than the query
            rows = cursor.execute(
                f'SELECT f."id", f.geom{columns} FROM "rtree_{layer.id}_geom" AS r '
                f'CROSS JOIN "{layer.id}" AS f ON f.fid = r.id '
                "WHERE r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?",
                (west, east, south, north),
            ).fetchall()
        if not rows:
            return b""
        ids, blobs, *values = zip(*rows, strict=True)
        lon, lat = _point_coordinates(blobs)
        return encode_points(
            layer.id, z, x, y, ids, lon, lat, dict(zip(attributes, values, strict=True))
        )

    # -- transaction primitives (the logic is in Store) -----------------------------

    @contextmanager
    def _transaction(self) -> Iterator[_Connection]:
        # IMMEDIATE takes the write lock at once: checks made inside (If-Match,
        # an id's existence) stay true until COMMIT, across processes too.
        with self._borrow() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
                # After the commit: a reader that sees the new token sees the rows.
                self._signal.changed()
            except BaseException:
                if conn.in_transaction:  # some errors (a full disk) roll back by themselves
                    conn.execute("ROLLBACK")
                raise
            finally:
                # Counted before the connection goes back to the pool, so a
                # reader memo on it (layer_versions) can never miss this commit.
                with self._lock:
                    self._writes += 1

    def _reading(self) -> AbstractContextManager[_Connection]:
        return self._borrow()

    def _sql(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return conn.execute(sql, list(params)).fetchall()

    def _lock_layer(self, conn: sqlite3.Connection, layer: Layer) -> None:
        pass  # BEGIN IMMEDIATE already serialises every writer of the file

    def _read(self, conn: sqlite3.Connection, layer: Layer, feature_id: str):
        row = conn.execute(f'SELECT * FROM "{layer.id}" WHERE "id" = ?', (feature_id,)).fetchone()
        return None if row is None else (row["fid"], self._row_to_feature(layer, row))

    def _read_all(self, conn: sqlite3.Connection, layer: Layer):
        rows = conn.execute(f'SELECT * FROM "{layer.id}" ORDER BY "id"').fetchall()
        return [(row["fid"], self._row_to_feature(layer, row)) for row in rows]

    def _read_many(self, conn: sqlite3.Connection, layer: Layer, feature_ids: Sequence[str]):
        # One parameter (a JSON list), however many ids: SQLite caps the count.
        rows = conn.execute(
            f'SELECT * FROM "{layer.id}" WHERE "id" IN (SELECT value FROM json_each(?))',
            (orjson.dumps(list(feature_ids)).decode(),),
        ).fetchall()
        return [self._row_to_feature(layer, row) for row in rows]

    def _insert(self, conn: sqlite3.Connection, layer: Layer, feature: ValidFeature):
        values = self._feature_values(layer, feature)
        names = ", ".join(f'"{n}"' for n in ["id", *values])
        marks = ", ".join("?" for _ in range(len(values) + 1))
        conn.execute(
            f'INSERT INTO "{layer.id}" ({names}) VALUES ({marks})', [feature.id, *values.values()]
        )
        return self._read(conn, layer, feature.id)[1]

    def _update(self, conn, layer: Layer, handle: int, feature: ValidFeature, revision: int):
        values = self._feature_values(layer, feature)
        assignments = ", ".join(f'"{n}" = ?' for n in values)
        conn.execute(
            f'UPDATE "{layer.id}" SET {assignments}, revision = ? WHERE fid = ?',
            [*values.values(), revision, handle],
        )
        return self._read(conn, layer, feature.id)[1]

    def _delete(self, conn: sqlite3.Connection, layer: Layer, handle: int) -> None:
        conn.execute(f'DELETE FROM "{layer.id}" WHERE fid = ?', (handle,))

    def _bump(self, conn: sqlite3.Connection, layer: Layer) -> None:
        conn.execute(
            "UPDATE gs_layer_state SET version = version + 1 WHERE layer_id = ?", (layer.id,)
        )
        row = conn.execute(
            f'SELECT min(minx), min(miny), max(maxx), max(maxy) FROM "rtree_{layer.id}_geom"'
        ).fetchone()
        conn.execute(
            "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
            "last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?",
            (*tuple(row), layer.id),
        )

    def _has_rows(self, conn: sqlite3.Connection, layer: Layer) -> bool:
        return conn.execute(f'SELECT 1 FROM "{layer.id}" LIMIT 1').fetchone() is not None

    def _handles(self, conn: sqlite3.Connection, layer: Layer, ids: Sequence[str]):
        rows = conn.execute(
            f'SELECT "id", fid FROM "{layer.id}" WHERE "id" IN (SELECT value FROM json_each(?))',
            (orjson.dumps(list(ids)).decode(),),
        )
        return {row[0]: row[1] for row in rows}

    @contextmanager
    def _bulk_inserter(self, conn: sqlite3.Connection, layer: Layer, *, streaming: bool):
        # The R-tree triggers would call the Python ST_MinX... four times per
        # row; they are dropped for the inserts and the R-tree is filled from
        # the blobs here (as GDAL defers it on bulk loads), then the triggers
        # are created again, all inside the caller's transaction: no other
        # connection ever sees the table without them. Not streaming (updates
        # come between the chunks), they are back after each chunk.
        rtree = f"rtree_{layer.id}_geom"
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
            "AND name LIKE ?",
            (layer.id, f"{rtree}_%"),
        ).fetchall()

        def insert(rows: Sequence[tuple]) -> tuple[int, int]:
            if not streaming:
                for name, _sql in triggers:
                    conn.execute(f'DROP TRIGGER "{name}"')
            first = self._insert_rows(conn, layer, rows)
            if not streaming:
                for _name, sql in triggers:
                    conn.execute(sql)
            return first, first + len(rows) - 1

        if streaming:
            for name, _sql in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
        yield insert
        if streaming:
            for _name, sql in triggers:
                conn.execute(sql)

    def _insert_rows(self, conn: sqlite3.Connection, layer: Layer, rows: Sequence[tuple]) -> int:
        """Rows into the table and its R-tree (its triggers dropped); the first fid."""
        rtree = f"rtree_{layer.id}_geom"
        # Past every fid ever used (AUTOINCREMENT never reuses one).
        first = conn.execute(
            f'SELECT max(coalesce((SELECT max(fid) FROM "{layer.id}"), 0), coalesce((SELECT '
            "seq FROM sqlite_sequence WHERE name = ?), 0)) + 1",
            (layer.id,),
        ).fetchone()[0]
        # Every column of the table, whichever properties each feature has.
        columns = package_columns(layer)
        names = ", ".join(f'"{n}"' for n in ["fid", *columns])
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        fids = range(first, first + len(rows))
        conn.executemany(
            f'INSERT INTO "{layer.id}" ({names}) VALUES ({marks})',
            [(fid, *row) for fid, row in zip(fids, rows, strict=True)],
        )
        # The bounds the triggers would take, the points' read at once; an
        # empty geometry has no entry.
        blobs = [row[len(columns) - 2] for row in rows]
        points = point_positions(blobs).tolist()
        boxes = [
            (fid, (x, y, x, y) if x == x and y == y else _blob_bounds(blob))
            for fid, blob, (x, y) in zip(fids, blobs, points, strict=True)
        ]
        conn.executemany(
            f'INSERT INTO "{rtree}" VALUES (?, ?, ?, ?, ?)',
            [(fid, b[0], b[2], b[1], b[3]) for fid, b in boxes if b is not None],
        )
        return first

    def _live_in_range(self, conn: sqlite3.Connection, layer: Layer, first: int, last: int):
        rows = conn.execute(
            f'SELECT * FROM "{layer.id}" WHERE fid BETWEEN ? AND ? ORDER BY fid', (first, last)
        ).fetchall()
        return [self._row_to_feature(layer, row) for row in rows]

    def stream_rows(self, layer_id: str, *, chunk: int = 10_000) -> Iterator[list[tuple]]:
        """Every row of a layer as the table holds it (``package_columns``:
        id, catalog properties, geometry blob, extra JSON), ``chunk`` at a
        time, in the order they were stored: a bulk load's raw read."""
        layer = self.catalog.layer(layer_id)
        names = ", ".join(f'"{n}"' for n in package_columns(layer))
        after = 0
        while True:
            # A page per borrow, as stream_features.
            with self._reading() as conn:
                cursor = conn.execute(
                    f'SELECT fid, {names} FROM "{layer.id}" WHERE fid > ? ORDER BY fid LIMIT ?',
                    (after, chunk),
                )
                cursor.row_factory = None  # plain tuples
                rows = cursor.fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [row[1:] for row in rows]

    def validated_against(self) -> str | None:
        """The fingerprint (``Catalog.fingerprint``) of the catalog every row
        of this file was checked against when written, or None when unknown
        (rows from before it was recorded, or from more than one catalog)."""
        with self._reading() as conn:
            meta = dict(conn.execute("SELECT key, value FROM gs_meta").fetchall())
        if meta.get("schema_version") != _SCHEMA_VERSION:
            return None
        recorded = meta.get("catalog")
        return recorded if recorded and recorded != _MIXED else None

    def stream_features(
        self, layer_id: str, *, chunk: int = 10_000
    ) -> Iterator[list[StoredFeature]]:
        layer = self.catalog.layer(layer_id)
        after = 0
        while True:
            # A page per borrow: the pool's connection is never held between chunks.
            with self._reading() as conn:
                rows = conn.execute(
                    f'SELECT * FROM "{layer.id}" WHERE fid > ? ORDER BY fid LIMIT ?',
                    (after, chunk),
                ).fetchall()
            if not rows:
                return
            after = rows[-1]["fid"]
            yield [self._row_to_feature(layer, row) for row in rows]

    # -- maintenance ---------------------------------------------------------------

    def check(self) -> list[str]:
        """SQLite's integrity and foreign-key checks, and each R-tree against its
        table: the problems found (empty when the file is sound)."""
        with self._reading() as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
            problems += [
                f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")
            ]
            for layer_id in self.catalog.layers:
                name = f"rtree_{layer_id}_geom"
                verdict = conn.execute("SELECT rtreecheck(?)", (name,)).fetchone()[0]
                if verdict != "ok":
                    problems.append(f"{name}: {verdict}")
                problems += self._rtree_problems(conn, layer_id)
        return problems

    def _rtree_problems(self, conn: sqlite3.Connection, layer_id: str) -> list[str]:
        """The R-tree against its table (``rtreecheck`` only checks the tree
        itself): its triggers present, an entry for every row with a geometry
        and none for a row that is gone (what a bulk load fills by hand)."""
        name = f"rtree_{layer_id}_geom"
        problems = []
        triggers = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (layer_id,),
            )
        }
        expected = {
            f"{name}_{t}" for t in ("insert", "update1", "update2", "update3", "update4", "delete")
        }
        if missing := sorted(expected - triggers):
            problems.append(f"{name}: triggers missing: {', '.join(missing)}")
        unindexed = conn.execute(
            f'SELECT count(*) FROM "{layer_id}" AS f WHERE f.geom IS NOT NULL AND NOT EXISTS '
            f'(SELECT 1 FROM "{name}" AS r WHERE r.id = f.fid)'
        ).fetchone()[0]
        if unindexed:
            problems.append(f"{name}: {unindexed} rows of {layer_id} are not in the R-tree")
        orphans = conn.execute(
            f'SELECT count(*) FROM "{name}" AS r WHERE NOT EXISTS '
            f'(SELECT 1 FROM "{layer_id}" AS f WHERE f.fid = r.id)'
        ).fetchone()[0]
        if orphans:
            problems.append(f"{name}: {orphans} entries name no row of {layer_id}")
        return problems

    def backup(self, target: Path) -> None:
        """A consistent copy taken while the service runs: ``VACUUM INTO`` reads
        one snapshot (in WAL mode readers and the writer never block each other)."""
        with self._reading() as conn:
            conn.execute("VACUUM INTO ?", (str(target),))


def package_columns(layer: Layer) -> list[str]:
    """The columns a layer's row is written and read with, in order: id, the
    catalog properties, the geometry blob, the extras as JSON."""
    return ["id", *(name for name in layer.properties if name != "id"), "geom", "extra"]


@dataclass(frozen=True)
class PackageLayout:
    """How a layer's row (``package_columns``) holds its properties: the
    names of the columns up to the geometry (id first), and which of them
    hold lists (JSON text) and booleans (0/1); the rest are as they are."""

    columns: tuple[str, ...]
    names: tuple[str, ...]
    lists: tuple[str, ...]
    booleans: tuple[str, ...]


def package_layout(layer: Layer) -> PackageLayout:
    columns = package_columns(layer)
    specs = layer.properties.values()
    return PackageLayout(
        columns=tuple(columns),
        names=tuple(columns[:-2]),
        lists=tuple(s.name for s in specs if s.type == "list"),
        booleans=tuple(s.name for s in specs if s.type == "boolean"),
    )


def package_properties(layout: PackageLayout, row: Sequence[Any]) -> dict[str, Any]:
    """A row's properties (``row`` in ``package_columns`` order) as the store
    gives them back: catalog properties in catalog order, then the extras
    sorted (they are stored so). The one decoder of a row's properties."""
    props = dict(zip(layout.names, row, strict=False))  # up to the geometry
    for name in layout.lists:
        value = props[name]
        props[name] = orjson.loads(value) if value else []
    for name in layout.booleans:
        if (value := props[name]) is not None:
            props[name] = bool(value)
    if extra := row[-1]:
        props.update(orjson.loads(extra))
    return props


def _encode(spec: PropertySpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.type == "list":
        return orjson.dumps(list(value)).decode()
    if spec.type == "boolean":
        return 1 if value else 0
    return value


def _filter_clause(layer: Layer, name: str, accepted: Sequence[str]) -> tuple[str, list[Any]]:
    spec = layer.properties.get(name)
    if spec is None or name not in layer.filterable:
        raise InvalidParameter(name, f"layer {layer.id} cannot be filtered by {name!r}")
    column = 'f."id"' if name == "id" else f'f."{name}"'
    values: list[Any] = list(accepted)
    if spec.type == "boolean":
        values = [1 if str(v).lower() in {"true", "1", "yes"} else 0 for v in accepted]
    marks = ", ".join("?" for _ in values)
    if spec.type == "list":
        return (f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN ({marks}))", values)
    return f"{column} IN ({marks})", values


_ARRAY_SQL = {
    # every value asked is in the list
    "a_contains": "NOT EXISTS (SELECT 1 FROM json_each({m}) AS w "
    "WHERE w.value NOT IN (SELECT value FROM json_each({j})))",
    # every value in the list is one asked
    "a_containedby": "NOT EXISTS (SELECT 1 FROM json_each({j}) AS e "
    "WHERE e.value NOT IN (SELECT value FROM json_each({m})))",
    "a_overlaps": "EXISTS (SELECT 1 FROM json_each({j}) AS e "
    "WHERE e.value IN (SELECT value FROM json_each({m})))",
    "a_equals": "(json({j}) = json({m}))",
}

#: CQL2 filters in SQLite: catalog properties are columns (lists as JSON
#: text, booleans as 0/1); spatial tests, LIKE and lower case are the Python
#: functions ``filtering.register_sqlite_functions`` adds to each connection.
SQL_DIALECT = SqlDialect(
    mark="?",
    collate="",  # SQLite compares text by code point already
    column=lambda prop: 'f."id"' if prop.column_type == "id" else f'f."{prop.name}"',
    list_json=lambda prop: f'f."{prop.name}"',
    like=lambda expr, mark: f"(gs_like({expr}, {mark}) = 1)",
    lower=lambda expr: f"gs_lower({expr})",
    spatial=lambda name, mark: f"(gs_spatial('{name}', f.geom, {mark}) = 1)",
    dwithin=lambda wkb, metres: f"(gs_dwithin(f.geom, {wkb}, {metres}) = 1)",
    array=lambda op, j, mark: "(" + _ARRAY_SQL[op].format(j=j, m=mark) + ")",
    list_empty=lambda j: f"(COALESCE(json_array_length({j}), 0) = 0)",
    boolean=lambda value: 1 if value else 0,
)
