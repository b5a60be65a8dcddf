"""The PostGIS store: the same ``Store`` interface on PostgreSQL + PostGIS.

Chosen with ``GEO_SERVICE_STORE=postgresql://user:pass@host/db`` (a ``schema``
query parameter puts the tables in their own schema, e.g. one per test). One
table per catalog layer: ``id`` (text, unique), ``revision``, ``props`` (the
properties as JSON, in the catalog's order with extras sorted, exactly as the
embedded store returns them) and ``geom`` (EPSG:4326, GiST-indexed). Change
counters and the audit trail live in ``gs_layer_state`` and ``gs_audit``.
Every write is one transaction; ids sort by code point (``COLLATE "C"``), as
in SQLite, so both backends page identically. Reads and writes borrow one of
at most ``pool_size`` connections (``psycopg_pool``), so several server
workers stay well under PostgreSQL's ``max_connections``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import shapely

from geo_service.errors import FeatureNotFound, InvalidParameter, StoreError
from geo_service.sources.catalog import Catalog, Layer, ValidFeature
from geo_service.store.base import (
    SITE_ROWS_BATCH,
    BBox,
    Envelopes,
    Page,
    SiteRows,
    Store,
    StoredFeature,
    normalised,
    stored_geometry,
)
from geo_service.store.filtering import Filter, SqlDialect
from geo_service.store.geopackage import blob_wkb, package_layout, package_properties

__all__ = ["PostGISStore"]

log = logging.getLogger("geo_service.store.postgis")


def _channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of one store (schema): PostgreSQL truncates
    names at 63 bytes, so a long schema name is hashed rather than cut."""
    name = f"gs_changes_{schema}"
    if len(name) <= 63:
        return name
    return f"gs_changes_{hashlib.sha256(schema.encode()).hexdigest()[:32]}"


class ChangeListener:
    """One connection LISTENing on a store's channel, in a daemon thread: it
    counts the notifications that committed writes send (``_bump``), so a
    process learns that something changed without asking the database.

    ``token()`` is that count, or None while not listening (starting, or
    reconnecting after the connection dropped): a change committed then
    sends nothing this listener hears, so callers must ask the database.
    Every new connection counts one more, for whatever it may have missed.
    """

    #: How long one wait for notifications lasts: how soon ``stop`` takes effect.
    WAIT_S = 1.0

    def __init__(self, dsn: str, connect_kwargs: dict[str, Any], channel: str):
        self._dsn = dsn
        # An idle LISTEN connection that a firewall or NAT drops silently
        # would leave the worker trusting a count that no longer moves: TCP
        # keepalives make the drop an error within about a minute, and the
        # loop below reconnects (and counts one more) as for any drop.
        self._connect_kwargs = {
            **connect_kwargs,
            "application_name": "geo-service listener",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self.channel = channel
        self._count = 0
        self._listening = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geo-service listener", daemon=True)
        self._thread.start()

    def token(self) -> int | None:
        with self._lock:
            return self._count if self._listening else None

    @property
    def alive(self) -> bool:
        """False once the thread has ended: stopped, failed, or not carried
        into a forked process (where its count would never move again)."""
        return self._thread.is_alive()

    def moved(self) -> None:
        """This process committed a write: its own readers need not wait for the echo."""
        with self._lock:
            self._count += 1

    def stop(self) -> None:
        """End the thread (within ``WAIT_S``); it closes its connection."""
        self._stop.set()

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.1
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self._dsn, **self._connect_kwargs)
            except psycopg.Error as error:
                log.warning("change listener cannot connect (retrying): %s", error)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                with self._lock:
                    self._count += 1
                    self._listening = True
                delay = 0.1
                while not self._stop.is_set():
                    for _notify in conn.notifies(timeout=self.WAIT_S):
                        with self._lock:
                            self._count += 1
            except psycopg.Error as error:
                if not self._stop.is_set():
                    log.warning("change listener lost its connection (reconnecting): %s", error)
            finally:
                with self._lock:
                    self._listening = False
                conn.close()


_EWKB_SRID = struct.pack("<I", 4326)


def _ewkb_hex(wkb: bytes) -> str:
    """Little-endian 2D WKB as the hex EWKB ``COPY`` takes for a geometry
    column of SRID 4326: the SRID flag and the SRID spliced in after the
    type; anything else through shapely."""
    (kind,) = struct.unpack_from("<I", wkb, 1) if wkb[0] == 1 else (1 << 31,)
    if kind < 1000:
        return (wkb[:1] + struct.pack("<I", kind | 0x20000000) + _EWKB_SRID + wkb[5:]).hex()
    geometry = shapely.set_srid(shapely.from_wkb(wkb), 4326)
    return shapely.to_wkb(geometry, hex=True, include_srid=True)


