"""The PostGIS store: the same ``Store`` interface on PostgreSQL + PostGIS.

Chosen with ``GEO_SERVICE_STORE=postgresql://user:pass@host/db`` (a ``schema``
query parameter puts the tables in their own schema, e.g. one per test). One
table per catalog layer: ``id`` (text, unique), ``revision``, ``props`` (the
properties as JSON, in the catalog's order with extras sorted, exactly as the
embedded store returns them) and ``geom`` (EPSG:4326, GiST-indexed). Change
counters and the audit trail live in ``gs_layer_state`` and ``gs_audit``.
Every write is one transaction; ids sort by code point (``COLLATE "C"``), as
in SQLite, so both backends page identically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import shapely

from geo_service.catalog import Catalog, Layer, ValidFeature
from geo_service.errors import FeatureNotFound, InvalidParameter, StoreError
from geo_service.store.base import BBox, Page, Store, StoredFeature, WriteResult
from geo_service.store.geopackage import _as_stored_geometry, _normalised, audit_row

__all__ = ["PostGISStore"]


def _stored_properties(layer: Layer, props: dict[str, Any]) -> dict[str, Any]:
    """Catalog properties in catalog order, then extras sorted by name: the
    shape the embedded store gives back, so answers match across backends."""
    base = _normalised(layer, props)
    known = {k: v for k, v in base.items() if k == "id" or k in layer.properties}
    extra = {k: base[k] for k in sorted(k for k in base if k not in known)}
    return {**known, **extra}


class PostGISStore(Store):
    def __init__(self, url: str, catalog: Catalog):
        import psycopg

        self._psycopg = psycopg
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.schema = (query.pop("schema", ["public"]) or ["public"])[0]
        if not self.schema.replace("_", "").isalnum():
            raise StoreError(f"schema name {self.schema!r} must be letters, digits and _")
        self.dsn = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self.location = url  # reopening the same store needs the whole URL
        self.catalog = catalog
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self.initialise()

    # -- connections and schema ---------------------------------------------------

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = self._psycopg.connect(self.dsn, autocommit=True)
            except self._psycopg.OperationalError as error:
                raise StoreError(f"cannot connect to PostgreSQL: {error}".strip()) from None
            conn.execute(f'SET search_path TO "{self.schema}", public')
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _table(self, layer: Layer) -> str:
        return f'"{self.schema}"."layer_{layer.id}"'

    def initialise(self) -> None:
        """Create the schema, PostGIS and every layer's table (idempotent):
        what ``geo-service db init`` runs."""
        conn = self._conn()
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_layer_state '
                "(layer_id text PRIMARY KEY, version bigint NOT NULL DEFAULT 0)"
            )
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.schema}".gs_audit (seq bigserial PRIMARY KEY, '
                "at text NOT NULL, actor text NOT NULL, action text NOT NULL, layer_id text "
                "NOT NULL, feature_id text NOT NULL, town_code text, before json, after json)"
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

    def is_empty(self) -> bool:
        conn = self._conn()
        return all(
            conn.execute(f"SELECT 1 FROM {self._table(layer)} LIMIT 1").fetchone() is None
            for layer in self.catalog.layers.values()
        )

    def layer_version(self, layer_id: str) -> int:
        self.catalog.layer(layer_id)
        return self.layer_versions().get(layer_id, 0)

    def layer_versions(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT layer_id, version FROM gs_layer_state").fetchall()
        return {layer_id: int(version) for layer_id, version in rows}

    def count(self, layer_id: str) -> int:
        layer = self.catalog.layer(layer_id)
        return int(self._conn().execute(f"SELECT count(*) FROM {self._table(layer)}").fetchone()[0])

    def extent(self, layer_id: str) -> BBox | None:
        layer = self.catalog.layer(layer_id)
        row = (
            self._conn()
            .execute(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                f"(SELECT ST_Extent(geom) AS e FROM {self._table(layer)}) AS x"
            )
            .fetchone()
        )
        return None if row[0] is None else (row[0], row[1], row[2], row[3])

    def get(self, layer_id: str, feature_id: str) -> StoredFeature:
        layer = self.catalog.layer(layer_id)
        row = (
            self._conn()
            .execute(
                f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = %s", (feature_id,)
            )
            .fetchone()
        )
        if row is None:
            raise FeatureNotFound(layer_id, feature_id)
        return self._feature(layer, row)

    def all_features(self, layer_id: str) -> list[StoredFeature]:
        layer = self.catalog.layer(layer_id)
        rows = (
            self._conn()
            .execute(f"SELECT {self._COLUMNS} FROM {self._table(layer)} ORDER BY id")
            .fetchall()
        )
        return [self._feature(layer, row) for row in rows]

    def query(
        self,
        layer_id: str,
        *,
        bbox: BBox | None = None,
        filters: dict[str, Sequence[str]] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page:
        layer = self.catalog.layer(layer_id)
        where: list[str] = []
        params: list[Any] = []
        if bbox is not None:
            # && uses the GiST index; ST_Intersects makes polygons really meet the box.
            where.append(
                "geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND "
                "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
            )
            params += [*bbox, *bbox]
        for name, accepted in (filters or {}).items():
            clause, values = _filter_clause(layer, name, accepted)
            where.append(clause)
            params += values
        sql_where = f" WHERE {' AND '.join(where)}" if where else ""
        conn = self._conn()
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
        tile plus its buffer, with the same attributes as the embedded encoder."""
        from geo_service.tiles import BUFFER, EXTENT, TILE_ATTRIBUTES, check_tile

        check_tile(z, x, y)
        layer = self.catalog.layer(layer_id)
        attributes = ", ".join(f"props->>'{name}' AS \"{name}\"" for name in TILE_ATTRIBUTES)
        row = (
            self._conn()
            .execute(
                f"SELECT ST_AsMVT(t, %s, {EXTENT}, 'geom') FROM (SELECT id, {attributes}, "
                f"ST_AsMVTGeom(ST_Transform(geom, 3857), ST_TileEnvelope(%s, %s, %s), {EXTENT}, "
                f"{BUFFER}, true) AS geom FROM {self._table(layer)} WHERE geom && "
                f"ST_Transform(ST_TileEnvelope(%s, %s, %s, margin => {BUFFER / EXTENT}), 4326)) "
                "AS t WHERE geom IS NOT NULL",
                (layer.id, z, x, y, z, x, y),
            )
            .fetchone()
        )
        return bytes(row[0]) if row and row[0] else b""

    def audit_records(self, feature_id: str | None = None) -> list[dict[str, Any]]:
        names = ["seq", "at", "actor", "action", "layer_id", "feature_id", "town_code"]
        names += ["before", "after"]
        sql = f"SELECT {', '.join(names)} FROM gs_audit"
        params: tuple[Any, ...] = ()
        if feature_id is not None:
            sql += " WHERE feature_id = %s"
            params = (feature_id,)
        names = [
            "seq",
            "at",
            "actor",
            "action",
            "layer_id",
            "feature_id",
            "town_code",
            "before",
            "after",
        ]
        out = []
        for row in self._conn().execute(sql + " ORDER BY seq", params).fetchall():
            record = dict(zip(names, row, strict=True))
            for key in ("before", "after"):
                if record[key] is not None and not isinstance(record[key], str):
                    record[key] = orjson.dumps(record[key]).decode()
            out.append(record)
        return out

    # -- writes -----------------------------------------------------------------------

    def write_layers(
        self,
        batches: dict[str, Iterable[ValidFeature]],
        *,
        actor: str,
        action: str = "upsert",
        replace: bool = False,
    ) -> dict[str, WriteResult]:
        layers = {layer_id: self.catalog.layer(layer_id) for layer_id in batches}
        results = {layer_id: WriteResult() for layer_id in batches}
        conn = self._conn()
        with conn.transaction():
            for layer_id, features in batches.items():
                layer, result = layers[layer_id], results[layer_id]
                # One writer per layer at a time, so revisions and versions never race.
                conn.execute(
                    "SELECT version FROM gs_layer_state WHERE layer_id = %s FOR UPDATE",
                    (layer.id,),
                )
                seen: set[str] = set()
                for feature in features:
                    if feature.id in seen:
                        raise InvalidParameter("id", f"feature id {feature.id!r} appears twice")
                    seen.add(feature.id)
                    self._upsert(conn, layer, feature, actor, action, result)
                if replace:
                    rows = conn.execute(
                        f"SELECT {self._COLUMNS} FROM {self._table(layer)} ORDER BY id"
                    ).fetchall()
                    for row in rows:
                        before = self._feature(layer, row)
                        if before.id not in seen:
                            conn.execute(
                                f"DELETE FROM {self._table(layer)} WHERE fid = %s", (row[0],)
                            )
                            self._audit(conn, actor, "delete", before, None)
                            result.deleted.append(before.id)
                if result.changed:
                    conn.execute(
                        "UPDATE gs_layer_state SET version = version + 1 WHERE layer_id = %s",
                        (layer.id,),
                    )
        return results

    def _upsert(self, conn, layer: Layer, feature: ValidFeature, actor, action, result) -> None:
        props = _stored_properties(layer, feature.properties)
        geometry = _as_stored_geometry(layer, feature.geometry)
        row = conn.execute(
            f"SELECT {self._COLUMNS} FROM {self._table(layer)} WHERE id = %s FOR UPDATE",
            (feature.id,),
        ).fetchone()
        payload = orjson.dumps(props).decode()
        if row is None:
            conn.execute(
                f"INSERT INTO {self._table(layer)} (id, props, geom) VALUES "
                "(%s, %s, ST_GeomFromWKB(%s, 4326))",
                (feature.id, payload, shapely.to_wkb(geometry)),
            )
            after = StoredFeature(layer.id, feature.id, props, geometry, 1)
            self._audit(conn, actor, "insert" if action == "upsert" else action, None, after)
            result.inserted.append(feature.id)
            return
        before = self._feature(layer, row)
        if before.properties == props and before.geometry.equals_exact(geometry, 0):
            result.unchanged.append(feature.id)
            return
        conn.execute(
            f"UPDATE {self._table(layer)} SET props = %s, geom = ST_GeomFromWKB(%s, 4326), "
            "revision = revision + 1 WHERE fid = %s",
            (payload, shapely.to_wkb(geometry), row[0]),
        )
        after = StoredFeature(layer.id, feature.id, props, geometry, before.revision + 1)
        self._audit(conn, actor, "update" if action == "upsert" else action, before, after)
        result.updated.append(feature.id)

    def _audit(self, conn, actor, action, before, after) -> None:
        conn.execute(
            "INSERT INTO gs_audit (at, actor, action, layer_id, feature_id, town_code, before, "
            "after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            audit_row(actor, action, before, after),
        )

    def drop(self) -> None:
        """Remove this store's schema and everything in it (tests, re-init)."""
        if self.schema == "public":
            raise StoreError("refusing to drop the public schema")
        self._conn().execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


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
            f"EXISTS (SELECT 1 FROM json_array_elements_text(props->'{name}') AS v "
            "WHERE v = ANY(%s))",
            [values],
        )
    return f"props->>'{name}' = ANY(%s)", [values]