def _copy_rows(copy: Any, rows: Sequence[tuple], first: int) -> None:
    """Rows in the bulk encoding into a ``COPY``, their fids from ``first``.

    COPY's text format, a chunk in one string: a field only needs its
    backslashes doubled when it holds no tab or line break, which the
    separators' count proves (every row comes validated or checked for
    control characters; a row that is not goes through ``write_row``)."""
    text = "".join(
        [f"{fid}\t{id_}\t{props}\t{geom}\n" for fid, (id_, props, geom) in enumerate(rows, first)]
    )
    lines, tabs = text.count("\n"), text.count("\t")
    if lines == len(rows) and tabs == 3 * len(rows) and "\r" not in text:
        copy.write(text.replace("\\", "\\\\").encode())
    else:
        for fid, row in enumerate(rows, first):
            copy.write_row((fid, *row))


def _stored_properties(layer: Layer, props: dict[str, Any]) -> dict[str, Any]:
    """Catalog properties in catalog order, then extras sorted by name: the
    shape the embedded store gives back, so answers match across backends."""
    base = normalised(layer, props)
    known = {k: v for k, v in base.items() if k == "id" or k in layer.properties}
    extra = {k: base[k] for k in sorted(k for k in base if k not in known)}
    return {**known, **extra}


class PostGISStore(Store):
    """Every catalog layer in one PostgreSQL schema.

    ``pool_size`` bounds the connections open at once (one is kept open);
    a read or write that finds them all busy for ``pool_timeout`` seconds
    fails with ``StoreError`` instead of waiting forever.
    """

    def __init__(
        self, url: str, catalog: Catalog, *, pool_size: int = 4, pool_timeout: float = 30.0
    ):
        import psycopg

        if pool_size < 1:
            raise InvalidParameter("pool_size", "the pool needs at least one connection")
        self._psycopg = psycopg
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.schema = (query.pop("schema", ["public"]) or ["public"])[0]
        if not self.schema.replace("_", "").isalnum():
            raise StoreError(f"schema name {self.schema!r} must be letters, digits and _")
        # Named, so the service's connections are plain in pg_stat_activity.
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "application_name" not in query:
            self._connect_kwargs["application_name"] = "geo-service"
        self.dsn = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self.location = url  # reopening the same store needs the whole URL
        self.catalog = catalog
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._pool: Any = None  # opened after the schema is ready, again after close()
        self._pool_lock = threading.Lock()
        self._opened_before = 0  # connections opened by pools closed since
        self._held = threading.local()  # the connection this thread has borrowed
        self.channel = _channel(self.schema)
        self._listener: ChangeListener | None = None  # started by the first change_token()
        # One plain connection first: a wrong URL or password is reported at
        # once, in PostgreSQL's words (a pool would retry quietly until its
        # timeout), and the schema is ready before any pooled connection exists.
        try:
            first = psycopg.connect(self.dsn, **self._connect_kwargs)
        except psycopg.OperationalError as error:
            raise StoreError(f"cannot connect to PostgreSQL: {error}".strip()) from None
        with first:
            self._configure(first)
            self._initialise_on(first)
        self._open_pool()

    # -- connections and schema ---------------------------------------------------

    def _configure(self, conn) -> None:
        # Connections are in autocommit: a read sees every commit so far and
        # never leaves a transaction open between borrows; writes open theirs
        # with conn.transaction().
        conn.execute(f'SET search_path TO "{self.schema}", public')

    def _open_pool(self):
        from psycopg_pool import ConnectionPool

        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn,
                    kwargs=self._connect_kwargs,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.pool_timeout,
                    # No reset callback: the pool already rolls back a transaction
                    # left open and replaces a broken connection, and with one it
                    # hands every return to a worker thread (layer_versions took
                    # 130 us with it, 40 us without, 25 us unpooled).
                    configure=self._configure,
                    name=f"geo-service:{self.schema}",
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    @contextmanager
    def _borrow(self) -> Iterator[Any]:
        # A thread already holding a connection (a read inside its own write)
        # keeps using it: a second borrow could wait on itself, and the read
        # should see the write's rows, as it did with one connection per thread.
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        from psycopg_pool import PoolTimeout

        pool = self._open_pool()
        try:
            conn = pool.getconn()
        except PoolTimeout:
            raise StoreError(self._no_connection(pool)) from None
        self._held.conn = conn
        try:
            yield conn
        finally:
            self._held.conn = None
            pool.putconn(conn)  # rolls back anything left open, or replaces a broken one

    def _no_connection(self, pool) -> str:
        stats = pool.get_stats()
        if stats.get("pool_size", 0) >= self.pool_size and not stats.get("pool_available"):
            return (
                f"no database connection came free within {self.pool_timeout:g} s "
                f"(all {self.pool_size} are busy)"
            )
        return f"cannot connect to PostgreSQL (gave up after {self.pool_timeout:g} s)"

    def close(self) -> None:
        """Close the pool (idle connections now, borrowed ones as they come
        back) and stop the change listener."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            if pool is not None:
                self._opened_before += pool.get_stats().get("connections_num", 0)
        if listener is not None:
            listener.stop()
        if pool is not None:
            pool.close()

    def change_token(self) -> int | None:
        """The change listener's count (see ``ChangeListener``), started on
        first use: None until it listens, and whenever its connection is down."""
        with self._pool_lock:
            if self._listener is None or not self._listener.alive:
                self._listener = ChangeListener(self.dsn, self._connect_kwargs, self.channel)
            listener = self._listener
        return listener.token()

    def pool_stats(self) -> dict[str, int]:
        with self._pool_lock:
            pool, before = self._pool, self._opened_before
        stats = pool.get_stats() if pool is not None else {}
        open_now = stats.get("pool_size", 0)
        return {
            "max_size": self.pool_size,
            "open": open_now,
            "opened": before + stats.get("connections_num", 0),
            "in_use": open_now - stats.get("pool_available", 0),
        }

    def _table(self, layer: Layer) -> str:
        return f'"{self.schema}"."layer_{layer.id}"'

    def initialise(self) -> None:
        """Create the schema, PostGIS and every layer's table (idempotent):
        what ``geo-service db init`` runs.

        Every worker opens the store at start, often while others write. DDL
        takes table locks even when it changes nothing (``ALTER ... IF NOT
        EXISTS``, ``CREATE INDEX IF NOT EXISTS``), and those deadlocked with
        a concurrent write. So a schema that is complete is left untouched,
        and initialisers that do run DDL queue behind one advisory lock."""
        with self._borrow() as conn:
            self._initialise_on(conn)

    def _initialise_on(self, conn) -> None:
        if self._schema_complete(conn):
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gs-init:{self.schema}",))
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_layer_state '
                "(layer_id text PRIMARY KEY, version bigint NOT NULL DEFAULT 0)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_audit (seq bigserial PRIMARY KEY, '
                "at text NOT NULL, actor text NOT NULL, action text NOT NULL, layer_id text "
                "NOT NULL, feature_id text NOT NULL, town_code text, before json, after json, "
                "previous_town_code text)"
            )
            conn.execute(
                f'ALTER TABLE "{self.schema}".gs_audit ADD COLUMN IF NOT EXISTS '
                "previous_town_code text"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS gs_audit_feature ON "{self.schema}".gs_audit '
                "(layer_id, feature_id)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS gs_audit_layer_seq ON "{self.schema}".gs_audit '
                "(layer_id, seq)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_tokens (name text PRIMARY KEY, '
                "role text NOT NULL, towns text NOT NULL, token_hash text NOT NULL UNIQUE, "
                "created_at text NOT NULL, revoked_at text)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_users (name text PRIMARY KEY, '
                "role text NOT NULL, towns text NOT NULL, password_hash text NOT NULL, "
                "created_at text NOT NULL, disabled_at text, failed_sign_ins integer NOT NULL "
                "DEFAULT 0, locked_until text)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_sessions (session_hash text '
                f'PRIMARY KEY, user_name text NOT NULL REFERENCES "{self.schema}".gs_users '
                "(name), csrf_token text NOT NULL, created_at text NOT NULL, last_seen text "
                "NOT NULL)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS gs_sessions_user ON "{self.schema}".gs_sessions '
                "(user_name)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_jobs (id text COLLATE "C" '
                "PRIMARY KEY, process text NOT NULL, status text NOT NULL CHECK (status IN "
                "('accepted', 'running', 'successful', 'failed', 'dismissed')), progress "
                "integer NOT NULL DEFAULT 0, message text, inputs text, cache_key text, "
                'owner text, actor text, created text COLLATE "C" NOT NULL, started text, '
                "finished text, updated text NOT NULL, result bytea, result_media text)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS gs_jobs_cache ON "{self.schema}".gs_jobs '
                "(process, cache_key, status)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS gs_jobs_created ON "{self.schema}".gs_jobs (created)'
            )
            for layer in self.catalog.layers.values():
                table = self._table(layer)
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (fid bigserial PRIMARY KEY, "
                    'id text COLLATE "C" NOT NULL UNIQUE, revision integer NOT NULL DEFAULT 1, '
                    "props json NOT NULL, geom geometry(Geometry, 4326) NOT NULL)"
                )
                conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "layer_{layer.id}_geom_idx" ON {table} '
                    "USING gist (geom)"
                )
                conn.execute(
                    f'INSERT INTO "{self.schema}".gs_layer_state (layer_id) VALUES (%s) '
                    "ON CONFLICT DO NOTHING",
                    (layer.id,),
                )

    def _schema_complete(self, conn) -> bool:
        """Every table, column, index and layer row ``initialise`` would create exists."""
        tables = ["gs_layer_state", "gs_audit", "gs_tokens", "gs_users", "gs_sessions", "gs_jobs"]
        tables += [f"layer_{layer_id}" for layer_id in self.catalog.layers]
        indexes = [
            "gs_audit_feature",
            "gs_audit_layer_seq",
            "gs_sessions_user",
            "gs_jobs_cache",
            "gs_jobs_created",
        ]
        indexes += [f"layer_{layer_id}_geom_idx" for layer_id in self.catalog.layers]
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = %s "
            "AND tablename = ANY(%s)), (SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'gs_audit' "
            "AND column_name = 'previous_town_code'), (SELECT count(*) FROM pg_indexes "
            "WHERE schemaname = %s AND indexname = ANY(%s))",
            (self.schema, tables, self.schema, self.schema, indexes),
        ).fetchone()
        if row[0] != len(tables) or row[1] != 1 or row[2] != len(indexes):
            return False
        known = conn.execute(
            f'SELECT count(*) FROM "{self.schema}".gs_layer_state WHERE layer_id = ANY(%s)',
            (list(self.catalog.layers),),
        ).fetchone()[0]
        return known == len(self.catalog.layers)

    # -- reads -----------------------------------------------------------------------

    def _feature(self, layer: Layer, row) -> StoredFeature:
        _fid, revision, props, geom = row
        props = props if isinstance(props, dict) else orjson.loads(props)
        return StoredFeature(
            layer_id=layer.id,
            id=props["id"],
            properties=props,
            geometry=shapely.from_wkb(bytes(geom)),
            revision=revision,
        )

    _COLUMNS = "fid, revision, props, ST_AsBinary(geom)"

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One read statement on a borrowed connection."""
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def is_empty(self) -> bool:
        with self._reading() as conn:
            return all(
                conn.execute(f"SELECT 1 FROM {self._table(layer)} LIMIT 1").fetchone() is None
                for layer in self.catalog.layers.values()
            )

    def layer_version(self, layer_id: str) -> int:
        self.catalog.layer(layer_id)
        return self.layer_versions().get(layer_id, 0)

    def layer_versions(self) -> dict[str, int]:
        rows = self._fetchall("SELECT layer_id, version FROM gs_layer_state")
        return {layer_id: int(version) for layer_id, version in rows}

    def count(self, layer_id: str) -> int:
        layer = self.catalog.layer(layer_id)
        return int(self._fetchall(f"SELECT count(*) FROM {self._table(layer)}")[0][0])

    def extent(self, layer_id: str) -> BBox | None:
        layer = self.catalog.layer(layer_id)
        (row,) = self._fetchall(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            f"(SELECT ST_Extent(geom) AS e FROM {self._table(layer)}) AS x"
        )
        return None if row[0] is None else (row[0], row[1], row[2], row[3])

    def get(self, layer_id: str, feature_id: str) -> StoredFeature:
        layer = self.catalog.layer(layer_id)
        rows = self._fetchall(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = %s", (feature_id,)
        )
        if not rows:
            raise FeatureNotFound(layer_id, feature_id)
        return self._feature(layer, rows[0])

    def envelopes(self, layer_id: str) -> Envelopes:
        layer = self.catalog.layer(layer_id)
        rows = self._fetchall(
            "SELECT id, revision, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
            f"FROM {self._table(layer)} ORDER BY id"
        )
        return Envelopes.of(rows)

    def all_features(self, layer_id: str) -> list[StoredFeature]:
        layer = self.catalog.layer(layer_id)
        rows = self._fetchall(f"SELECT {self._COLUMNS} FROM {self._table(layer)} ORDER BY id")
        return [self._feature(layer, row) for row in rows]

    def get_many(self, layer_id: str, feature_ids: Sequence[str]) -> dict[str, StoredFeature]:
        layer = self.catalog.layer(layer_id)
        wanted = list(dict.fromkeys(feature_ids))
        if not wanted:
            return {}
        rows = self._fetchall(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = ANY(%s)", (wanted,)
        )
        return {feature.id: feature for feature in (self._feature(layer, row) for row in rows)}

    def site_rows(
        self, layer_id: str, *, names: bool = False, batch: int = SITE_ROWS_BATCH
    ) -> Iterator[SiteRows]:
        layer = self.catalog.layer(layer_id)
        columns = (
            "id, ST_X(geom), ST_Y(geom), props->>'kind', props->>'status', "
            "props->>'services', props->>'eligible', props->>'opening_hours'"
        )
        if names:
            columns += ", props->>'name', props->>'address'"
        # A server-side cursor streams the rows: a national layer never sits
        # whole in the client. It lives in a transaction (one snapshot).
        with (
            self._reading() as conn,
            conn.transaction(),
            conn.cursor(name="gs_site_rows") as cursor,
        ):
            cursor.execute(f"SELECT {columns} FROM {self._table(layer)}")
            while rows := cursor.fetchmany(batch):
                lon = np.fromiter((row[1] for row in rows), "float64", len(rows))
                lat = np.fromiter((row[2] for row in rows), "float64", len(rows))
                yield SiteRows.of(rows, lon, lat, 3, names)

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
        if bbox is not None:
            # && uses the GiST index; ST_Intersects makes polygons really meet the box.
            conditions.append(
                "geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND "
                "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
            )
            params += [*bbox, *bbox]
        for name, accepted in (filters or {}).items():
            clause, values = _filter_clause(layer, name, accepted)
            conditions.append(clause)
            params += values
        if where is not None:
            clause, values = SQL_DIALECT.compile(where)
            conditions.append(clause)
            params += values
        sql_where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM {self._table(layer)}{sql_where} "
                "ORDER BY id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            matched = conn.execute(
                f"SELECT count(*) FROM {self._table(layer)}{sql_where}", params
            ).fetchone()[0]
        return Page([self._feature(layer, row) for row in rows], int(matched))

    def tile(self, layer_id: str, z: int, x: int, y: int) -> bytes:
        """The tile made by PostGIS itself (``ST_AsMVT``), features clipped to the
        tile plus its buffer, by the embedded encoder's rules (``store.tiles``):
        the same attributes, and below ``DETAIL_ZOOM`` a point layer thinned to
        the lowest id per cell and kind, with the count of sites it stands for."""
        from geo_service.store.tiles import (
            BUFFER,
            CELL,
            DETAIL_ZOOM,
            EXTENT,
            check_tile,
            tile_attributes,
        )

        check_tile(z, x, y)
        layer = self.catalog.layer(layer_id)
        names = tile_attributes(z)
        attributes = ", ".join(f"{_PROPS}->>'{name}' AS \"{name}\"" for name in names)
        # The index test reaches a unit past the buffer: ST_AsMVTGeom keeps a
        # point that rounds onto the buffer's edge, as the embedded encoder does.
        clipped = (
            f"SELECT id, {attributes}, ST_AsMVTGeom(ST_Transform(geom, 3857), "
            f"ST_TileEnvelope(%s, %s, %s), {EXTENT}, {BUFFER}, true) AS geom "
            f"FROM {self._table(layer)} WHERE geom && "
            f"ST_Transform(ST_TileEnvelope(%s, %s, %s, margin => {(BUFFER + 1) / EXTENT}), 4326)"
        )
        if layer.geometry == "Point" and z < DETAIL_ZOOM:
            kept = ", ".join(f'"{name}"' for name in names)
            # DISTINCT ON keeps each group's first row in ORDER BY: the lowest
            # id (ids are COLLATE "C", code point order, as in SQLite).
            source = (
                f"SELECT DISTINCT ON (cx, cy, kind) id, {kept}, count(*) OVER "
                '(PARTITION BY cx, cy, kind) AS "count", geom FROM (SELECT *, '
                f"floor(ST_X(geom) / {CELL}) AS cx, floor(ST_Y(geom) / {CELL}) AS cy "
                f"FROM ({clipped}) AS c WHERE geom IS NOT NULL) AS g "
                "ORDER BY cx, cy, kind, id"
            )
        else:
            source = f"SELECT * FROM ({clipped}) AS c WHERE geom IS NOT NULL"
        rows = self._fetchall(
            f"SELECT ST_AsMVT(t, %s, {EXTENT}, 'geom') FROM ({source}) AS t",
            (layer.id, z, x, y, z, x, y),
        )
        return bytes(rows[0][0]) if rows and rows[0][0] else b""

    # -- transaction primitives (the logic is in Store) -----------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        # The borrowed connection is in autocommit; transaction() opens a real
        # one (a savepoint if this thread is already inside a write).
        with self._borrow() as conn, conn.transaction():
            yield conn
        listener = self._listener
        if listener is not None:
            listener.moved()

    def _reading(self) -> AbstractContextManager[Any]:
        return self._borrow()

    def _sql(self, conn, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = conn.execute(_placeholders(sql), list(params))
        return cursor.fetchall() if cursor.description else []

    def _lock_layer(self, conn, layer: Layer) -> None:
        # One writer per layer at a time, so revisions and versions never race.
        conn.execute(
            "SELECT version FROM gs_layer_state WHERE layer_id = %s FOR UPDATE", (layer.id,)
        )

    def _read(self, conn, layer: Layer, feature_id: str):
        row = conn.execute(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = %s FOR UPDATE",
            (feature_id,),
        ).fetchone()
        return None if row is None else (row[0], self._feature(layer, row))

    def _read_all(self, conn, layer: Layer):
        rows = conn.execute(f"SELECT {self._COLUMNS} FROM {self._table(layer)} ORDER BY id")
        return [(row[0], self._feature(layer, row)) for row in rows.fetchall()]

    def _read_many(self, conn, layer: Layer, feature_ids: Sequence[str]) -> list[StoredFeature]:
        rows = conn.execute(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = ANY(%s)",
            (list(feature_ids),),
        ).fetchall()
        return [self._feature(layer, row) for row in rows]

    def _insert(self, conn, layer: Layer, feature: ValidFeature) -> StoredFeature:
        props = _stored_properties(layer, feature.properties)
        geometry = stored_geometry(layer, feature.geometry)
        conn.execute(
            f"INSERT INTO {self._table(layer)} (id, props, geom) VALUES "
            "(%s, %s, ST_GeomFromWKB(%s, 4326))",
            (feature.id, orjson.dumps(props).decode(), shapely.to_wkb(geometry)),
        )
        return StoredFeature(layer.id, feature.id, props, geometry, 1)

    def _update(self, conn, layer: Layer, handle, feature: ValidFeature, revision: int):
        props = _stored_properties(layer, feature.properties)
        geometry = stored_geometry(layer, feature.geometry)
        conn.execute(
            f"UPDATE {self._table(layer)} SET props = %s, geom = ST_GeomFromWKB(%s, 4326), "
            "revision = %s WHERE fid = %s",
            (orjson.dumps(props).decode(), shapely.to_wkb(geometry), revision, handle),
        )
        return StoredFeature(layer.id, feature.id, props, geometry, revision)

    def _delete(self, conn, layer: Layer, handle) -> None:
        conn.execute(f"DELETE FROM {self._table(layer)} WHERE fid = %s", (handle,))

    def _bump(self, conn, layer: Layer) -> None:
        conn.execute(
            "UPDATE gs_layer_state SET version = version + 1 WHERE layer_id = %s", (layer.id,)
        )
        # Sent inside the writing transaction, so delivered when (and only
        # if) it commits: every listening process learns of the change then.
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, layer.id))

    def _has_rows(self, conn, layer: Layer) -> bool:
        return conn.execute(f"SELECT 1 FROM {self._table(layer)} LIMIT 1").fetchone() is not None

    def _handles(self, conn, layer: Layer, ids: Sequence[str]):
        rows = conn.execute(
            f"SELECT id, fid FROM {self._table(layer)} WHERE id = ANY(%s)", (list(ids),)
        )
        return dict(rows.fetchall())

    def _bulk_rows(self, layer: Layer, features: Sequence[ValidFeature]) -> list[tuple]:
        geometries = [stored_geometry(layer, f.geometry) for f in features]
        wkbs = shapely.to_wkb(np.array(geometries, dtype=object), byte_order=1, flavor="iso")
        return [
            (f.id, orjson.dumps(_stored_properties(layer, f.properties)).decode(), _ewkb_hex(wkb))
            for f, wkb in zip(features, wkbs, strict=True)
        ]

    def _bulk_rows_of_package(self, layer: Layer, rows: Sequence[tuple]) -> list[tuple]:
        # The GeoPackage's own decoder gives the properties in the stored shape.
        layout = package_layout(layer)
        return [
            (
                row[0],
                orjson.dumps(package_properties(layout, row)).decode(),
                _ewkb_hex(blob_wkb(row[-2])),
            )
            for row in rows
        ]

    @contextmanager
    def _bulk_inserter(self, conn, layer: Layer, *, streaming: bool):
        table = self._table(layer)
        sequence = f"pg_get_serial_sequence('{table}', 'fid')"
        if not streaming:

            def insert_alone(rows: Sequence[tuple]) -> tuple[int, int]:
                # A block of fids taken at once: writers of the layer wait on
                # _lock_layer, so the block is this load's alone and consecutive.
                (last,) = conn.execute(
                    f"SELECT setval({sequence}, nextval({sequence}) + %s - 1)", (len(rows),)
                ).fetchone()
                with conn.cursor().copy(f"COPY {table} (fid, id, props, geom) FROM STDIN") as copy:
                    _copy_rows(copy, rows, last - len(rows) + 1)
                return last - len(rows) + 1, last

            yield insert_alone
            return
        # One COPY for the whole layer, its data sent by a writer thread: the
        # server stores a chunk while this thread reads and encodes the next.
        # The fids are counted here (writers of the layer wait on _lock_layer,
        # so none takes one meanwhile) and the sequence moved past them after.
        from psycopg.copy import QueuedLibpqWriter

        (first,) = conn.execute(f"SELECT nextval({sequence})").fetchone()
        after = first
        cursor = conn.cursor()
        writer = QueuedLibpqWriter(cursor)
        with cursor.copy(f"COPY {table} (fid, id, props, geom) FROM STDIN", writer=writer) as copy:

            def insert(rows: Sequence[tuple]) -> tuple[int, int]:
                nonlocal after
                _copy_rows(copy, rows, after)
                after += len(rows)
                return after - len(rows), after - 1

            yield insert
        if after > first:
            conn.execute(f"SELECT setval({sequence}, %s)", (after - 1,))

    def _live_in_range(self, conn, layer: Layer, first: int, last: int):
        rows = conn.execute(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE fid BETWEEN %s AND %s "
            "ORDER BY fid",
            (first, last),
        ).fetchall()
        return [self._feature(layer, row) for row in rows]

    def stream_features(
        self, layer_id: str, *, chunk: int = 10_000
    ) -> Iterator[list[StoredFeature]]:
        layer = self.catalog.layer(layer_id)
        after = 0
        while True:
            # A page per borrow: the pool's connection is never held between chunks.
            rows = self._fetchall(
                f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE fid > %s "
                "ORDER BY fid LIMIT %s",
                (after, chunk),
            )
            if not rows:
                return
            after = rows[-1][0]
            yield [self._feature(layer, row) for row in rows]

    def check(self) -> list[str]:
        """Geometries PostGIS finds invalid, per layer (the database checks the rest)."""
        problems = []
        for layer in self.catalog.layers.values():
            rows = self._fetchall(
                f"SELECT id, ST_IsValidReason(geom) FROM {self._table(layer)} "
                "WHERE NOT ST_IsValid(geom) LIMIT 20"
            )
            problems += [f"{layer.id}/{fid}: {reason}" for fid, reason in rows]
        return problems

    def backup(self, target) -> None:
        """``pg_dump`` in its custom format (restore with ``pg_restore``): one
        consistent snapshot, taken while the service runs.

        The password never goes on ``pg_dump``'s command line, which every
        local user can read in ``ps``: it goes in a password file only this
        user may read, for the one run (in the environment, which is as
        private on Linux, if it holds a line break)."""
        import os
        import shutil
        import subprocess
        import tempfile

        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        if shutil.which("pg_dump") is None:
            raise StoreError("pg_dump is not installed; install PostgreSQL's client tools")
        params = conninfo_to_dict(self.dsn)
        password = params.pop("password", None)
        env = dict(os.environ)
        with tempfile.TemporaryDirectory(prefix="geo-service-backup-") as folder:
            if password is not None:
                env.pop("PGPASSWORD", None)  # it would win over the URL's password
            if password is not None and "\n" in password:
                env["PGPASSWORD"] = password  # a password file cannot hold a line break
            elif password is not None:
                # ~/.pgpass format: any host, port, database and user; ':' and
                # '\' escaped. The folder is 0700 and the file 0600.
                passfile = os.path.join(folder, "pgpass")
                escaped = password.replace("\\", "\\\\").replace(":", "\\:")
                descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    file.write(f"*:*:*:*:{escaped}\n")
                env["PGPASSFILE"] = passfile
            result = subprocess.run(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--schema={self.schema}",
                    "--file",
                    str(target),
                    "--dbname",
                    make_conninfo(**params),
                ],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
        if result.returncode != 0:
            raise StoreError("pg_dump failed: " + result.stderr.strip().splitlines()[-1])

    def drop(self) -> None:
        """Remove this store's schema and everything in it (tests, re-init)."""
        if self.schema == "public":
            raise StoreError("refusing to drop the public schema")
        with self._reading() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


#: ``props`` as filters and tiles read it. PostgreSQL cannot turn a JSON
#: ``\u0000`` into text, and one left in a row by an older version (before
#: control characters were refused on every write) would make every filter
#: and tile over it fail; such rows are read with it as U+FFFD, stored as they are.
_PROPS = (
    "(CASE WHEN strpos(props::text, '\\u0000') > 0 "
    "THEN replace(props::text, '\\u0000', '\\ufffd')::json ELSE props END)"
)


def _filter_clause(layer: Layer, name: str, accepted: Sequence[str]) -> tuple[str, list[Any]]:
    spec = layer.properties.get(name)
    if spec is None or name not in layer.filterable:
        raise InvalidParameter(name, f"layer {layer.id} cannot be filtered by {name!r}")
    values = [str(v) for v in accepted]
    if name == "id":
        return "id = ANY(%s)", [values]
    if spec.type == "boolean":
        values = ["true" if v.lower() in {"true", "1", "yes"} else "false" for v in values]
    if spec.type == "list":
        return (
            f"EXISTS (SELECT 1 FROM json_array_elements_text({_PROPS}->'{name}') AS v "
            "WHERE v = ANY(%s))",
            [values],
        )
    return f"{_PROPS}->>'{name}' = ANY(%s)", [values]


def _placeholders(sql: str) -> str:
    """The shared SQL in ``Store`` is written with ``?``; psycopg wants ``%s``."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


def _column(prop) -> str:
    if prop.column_type == "id":
        return "id"
    text = f"({_PROPS}->>'{prop.name}')"
    return {"number": f"{text}::numeric", "boolean": f"{text}::boolean"}.get(prop.type, text)


def _list_json(prop) -> str:
    return f"({_PROPS}->'{prop.name}')"


_ARRAY_SQL = {
    "a_contains": "({j}::jsonb @> {m}::jsonb)",
    "a_containedby": "({j}::jsonb <@ {m}::jsonb)",
    "a_overlaps": "({j}::jsonb ?| ARRAY(SELECT jsonb_array_elements_text({m}::jsonb)))",
    "a_equals": "({j}::jsonb = {m}::jsonb)",
}
_SPATIAL_SQL = {
    "intersects": "ST_Intersects",
    "disjoint": "ST_Disjoint",
    "within": "ST_Within",
    "contains": "ST_Contains",
    "equals": "ST_Equals",
    "touches": "ST_Touches",
    "crosses": "ST_Crosses",
    "overlaps": "ST_Overlaps",
}

#: CQL2 filters in PostgreSQL: properties read from the JSON ``props``, text
#: ordered by code point (as SQLite orders it), distances on the spheroid.
SQL_DIALECT = SqlDialect(
    mark="%s",
    collate=' COLLATE "C"',
    column=_column,
    list_json=_list_json,
    like=lambda expr, mark: f"({expr} LIKE {mark} ESCAPE '\\')",
    lower=lambda expr: f"lower({expr})",
    spatial=lambda name, mark: f"{_SPATIAL_SQL[name]}(geom, ST_GeomFromWKB({mark}, 4326))",
    dwithin=lambda wkb, metres: (
        f"ST_DWithin(geom::geography, ST_GeomFromWKB({wkb}, 4326)::geography, {metres})"
    ),
    array=lambda op, j, mark: _ARRAY_SQL[op].format(j=j, m=mark),
    list_empty=lambda j: (
        f"(COALESCE(json_array_length(CASE WHEN json_typeof({j}) = 'array' THEN {j} END), 0) = 0)"
    ),
    boolean=lambda value: value,
)
