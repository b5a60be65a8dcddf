"""The store interface every backend implements, and the records it returns."""

from __future__ import annotations

import datetime as dt
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo_service.errors import (
    Conflict,
    FeatureNotFound,
    FieldProblem,
    InvalidFeature,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
)
from geo_service.sources.catalog import Catalog, Layer, ValidFeature, printable
from geo_service.sources.importing import town_of_position
from geo_service.sources.towns import TownIndex
from geo_service.store.filtering import Filter

__all__ = [
    "CHANGE_REPLAY_LIMIT",
    "JOB_STATUSES",
    "AuditQuery",
    "BBox",
    "Change",
    "ChangeFeed",
    "Envelopes",
    "JobRecord",
    "Page",
    "SessionRecord",
    "SiteRows",
    "Store",
    "StoredFeature",
    "TokenRecord",
    "UserRecord",
    "WriteResult",
    "etag_matches",
]

#: (west, south, east, north) in WGS-84 degrees.
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class StoredFeature:
    """One feature as the store holds it (WGS-84 geometry)."""

    layer_id: str
    id: str
    properties: dict[str, Any]
    geometry: BaseGeometry
    revision: int = 1

    @property
    def etag(self) -> str:
        """A strong validator that changes whenever the feature changes."""
        digest = hashlib.sha256(
            orjson.dumps([self.id, self.revision, self.properties], option=orjson.OPT_SORT_KEYS)
            + self.geometry.wkb
        ).hexdigest()[:20]
        return f'"{digest}"'

    def geojson(self) -> dict[str, Any]:
        """The feature as an RFC 7946 GeoJSON object (WGS-84): the one plain
        serialization (``outputs.geojson`` converts to GCJ-02 / BD-09)."""
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": shapely.geometry.mapping(self.geometry),
            "properties": dict(self.properties),
        }


@dataclass(frozen=True)
class SiteRows:
    """A batch of a facility layer's sites as the nearest index reads them:
    only the columns it needs, one entry per site, no feature objects.
    ``services`` and ``eligible`` are the lists as the store's JSON text
    (few distinct values, decoded once each by the reader); ``name`` and
    ``address`` are None unless asked for."""

    ids: list[str]
    lon: np.ndarray  # float64, WGS-84, exact as stored
    lat: np.ndarray
    kind: list[str | None]
    status: list[str | None]
    services: list[str | None]
    eligible: list[str | None]
    opening_hours: list[str | None]
    name: list[str | None] | None = None
    address: list[str | None] | None = None

    @classmethod
    def of(
        cls,
        rows: Sequence[Sequence[Any]],
        lon: np.ndarray,
        lat: np.ndarray,
        first: int,
        names: bool,
    ) -> SiteRows:
        """A batch from a store's row tuples: the id at 0, then from ``first``
        on kind, status, services, eligible, opening_hours (and name,
        address when ``names``), as both stores select them."""

        def column(k: int) -> list:
            return [row[first + k] for row in rows]

        return cls(
            ids=[row[0] for row in rows],
            lon=lon,
            lat=lat,
            kind=column(0),
            status=column(1),
            services=column(2),
            eligible=column(3),
            opening_hours=column(4),
            name=column(5) if names else None,
            address=column(6) if names else None,
        )


#: Sites per ``SiteRows`` batch: large enough to amortise a round trip,
#: small enough that a batch's Python rows stay a few MB.
SITE_ROWS_BATCH = 20_000


@dataclass(frozen=True)
class PackageRows:
    """A chunk of a bulk load read raw from a GeoPackage this service wrote
    under the target's own catalog (``GeoPackageStore.stream_rows``) and
    checked by the caller: ``load_layers`` puts the rows in as they are, in
    the target's encoding, with no feature object per row."""

    rows: list[tuple]


@dataclass(frozen=True)
class Envelopes:
    """A layer's features as its bbox query tests them, in its order (by
    id): each one's revision and envelope, as the store's own test compares
    it (the GeoPackage R-tree's boxes, rounded outward to 32-bit floats;
    PostGIS's exact bounds). NaN where a feature has no envelope: no box
    matches it."""

    ids: list[str]
    revisions: np.ndarray  # int64
    minx: np.ndarray  # float64
    miny: np.ndarray
    maxx: np.ndarray
    maxy: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]]) -> Envelopes:
        """From rows of (id, revision, minx, miny, maxx, maxy), ordered by id."""
        n = len(rows)

        def column(k: int) -> np.ndarray:
            # None (no envelope) becomes NaN.
            return np.array([row[k] for row in rows], dtype="float64").reshape(n)

        return cls(
            ids=[row[0] for row in rows],
            revisions=np.fromiter((row[1] for row in rows), "int64", n),
            minx=column(2),
            miny=column(3),
            maxx=column(4),
            maxy=column(5),
        )


@dataclass(frozen=True)
class Page:
    """A page of query results and how many features matched in all."""

    features: list[StoredFeature]
    number_matched: int


@dataclass
class WriteResult:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.deleted)


@dataclass(frozen=True)
class Change:
    """One feature changed by ``Store.change``: its state before and after
    (None when it did not exist / no longer exists) and the audit record's number."""

    before: StoredFeature | None
    after: StoredFeature | None
    audit_seq: int | None  # None when nothing changed (no record written)


#: Past this many audit records of one layer since a reader's mark, the layer
#: is re-read whole (``ChangeFeed.reloaded``) instead of replayed row by row.
CHANGE_REPLAY_LIMIT = 20_000


@dataclass
class ChangeFeed:
    """What changed in some layers since a reader's per-layer marks
    (``Store.changes_since``).

    ``marks`` are the new marks: per layer, the highest audit ``seq`` read.
    ``upserts`` hold the current state of every changed feature that is
    stored now, ``deleted`` (layer, id) every changed one that is not (it
    may never have been seen by the reader: created and deleted in between).
    A layer in ``reloaded`` changed wholesale (a bulk load, or more records
    than are worth replaying): re-read it; its rows are in neither list."""

    marks: dict[str, int]
    upserts: list[StoredFeature] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    reloaded: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deleted or self.reloaded)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit trail; every field optional."""

    layer_id: str | None = None
    feature_id: str | None = None
    town_code: str | None = None  # the feature's town before or after the change
    actor: str | None = None
    since: str | None = None  # ISO date or datetime (UTC), inclusive
    until: str | None = None  # ISO date (the whole day) or datetime, inclusive
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class TokenRecord:
    """A bearer token as stored: its name, role and towns; never the token itself."""

    name: str
    role: str
    towns: tuple[str, ...]
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class UserRecord:
    """A person who signs in to the office console (``gs_users``). The Argon2
    hash is kept out of ``repr`` so that no log line or traceback prints it."""

    name: str
    role: str
    towns: tuple[str, ...]
    created_at: str
    disabled_at: str | None
    failed_sign_ins: int  # consecutive, since the last success or lock
    locked_until: str | None
    password_hash: str = field(repr=False)

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class SessionRecord:
    """A console session (``gs_sessions``) and its user. The store knows the
    session only by the SHA-256 of its id; the id itself lives in the cookie."""

    user: UserRecord
    csrf_token: str = field(repr=False)
    created_at: str
    last_seen: str


#: A job's life: accepted -> running -> successful | failed, or dismissed on the way.
JOB_STATUSES = ("accepted", "running", "successful", "failed", "dismissed")


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """An OGC API - Processes job as stored (``gs_jobs``), without its result bytes.

    Times are ISO 8601 UTC text (``now()``); ``inputs`` is JSON text;
    ``owner`` is the process running it (``host:pid``), ``actor`` who asked."""

    id: str
    process: str
    status: str
    progress: int = 0
    message: str | None = None
    inputs: str | None = None
    cache_key: str | None = None
    owner: str | None = None
    actor: str | None = None
    created: str
    started: str | None = None
    finished: str | None = None
    updated: str
    result_media: str | None = None
    has_result: bool = False


def etag_matches(if_match: str, etag: str) -> bool:
    """RFC 9110 If-Match: ``*`` or a list of entity tags compared strongly
    (a weak tag ``W/"..."`` never matches)."""
    if if_match.strip() == "*":
        return True
    return any(tag.strip() == etag for tag in if_match.split(","))


class Store(ABC):
    """Where layers live. One interface; an embedded and a PostGIS backend.

    Readers may call from many threads at once; each read or write borrows a
    connection from a bounded pool for its duration (a thread already holding
    one, inside a write, uses that one). Every change is one
    transaction holding the feature rows, their audit records and the layer's
    change counter: either all of it lands, or none does. The transaction
    logic lives here, once; backends supply the SQL primitives below.
    """

    catalog: Catalog
    location: str

    # -- reads (backend) ---------------------------------------------------------

    @abstractmethod
    def is_empty(self) -> bool:
        """True when no layer holds any feature (a new store, to be seeded)."""

    @abstractmethod
    def layer_version(self, layer_id: str) -> int:
        """A number that changes whenever ``layer_id`` changes, in any process."""

    def layer_versions(self) -> dict[str, int]:
        """``layer_version`` of every layer (backends answer in one round trip)."""
        return {layer_id: self.layer_version(layer_id) for layer_id in self.catalog.layers}

    #: Whether ``change_token`` has moved by the time a write returns, in
    #: every process: then an answer kept under an unchanged token is never
    #: older than a write another process has reported done. PostGIS's
    #: token moves when a notification arrives, a little after the commit.
    token_moves_at_commit: bool = False

    def change_token(self) -> int | None:
        """A number that moves whenever a layer may have changed, in any
        process, known without a database round trip; None when this store
        cannot tell (then ask ``layer_versions``). The same token twice means
        nothing changed in between. The embedded store answers None: its
        ``layer_versions`` is already a memo checked against SQLite's
        ``data_version``."""
        return None

    @abstractmethod
    def count(self, layer_id: str) -> int:
        """Number of (live) features in a layer."""

    @abstractmethod
    def extent(self, layer_id: str) -> BBox | None:
        """The bounding box of a layer's features, or None when it is empty."""

    @abstractmethod
    def get(self, layer_id: str, feature_id: str) -> StoredFeature:
        """One feature, or ``FeatureNotFound``."""

    @abstractmethod
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
        """Features intersecting ``bbox`` whose properties match ``filters``
        (property -> accepted values) and the CQL2 filter ``where``, ordered
        by id, paged."""

    def envelopes(self, layer_id: str) -> Envelopes:
        """Every live feature of a layer as ``query`` tests it against a bbox
        (``Envelopes``), for a point layer's bbox pages served from memory:
        a point matches a box exactly when its envelope meets the box.
        Backends read only these columns; this default reads whole features."""
        rows = []
        for feature in self.all_features(layer_id):
            bounds = feature.geometry.bounds if not feature.geometry.is_empty else (None,) * 4
            rows.append((feature.id, feature.revision, *bounds))
        return Envelopes.of(rows)

    @abstractmethod
    def all_features(self, layer_id: str) -> list[StoredFeature]:
        """Every live feature of a layer, ordered by id (for snapshots and exports)."""

    @abstractmethod
    def get_many(self, layer_id: str, feature_ids: Sequence[str]) -> dict[str, StoredFeature]:
        """The live features among ``feature_ids`` by id, in one query; ids
        not found are left out."""

    @abstractmethod
    def site_rows(
        self, layer_id: str, *, names: bool = False, batch: int = SITE_ROWS_BATCH
    ) -> Iterator[SiteRows]:
        """A facility layer's sites in batches of ``batch``, in storage order,
        streamed from one read: the nearest index's columns, as a national
        layer's millions of sites are too many to hold as features.
        ``names``: also each site's name and address."""

    def tile(self, layer_id: str, z: int, x: int, y: int) -> bytes:
        """A Mapbox vector tile of the layer (encoded in Python; PostGIS overrides)."""
        from geo_service.store.tiles import encode_tile

        return encode_tile(self, layer_id, z, x, y)

    @abstractmethod
    def close(self) -> None:
        """Release connections (a later call opens new ones as needed)."""

    @abstractmethod
    def pool_stats(self) -> dict[str, int]:
        """The connection pool: ``max_size`` (its bound), ``open`` (connections
        open now), ``in_use`` (lent out now) and ``opened`` (connections opened
        since the store was)."""

    @abstractmethod
    def check(self) -> list[str]:
        """Problems found by the backend's own integrity checks (empty: sound)."""

    @abstractmethod
    def backup(self, target: Path) -> None:
        """Write a consistent copy to ``target`` while the service may be writing."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transaction primitives (backend) -----------------------------------------
    # ``conn`` is the backend's connection inside ``_transaction``; ``handle``
    # is whatever the backend needs to find a row again (its fid).

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """Begin a write transaction; commit on success, roll back on any error."""

    @abstractmethod
    def _sql(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one statement written with ``?`` placeholders; rows as sequences."""

    @abstractmethod
    def _lock_layer(self, conn: Any, layer: Layer) -> None:
        """Serialise writers of one layer so revisions and versions never race."""

    @abstractmethod
    def _read(self, conn: Any, layer: Layer, feature_id: str) -> tuple[Any, StoredFeature] | None:
        """The feature and its handle, locked for the rest of the transaction."""

    @abstractmethod
    def _read_all(self, conn: Any, layer: Layer) -> list[tuple[Any, StoredFeature]]:
        """Every feature of the layer with its handle."""

    @abstractmethod
    def _read_many(
        self, conn: Any, layer: Layer, feature_ids: Sequence[str]
    ) -> list[StoredFeature]:
        """The stored features among ``feature_ids`` (absent ids are left out)."""

    @abstractmethod
    def _insert(self, conn: Any, layer: Layer, feature: ValidFeature) -> StoredFeature:
        """Insert a new feature at revision 1."""

    @abstractmethod
    def _update(
        self, conn: Any, layer: Layer, handle: Any, feature: ValidFeature, revision: int
    ) -> StoredFeature:
        """Overwrite a feature's properties and geometry with a new revision."""

    @abstractmethod
    def _delete(self, conn: Any, layer: Layer, handle: Any) -> None:
        """Remove a feature from its live layer (its last state stays in the audit)."""

    @abstractmethod
    def _bump(self, conn: Any, layer: Layer) -> None:
        """Advance the layer's change counter (and any cached extent)."""

    @abstractmethod
    def _has_rows(self, conn: Any, layer: Layer) -> bool:
        """Whether the layer holds any feature now."""

    @abstractmethod
    def _handles(self, conn: Any, layer: Layer, ids: Sequence[str]) -> dict[str, Any]:
        """The handles of those of ``ids`` the layer holds now, by id."""

    @abstractmethod
    def _bulk_rows(self, layer: Layer, features: Sequence[ValidFeature]) -> list[tuple]:
        """Features in the store's bulk encoding (``_bulk_inserter``), id first."""

    @abstractmethod
    def _bulk_rows_of_package(self, layer: Layer, rows: Sequence[tuple]) -> list[tuple]:
        """GeoPackage rows (``geopackage.package_columns``: id, catalog
        properties, geometry blob, extra JSON) in the store's bulk encoding:
        a bulk load from a trusted GeoPackage, without a feature per row."""

    @abstractmethod
    def _bulk_inserter(
        self, conn: Any, layer: Layer, *, streaming: bool
    ) -> AbstractContextManager[Callable[[Sequence[tuple]], tuple[int, int]]]:
        """A function inserting new features at revision 1 in bulk (``COPY``,
        ``executemany``; spatial index filled for them), a chunk of rows in
        the bulk encoding per call: each chunk's handles are one consecutive
        range, returned as (first, last). ``streaming``: nothing else is done
        on ``conn`` until it is closed (one ``COPY`` for every chunk)."""

    @abstractmethod
    def _live_in_range(self, conn: Any, layer: Layer, first: int, last: int) -> list[StoredFeature]:
        """The live features whose handle lies in ``first..last``."""

    @abstractmethod
    def stream_features(
        self, layer_id: str, *, chunk: int = 10_000
    ) -> Iterator[list[StoredFeature]]:
        """Every live feature of a layer, ``chunk`` at a time, in the order they
        were stored: a whole national layer without holding it in memory."""

    # -- writes ----------------------------------------------------------------------

    def write_layers(
        self,
        batches: dict[str, Iterable[ValidFeature]],
        *,
        actor: str,
        action: str = "upsert",
        replace: bool = False,
        authorize: Callable[[StoredFeature | None, ValidFeature | None], None] | None = None,
    ) -> dict[str, WriteResult]:
        """Insert or update features of several layers by id in ONE transaction,
        with an audit record per change: either everything lands or nothing.
        Unchanged features are left alone (re-running a write is idempotent).
        ``replace`` also deletes each named layer's features that were not given.

        ``authorize(before, new)`` means what it means in ``change``: called
        inside the transaction for every given feature (and with ``new=None``
        for every deletion ``replace`` would make), ``before`` being the row as
        stored at that moment (None for a new id); raising refuses the whole
        write, so nothing of it lands (an editor's import limited to towns)."""
        layers = {layer_id: self.catalog.layer(layer_id) for layer_id in batches}
        results = {layer_id: WriteResult() for layer_id in batches}
        with self._transaction() as conn:
            for layer_id, features in batches.items():
                layer, result = layers[layer_id], results[layer_id]
                self._lock_layer(conn, layer)
                seen: set[str] = set()
                known: set[str] | None = None  # ids the audit trail knows, read once
                for feature in features:
                    if feature.id in seen:
                        raise InvalidParameter("id", f"feature id {feature.id!r} appears twice")
                    seen.add(feature.id)
                    found = self._read(conn, layer, feature.id)
                    if authorize is not None:
                        authorize(found[1] if found else None, feature)
                    if found is None and action == "import":
                        if known is None:
                            known = self._audited_ids(conn, layer.id)
                        if feature.id in known:
                            raise Conflict(
                                f"{feature.id} is the id of a deleted feature of {layer.id}: "
                                "it stays reserved for its restore"
                            )
                    if found is None:
                        after = self._insert(conn, layer, feature)
                        self._audit(conn, actor, _verb(action, "insert"), None, after)
                        result.inserted.append(feature.id)
                    elif same_content(layer, found[1], feature):
                        result.unchanged.append(feature.id)
                    else:
                        handle, before = found
                        after = self._update(conn, layer, handle, feature, before.revision + 1)
                        self._audit(conn, actor, _verb(action, "update"), before, after)
                        result.updated.append(feature.id)
                if replace:
                    for handle, before in self._read_all(conn, layer):
                        if before.id not in seen:
                            if authorize is not None:
                                authorize(before, None)
                            self._delete(conn, layer, handle)
                            self._audit(conn, actor, "delete", before, None)
                            result.deleted.append(before.id)
                if result.changed:
                    self._bump(conn, layer)
        return results

    def write(
        self,
        layer_id: str,
        features: Iterable[ValidFeature],
        *,
        actor: str,
        action: str = "upsert",
        replace: bool = False,
        authorize: Callable[[StoredFeature | None, ValidFeature | None], None] | None = None,
    ) -> WriteResult:
        """``write_layers`` for a single layer."""
        return self.write_layers(
            {layer_id: features}, actor=actor, action=action, replace=replace, authorize=authorize
        )[layer_id]

    def load_layers(
        self,
        batches: dict[str, Iterable[Sequence[ValidFeature] | PackageRows]],
        *,
        actor: str,
        source: str,
        sha256: str | Callable[[], str],
        action: str = "load",
        authorize: Callable[[StoredFeature | None, ValidFeature | None], None] | None = None,
    ) -> dict[str, WriteResult]:
        """Load features, a chunk at a time, into several layers in ONE
        transaction: either everything lands or nothing (a crash midway too).

        Ids new to a layer go in bulk (``_bulk_inserter``: ``COPY`` or batched
        inserts, the spatial index filled after the rows) and get NO audit
        record each: one record per layer per load instead, action ``load``,
        ``feature_id`` "" and ``after`` the counts, ``source`` (the file's
        name), its ``sha256`` and ``fids`` (the handle range the bulk rows
        took, which tells the history readers which live rows it brought).
        The records are written last, so ``sha256`` may be a callable the
        load asks only then (a large file hashed while its rows go in).
        An id the layer already holds is an edit with history: updated (or
        left alone when equal) and audited row by row, as ``write_layers``
        does. Refused, naming the id, and nothing written: an id given twice,
        or the id of a deleted feature (reserved for its restore). The
        features come validated: the caller knows what to check them against.
        A ``PackageRows`` chunk only goes into a layer that was empty when
        the load began (the caller's choice; refused when that changed).
        The layer's version moves once. ``action`` names the per-row records
        of updates (``import`` for a large import); ``authorize(before, new)``
        means what it means in ``write_layers``."""
        layers = {layer_id: self.catalog.layer(layer_id) for layer_id in batches}
        results = {layer_id: WriteResult() for layer_id in batches}
        summaries: dict[str, dict[str, Any]] = {}
        with self._transaction() as conn:
            for layer_id, chunks in batches.items():
                layer, result = layers[layer_id], results[layer_id]
                self._lock_layer(conn, layer)
                # The national case is an empty layer: no lookup per chunk then.
                had_rows = self._has_rows(conn, layer)
                reserved = self._audited_ids(conn, layer.id)
                seen: set[str] = set()
                spans: list[tuple[int, int]] = []
                # An empty layer takes every chunk in one stream (one COPY);
                # one that holds rows has reads and updates between chunks.
                with self._bulk_inserter(conn, layer, streaming=not had_rows) as insert:
                    for chunk in chunks:
                        if isinstance(chunk, PackageRows):
                            if had_rows:
                                raise Conflict(
                                    f"{layer.id} was written to while {source} was being loaded; "
                                    "nothing was loaded: run the load again"
                                )
                            for row in chunk.rows:
                                _claim_id(layer.id, row[0], seen, reserved, source)
                            rows = self._bulk_rows_of_package(layer, chunk.rows)
                            spans.append(insert(rows))
                            result.inserted.extend(row[0] for row in chunk.rows)
                            continue
                        present = (
                            self._handles(conn, layer, [f.id for f in chunk]) if had_rows else {}
                        )
                        fresh: list[ValidFeature] = []
                        for feature in chunk:
                            if feature.id in present:
                                if feature.id in seen:
                                    _claim_id(
                                        layer.id, feature.id, seen, reserved, source
                                    )  # refused
                                seen.add(feature.id)
                                found = self._read(conn, layer, feature.id)
                                assert found is not None
                                handle, before = found
                                if authorize is not None:
                                    authorize(before, feature)
                                if same_content(layer, before, feature):
                                    result.unchanged.append(feature.id)
                                    continue
                                after = self._update(
                                    conn, layer, handle, feature, before.revision + 1
                                )
                                self._audit(conn, actor, action, before, after)
                                result.updated.append(feature.id)
                                continue
                            if authorize is not None:
                                authorize(None, feature)
                            _claim_id(layer.id, feature.id, seen, reserved, source)
                            fresh.append(feature)
                        if fresh:
                            rows = self._bulk_rows(layer, fresh)
                            spans.append(insert(rows))
                            result.inserted.extend(f.id for f in fresh)
                if result.inserted:
                    summaries[layer.id] = {
                        "bulk": True,
                        "inserted": len(result.inserted),
                        "updated": len(result.updated),
                        "unchanged": len(result.unchanged),
                        "source": source,
                        "fids": [min(s[0] for s in spans), max(s[1] for s in spans)],
                    }
                if result.changed:
                    self._bump(conn, layer)
            digest = sha256() if callable(sha256) else sha256
            for layer_id, summary in summaries.items():
                self._sql(
                    conn,
                    "INSERT INTO gs_audit (at, actor, action, layer_id, feature_id, "
                    "town_code, previous_town_code, before, after) "
                    "VALUES (?, ?, 'load', ?, '', NULL, NULL, NULL, ?)",
                    [now(), actor, layer_id, orjson.dumps({**summary, "sha256": digest}).decode()],
                )
        return results

    def change(
        self,
        layer_id: str,
        feature_id: str,
        new: ValidFeature | None,
        *,
        actor: str,
        action: str,
        if_match: str | None = None,
        create: bool = False,
        authorize: Callable[[StoredFeature | None, ValidFeature | None], None] | None = None,
        revive: bool = False,
    ) -> Change:
        """Create (``create=True``), replace or delete (``new=None``) ONE feature.

        Everything is checked inside the transaction that writes, against the
        row as it is then, in this order: ``create`` refuses an id that exists
        or existed (``Conflict``: a deleted feature's id stays reserved for its
        restore; ``revive`` is that restore); otherwise the feature must exist
        (``FeatureNotFound``); ``authorize(before, new)`` raises to refuse (an
        editor's towns); and only then must ``if_match`` name its current ETag
        (``PreconditionFailed``), so that a request refused anyway learns
        nothing from a stale ETag (RFC 9110 section 13.2.1: preconditions are
        evaluated after authorization). A replacement equal to what is stored
        writes nothing.
        """
        layer = self.catalog.layer(layer_id)
        with self._transaction() as conn:
            self._lock_layer(conn, layer)
            found = self._read(conn, layer, feature_id)
            before = found[1] if found else None
            if create and before is not None:
                raise Conflict(f"feature {feature_id!r} already exists in {layer_id}")
            if create and not revive and self._had(conn, layer, feature_id):
                raise Conflict(
                    f"feature {feature_id!r} of {layer_id} was deleted, and a deleted "
                    "feature's id stays reserved so that it can be restored "
                    f"(geo-service restore {feature_id}); choose another id"
                )
            if not create and before is None:
                raise FeatureNotFound(layer_id, feature_id)
            if authorize is not None:
                authorize(before, new)
            if (
                if_match is not None
                and before is not None
                and not etag_matches(if_match, before.etag)
            ):
                raise PreconditionFailed(
                    f"feature {feature_id!r} has changed since it was read "
                    f"(its ETag is now {before.etag}); read it again and reapply your change",
                    before.etag,
                )
            if new is None:
                assert found is not None
                self._delete(conn, layer, found[0])
                after = None
            elif found is None:
                after = self._insert(conn, layer, new)
            elif same_content(layer, found[1], new):
                return Change(before, before, None)
            else:
                after = self._update(conn, layer, found[0], new, found[1].revision + 1)
            seq = self._audit(conn, actor, action, before, after)
            self._bump(conn, layer)
        return Change(before, after, seq)

    def audited_ids(self, layer_id: str) -> set[str]:
        """Every id of ``layer_id`` the audit trail knows: the stored ones and
        the deleted ones (reserved for their restore)."""
        with self._reading() as conn:
            return self._audited_ids(conn, self.catalog.layer(layer_id).id)

    def _audited_ids(self, conn: Any, layer_id: str) -> set[str]:
        rows = self._sql(
            conn,
            # A bulk load's one record names no feature ("").
            "SELECT DISTINCT feature_id FROM gs_audit WHERE layer_id = ? AND feature_id <> ''",
            [layer_id],
        )
        return {row[0] for row in rows}

    def _had(self, conn: Any, layer: Layer, feature_id: str) -> bool:
        """Whether the audit trail knows ``feature_id`` in ``layer`` (every write
        is audited, so an id not stored now but known there was deleted)."""
        return bool(
            self._sql(
                conn,
                "SELECT 1 FROM gs_audit WHERE layer_id = ? AND feature_id = ? LIMIT 1",
                [layer.id, feature_id],
            )
        )

    def restore(self, layer_id: str, feature_id: str, *, actor: str) -> Change:
        """Bring back a deleted feature from the audit trail, as it was when deleted.

        The old version is checked as any write is, against the catalog and
        the towns as they are now (the town rule of
        ``sources.importing.town_of_position``): one that no longer passes
        (a control character stored before they were refused, a position
        outside new boundaries) is refused with the reasons, not stored again.
        """
        records, _ = self.audit_log(
            AuditQuery(layer_id=layer_id, feature_id=feature_id, limit=1), newest_first=True
        )
        if not records or records[0]["after"] is not None:
            raise NotFound(f"{layer_id}/{feature_id} is not a deleted feature")
        feature = self._checked_again(layer_id, feature_id, orjson.loads(records[0]["before"]))
        return self.change(
            layer_id, feature_id, feature, actor=actor, action="restore", create=True, revive=True
        )

    def restore_version(
        self,
        layer_id: str,
        feature_id: str,
        seq: int,
        *,
        actor: str,
        if_match: str | None = None,
        authorize: Callable[[StoredFeature | None, ValidFeature | None], None] | None = None,
    ) -> Change:
        """Make a feature again exactly what the audit record ``seq`` made it
        (its properties and geometry after that change), through ``change``:
        the same checks as any write (``authorize``, then ``if_match``), and
        an audit record of its own (``revert``; ``restore`` when the feature
        is deleted now and comes back as that version). The version is checked
        against today's catalog and towns as ``restore`` checks it."""
        records = self.feature_records(layer_id, feature_id)
        if not records:
            raise FeatureNotFound(layer_id, feature_id)
        chosen = next((r for r in records if int(r["seq"]) == seq), None)
        if chosen is None:
            raise NotFound(f"{layer_id}/{feature_id} has no version {seq}")
        if chosen["after"] is None:
            raise Conflict(
                f"version {seq} is the deletion of {feature_id}; choose a version "
                "that holds the site"
            )
        feature = self._checked_again(layer_id, feature_id, orjson.loads(chosen["after"]))
        deleted = records[-1]["after"] is None
        return self.change(
            layer_id,
            feature_id,
            feature,
            actor=actor,
            action="restore" if deleted else "revert",
            if_match=None if deleted else if_match,
            create=deleted,
            revive=deleted,
            authorize=authorize,
        )

    def _checked_again(
        self, layer_id: str, feature_id: str, snapshot: dict[str, Any]
    ) -> ValidFeature:
        """An old version from the audit trail, validated as a write is today."""
        layer = self.catalog.layer(layer_id)
        towns = self.all_features("towns") if layer.is_facility else []
        index = TownIndex((town.id, town.geometry) for town in towns)
        try:
            feature = self.catalog.validate_feature(
                layer_id, snapshot, town_codes=set(index.codes) or None
            )
            if layer.is_facility:
                point = feature.geometry
                choice = town_of_position(
                    index,
                    point.x,
                    point.y,
                    feature.properties.get("town_code"),
                    approximate=any(town.properties.get("approximate") for town in towns),
                    tolerance_m=self.catalog.limits.town_tolerance_m,
                )
                if choice.code is None:
                    raise InvalidFeature(
                        feature.id, [FieldProblem("geometry", choice.outside(point.x, point.y))]
                    )
                props = dict(feature.properties, town_code=choice.code)
                feature = ValidFeature(feature.id, props, feature.geometry)
        except InvalidFeature as refused:
            raise InvalidFeature(
                printable(feature_id),
                [
                    FieldProblem(
                        "restore",
                        f"the old version of {layer_id}/{printable(feature_id)} does not "
                        "pass today's checks, so it is not restored; create the site again "
                        "with corrected values",
                    ),
                    *refused.problems,
                ],
            ) from None
        return feature

    def _audit(
        self,
        conn: Any,
        actor: str,
        action: str,
        before: StoredFeature | None,
        after: StoredFeature | None,
    ) -> int:
        rows = self._sql(
            conn,
            "INSERT INTO gs_audit (at, actor, action, layer_id, feature_id, town_code, "
            "previous_town_code, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            audit_row(actor, action, before, after),
        )
        return int(rows[0][0])

    # -- the change feed (readers that keep layers in memory) ---------------------------

    def change_marks(self, layer_ids: Sequence[str]) -> dict[str, int]:
        """Per layer, the highest audit ``seq`` so far (0 before any record):
        the marks of a reader that reads those layers whole after this call."""
        layers = [self.catalog.layer(layer_id).id for layer_id in layer_ids]
        with self._reading() as conn:
            return {layer_id: self._last_seq(conn, layer_id) for layer_id in layers}

    def _last_seq(self, conn: Any, layer_id: str) -> int:
        rows = self._sql(conn, "SELECT max(seq) FROM gs_audit WHERE layer_id = ?", [layer_id])
        return int(rows[0][0] or 0)

    def changes_since(
        self, marks: dict[str, int], *, replay_limit: int = CHANGE_REPLAY_LIMIT
    ) -> ChangeFeed:
        """What changed in the layers of ``marks`` after each one's mark (an
        audit ``seq``), read from the audit trail: every write to a layer
        leaves a record there in the transaction that makes it.

        Within a layer, ``seq`` order is commit order: writers of a layer are
        serialised by ``_lock_layer`` and take their numbers while holding
        it. So a reader that keeps, per layer, the highest ``seq`` it has
        read misses no change and reads none twice (across layers numbers
        are taken in one order and committed in another, hence one mark per
        layer). A layer with a bulk load's record (action ``load``, no
        feature id: changed wholesale) or more than ``replay_limit`` records
        is ``reloaded``.

        The changed features are then read from the layer itself: the audit
        trail does not keep revisions. A write committed between the two
        reads shows in that state already; when its record comes in a later
        feed the same state comes again, which changes nothing."""
        feed = ChangeFeed(marks=dict(marks))
        with self._reading() as conn:
            for layer_id, mark in marks.items():
                layer = self.catalog.layer(layer_id)
                rows = self._sql(
                    conn,
                    "SELECT seq, feature_id, action FROM gs_audit WHERE layer_id = ? "
                    "AND seq > ? ORDER BY seq LIMIT ?",
                    [layer.id, mark, replay_limit + 1],
                )
                if not rows:
                    continue
                # A bulk load's record (no feature id) stands for rows with no
                # record of their own; a load's per-row edits replay as any edit.
                wholesale = any(row[2] == "load" and row[1] == "" for row in rows)
                if len(rows) > replay_limit or wholesale:
                    feed.reloaded.add(layer.id)
                    feed.marks[layer.id] = self._last_seq(conn, layer.id)
                    continue
                feed.marks[layer.id] = int(rows[-1][0])
                changed = list(dict.fromkeys(row[1] for row in rows))
                stored = self._read_many(conn, layer, changed)
                found = {feature.id for feature in stored}
                feed.upserts += stored
                feed.deleted += [(layer.id, fid) for fid in changed if fid not in found]
        return feed

    # -- the audit trail ---------------------------------------------------------------

    _AUDIT_COLUMNS = (
        "seq",
        "at",
        "actor",
        "action",
        "layer_id",
        "feature_id",
        "town_code",
        "previous_town_code",
        "before",
        "after",
    )

    def audit_records(self, feature_id: str | None = None) -> list[dict[str, Any]]:
        """Every audit record (of one feature, when given), oldest first."""
        return self.audit_log(AuditQuery(feature_id=feature_id, limit=2**62))[0]

    def audit_log(
        self, query: AuditQuery, *, newest_first: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """Audit records matching ``query`` (oldest first) and how many match in all."""
        where, params = [], []
        for column, value in (
            ("layer_id", query.layer_id),
            ("feature_id", query.feature_id),
            ("actor", query.actor),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.town_code is not None:
            where.append("(town_code = ? OR previous_town_code = ?)")
            params += [query.town_code, query.town_code]
        if query.since is not None:
            where.append("at >= ?")
            params.append(query.since)
        if query.until is not None:
            until = query.until
            # A bare date means the whole of that day.
            where.append("at < ?" if len(until) == 10 else "at <= ?")
            params.append(_next_day(until) if len(until) == 10 else until)
        sql_where = f" WHERE {' AND '.join(where)}" if where else ""
        order = "DESC" if newest_first else "ASC"
        with self._reading() as conn:
            total = int(self._sql(conn, f"SELECT count(*) FROM gs_audit{sql_where}", params)[0][0])
            rows = self._sql(
                conn,
                f"SELECT {', '.join(self._AUDIT_COLUMNS)} FROM gs_audit{sql_where} "
                f"ORDER BY seq {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            )
        records = []
        for row in rows:
            record = dict(zip(self._AUDIT_COLUMNS, row, strict=True))
            for key in ("before", "after"):
                if record[key] is not None and not isinstance(record[key], str):
                    record[key] = orjson.dumps(record[key]).decode()
            records.append(record)
        return records, total

    def features_as_of(
        self, until: str, layer_ids: Sequence[str]
    ) -> dict[str, list[StoredFeature]]:
        """Every feature of ``layer_ids`` as the audit trail holds it at the
        instant ``until`` (ISO 8601 UTC as ``now()`` writes it, inclusive):
        per feature, the latest version recorded at or before then; features
        deleted by then are left out. Ordered by id, in ONE query however
        long the trail (a district's thousands of edits, not a query each).

        A feature's first ``seed`` record counts from the start of the trail,
        whatever its time: the shipped layers stand for what existed before
        anybody edited here, so a date before the store was seeded still
        sees them. A later re-seed that changes a feature is an ordinary,
        dated change. The ``revision`` of these features is 0: the trail
        does not keep revisions, so their ETag is not the stored one."""
        layers = [self.catalog.layer(layer_id).id for layer_id in layer_ids]
        out: dict[str, list[StoredFeature]] = {layer_id: [] for layer_id in layers}
        if not layers:
            return out
        marks = ", ".join("?" for _ in layers)
        with self._reading() as conn:
            rows = self._sql(
                conn,
                # The bulk loads done by then come along (feature_id ""): only
                # a layer that has one needs more reading.
                "SELECT layer_id, feature_id, after, seq, at, actor FROM gs_audit WHERE seq IN ("
                f"SELECT max(seq) FROM gs_audit WHERE layer_id IN ({marks}) "
                "AND feature_id <> '' "
                "AND (at <= ? OR (action = 'seed' AND before IS NULL)) "
                f"GROUP BY layer_id, feature_id) OR (layer_id IN ({marks}) AND feature_id = '' "
                "AND action = 'load' AND at <= ?) ORDER BY layer_id, feature_id, seq",
                [*layers, until, *layers, until],
            )
            loads: dict[str, list[dict[str, Any]]] = {}
            for layer_id, feature_id, after, seq, at, actor in rows:
                if feature_id == "":
                    load = {"seq": int(seq), "at": at, "actor": actor, "after": _parsed(after)}
                    loads.setdefault(layer_id, []).append(load)
            for layer_id, layer_loads in loads.items():
                out[layer_id] += self._bulk_loaded_as_of(
                    conn, self.catalog.layer(layer_id), until, layer_loads
                )
        for layer_id, feature_id, after, _seq, _at, _actor in rows:
            if feature_id == "" or after is None:  # a bulk load; deleted by then
                continue
            out[layer_id].append(_from_snapshot(layer_id, feature_id, after))
        for features in out.values():
            features.sort(key=lambda feature: feature.id)
        return out

    # -- bulk-loaded features in the history ---------------------------------------------
    # A bulk load writes one record per layer (feature_id ""), none per row.
    # A feature it brought exists from that load's time, as its first own
    # record's ``before`` holds it (or the live row, when it has none). Which
    # load brought it: the one whose ``fids`` range holds its live handle, or
    # for a deleted one, the last load before its first own record.

    def _loads(self, conn: Any, layer_id: str) -> list[dict[str, Any]]:
        """A layer's bulk-load records, oldest first, ``after`` parsed."""
        rows = self._sql(
            conn,
            "SELECT seq, at, actor, after FROM gs_audit WHERE layer_id = ? AND feature_id = '' "
            "AND action = 'load' ORDER BY seq",
            [layer_id],
        )
        return [
            {"seq": int(seq), "at": at, "actor": actor, "after": _parsed(after)}
            for seq, at, actor, after in rows
        ]

    @staticmethod
    def _load_of(
        loads: list[dict[str, Any]], handle: Any, first_seq: int | None
    ) -> dict[str, Any] | None:
        if handle is not None:
            for load in loads:
                low, high = load["after"].get("fids") or (0, -1)
                if low <= int(handle) <= high:
                    return load
        if first_seq is not None:
            earlier = [load for load in loads if load["seq"] < first_seq]
            return earlier[-1] if earlier else None
        return None

    def _bulk_loaded_as_of(
        self, conn: Any, layer: Layer, until: str, loads: list[dict[str, Any]]
    ) -> list[StoredFeature]:
        """The features the bulk ``loads`` (those done by ``until``, oldest
        first) brought into ``layer`` that have no own record at or before
        ``until``: as loaded."""
        out: list[StoredFeature] = []
        # Edited or deleted since, first record after ``until``: its ``before``.
        rows = self._sql(
            conn,
            "SELECT feature_id, seq, before FROM gs_audit WHERE seq IN (SELECT min(seq) "
            "FROM gs_audit WHERE layer_id = ? AND feature_id <> '' GROUP BY feature_id) "
            "AND before IS NOT NULL AND at > ?",
            [layer.id, until],
        )
        handles = self._handles(conn, layer, [row[0] for row in rows]) if rows else {}
        every_load = self._loads(conn, layer.id) if rows else []  # later ones too
        for feature_id, seq, before in rows:
            load = self._load_of(every_load, handles.get(feature_id), int(seq))
            if load is not None and load["at"] <= until:
                out.append(_from_snapshot(layer.id, feature_id, before))
        # Never edited: the live row.
        audited = self._audited_ids(conn, layer.id)
        for load in loads:
            low, high = load["after"].get("fids") or (0, -1)
            for feature in self._live_in_range(conn, layer, low, high):
                if feature.id not in audited:
                    out.append(
                        StoredFeature(layer.id, feature.id, feature.properties, feature.geometry, 0)
                    )
        return out

    def unrecorded_features(self, layer_id: str) -> list[StoredFeature]:
        """Live features the trail knows nothing of: no record of their own and
        brought by no bulk load (rows stored before there was a trail)."""
        layer = self.catalog.layer(layer_id)
        with self._reading() as conn:
            audited = self._audited_ids(conn, layer.id)
            spans = [load["after"].get("fids") or (0, -1) for load in self._loads(conn, layer.id)]
            return [
                feature
                for handle, feature in self._read_all(conn, layer)
                if feature.id not in audited
                and not any(low <= int(handle) <= high for low, high in spans)
            ]

    def feature_records(self, layer_id: str, feature_id: str) -> list[dict[str, Any]]:
        """One feature's audit records, oldest first (as ``audit_log``). A
        feature a bulk load brought is led by that load in its own terms: the
        load's ``seq``, time and actor, action ``load``, ``before`` None and
        ``after`` the feature as loaded, so its history, versions and
        ``restore_version`` work as for any other feature."""
        layer = self.catalog.layer(layer_id)
        records, _ = self.audit_log(
            AuditQuery(layer_id=layer.id, feature_id=feature_id, limit=2**62)
        )
        if records and records[0]["before"] is None:
            return records  # created by a record of its own
        with self._reading() as conn:
            loads = self._loads(conn, layer.id)
            if not loads:
                return records
            handle = self._handles(conn, layer, [feature_id]).get(feature_id)
            load = self._load_of(loads, handle, int(records[0]["seq"]) if records else None)
            if load is None:
                return records
            if records:
                loaded = records[0]["before"]
            elif handle is not None:
                live = self._read_live(conn, layer, feature_id)
                loaded = feature_json(live)
            else:
                return records
        subject = _parsed(loaded)
        town = (
            feature_id
            if layer.id == "towns"
            else (subject.get("properties") or {}).get("town_code")
        )
        first = {
            "seq": load["seq"],
            "at": load["at"],
            "actor": load["actor"],
            "action": "load",
            "layer_id": layer.id,
            "feature_id": feature_id,
            "town_code": town,
            "previous_town_code": None,
            "before": None,
            "after": loaded if isinstance(loaded, str) else orjson.dumps(loaded).decode(),
        }
        return [first, *records]

    def _read_live(self, conn: Any, layer: Layer, feature_id: str) -> StoredFeature | None:
        found = self._handles(conn, layer, [feature_id])
        if not found:
            return None
        handle = found[feature_id]
        live = self._live_in_range(conn, layer, int(handle), int(handle))
        return live[0] if live else None

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection for reads outside a write transaction."""

    # -- bearer tokens -----------------------------------------------------------------

    def add_token(self, name: str, role: str, towns: Sequence[str], token_hash: str) -> None:
        """Keep a new token's hash; a name is never reused, so the audit trail's
        names stay unambiguous."""
        with self._transaction() as conn:
            if self._sql(conn, "SELECT 1 FROM gs_tokens WHERE name = ?", [name]):
                raise Conflict(f"a token named {name!r} exists (names are never reused)")
            self._sql(
                conn,
                "INSERT INTO gs_tokens (name, role, towns, token_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [name, role, ",".join(towns), token_hash, now()],
            )

    def revoke_token(self, name: str) -> None:
        with self._transaction() as conn:
            rows = self._sql(conn, "SELECT revoked_at FROM gs_tokens WHERE name = ?", [name])
            if not rows:
                raise NotFound(f"no token named {name!r}")
            if rows[0][0] is None:
                self._sql(conn, "UPDATE gs_tokens SET revoked_at = ? WHERE name = ?", [now(), name])

    def tokens(self) -> list[TokenRecord]:
        with self._reading() as conn:
            rows = self._sql(
                conn,
                "SELECT name, role, towns, created_at, revoked_at FROM gs_tokens ORDER BY name",
            )
        return [_token_record(row) for row in rows]

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """The active token with this hash, read fresh on every call, so a token
        added or revoked from the CLI counts at once in a running service."""
        with self._reading() as conn:
            rows = self._sql(
                conn,
                "SELECT name, role, towns, created_at, revoked_at FROM gs_tokens "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                [token_hash],
            )
        return _token_record(rows[0]) if rows else None

    # -- console users and their sessions ----------------------------------------------
    # The account rules (lockout, expiry) live in services.accounts; the store
    # keeps the state so that it holds across workers and restarts.

    _USER_COLUMNS = (
        "name, role, towns, created_at, disabled_at, failed_sign_ins, locked_until, password_hash"
    )

    def add_user(self, name: str, role: str, towns: Sequence[str], password_hash: str) -> None:
        """Keep a new user; a name is never reused, so the audit trail's names
        stay unambiguous."""
        with self._transaction() as conn:
            if self._sql(conn, "SELECT 1 FROM gs_users WHERE name = ?", [name]):
                raise Conflict(f"a user named {name!r} exists (names are never reused)")
            self._sql(
                conn,
                "INSERT INTO gs_users (name, role, towns, password_hash, created_at, "
                "failed_sign_ins) VALUES (?, ?, ?, ?, ?, 0)",
                [name, role, ",".join(towns), password_hash, now()],
            )

    def users(self) -> list[UserRecord]:
        with self._reading() as conn:
            rows = self._sql(conn, f"SELECT {self._USER_COLUMNS} FROM gs_users ORDER BY name")
        return [_user_record(row) for row in rows]

    def user(self, name: str) -> UserRecord | None:
        with self._reading() as conn:
            rows = self._sql(
                conn, f"SELECT {self._USER_COLUMNS} FROM gs_users WHERE name = ?", [name]
            )
        return _user_record(rows[0]) if rows else None

    def set_password_hash(self, name: str, password_hash: str, *, end_sessions: bool) -> None:
        """Replace a user's hash and clear their lock. ``end_sessions``: a new
        password (not merely a rehash of the same one) signs them out everywhere."""
        with self._transaction() as conn:
            rows = self._sql(
                conn,
                "UPDATE gs_users SET password_hash = ?, failed_sign_ins = 0, locked_until = NULL "
                "WHERE name = ? RETURNING name",
                [password_hash, name],
            )
            if not rows:
                raise NotFound(f"no user named {name!r}")
            if end_sessions:
                self._sql(conn, "DELETE FROM gs_sessions WHERE user_name = ?", [name])

    def set_user_disabled(self, name: str, disabled: bool) -> None:
        """Disable (and sign out everywhere) or enable a user."""
        with self._transaction() as conn:
            rows = self._sql(conn, "SELECT disabled_at FROM gs_users WHERE name = ?", [name])
            if not rows:
                raise NotFound(f"no user named {name!r}")
            if disabled:
                if rows[0][0] is None:
                    self._sql(
                        conn, "UPDATE gs_users SET disabled_at = ? WHERE name = ?", [now(), name]
                    )
                self._sql(conn, "DELETE FROM gs_sessions WHERE user_name = ?", [name])
            else:
                self._sql(
                    conn,
                    "UPDATE gs_users SET disabled_at = NULL, failed_sign_ins = 0, "
                    "locked_until = NULL WHERE name = ?",
                    [name],
                )

    def record_failed_sign_in(self, name: str, *, limit: int, lock_until: str) -> str | None:
        """Count one more failed sign-in of ``name`` in one transaction (so
        workers racing each other count every attempt); at ``limit`` in a row
        the account is locked until ``lock_until`` and the count starts again.
        Returns the lock's end when this failure set it, else None."""
        with self._transaction() as conn:
            rows = self._sql(
                conn,
                "UPDATE gs_users SET failed_sign_ins = failed_sign_ins + 1 WHERE name = ? "
                "RETURNING failed_sign_ins",
                [name],
            )
            if not rows or int(rows[0][0]) < limit:
                return None
            self._sql(
                conn,
                "UPDATE gs_users SET failed_sign_ins = 0, locked_until = ? WHERE name = ?",
                [lock_until, name],
            )
            return lock_until

    def create_session(self, session_hash: str, name: str, csrf_token: str) -> None:
        """Start a session for ``name`` after a successful sign-in, which also
        ends the user's run of failures."""
        at = now()
        with self._transaction() as conn:
            self._sql(
                conn,
                "UPDATE gs_users SET failed_sign_ins = 0, locked_until = NULL WHERE name = ?",
                [name],
            )
            self._sql(
                conn,
                "INSERT INTO gs_sessions (session_hash, user_name, csrf_token, created_at, "
                "last_seen) VALUES (?, ?, ?, ?, ?)",
                [session_hash, name, csrf_token, at, at],
            )

    def session(self, session_hash: str) -> SessionRecord | None:
        """The session with this hash and its user, read fresh on every call."""
        columns = ", ".join(f"u.{c.strip()}" for c in self._USER_COLUMNS.split(","))
        with self._reading() as conn:
            rows = self._sql(
                conn,
                f"SELECT {columns}, s.csrf_token, s.created_at, s.last_seen FROM gs_sessions s "
                "JOIN gs_users u ON u.name = s.user_name WHERE s.session_hash = ?",
                [session_hash],
            )
        if not rows:
            return None
        row = rows[0]
        return SessionRecord(_user_record(row[:8]), row[8], row[9], row[10])

    def touch_session(self, session_hash: str) -> None:
        """The session was used now: its idle time starts again."""
        with self._transaction() as conn:
            self._sql(
                conn,
                "UPDATE gs_sessions SET last_seen = ? WHERE session_hash = ?",
                [now(), session_hash],
            )

    def end_session(self, session_hash: str) -> None:
        with self._transaction() as conn:
            self._sql(conn, "DELETE FROM gs_sessions WHERE session_hash = ?", [session_hash])

    def end_stale_sessions(self, *, idle_since: str, created_before: str) -> int:
        """Delete sessions unused since ``idle_since`` or older than ``created_before``."""
        with self._transaction() as conn:
            rows = self._sql(
                conn,
                "DELETE FROM gs_sessions WHERE last_seen < ? OR created_at < ? "
                "RETURNING session_hash",
                [idle_since, created_before],
            )
        return len(rows)

    # -- jobs (OGC API - Processes) ---------------------------------------------------
    # The job engine decides what a job does; the store keeps its record, so
    # any worker process (and a restarted one) sees the same jobs.

    def create_job(self, record: JobRecord) -> None:
        """Keep a new job's record (``Conflict`` if the id exists). A new job
        has no result yet: ``record.has_result`` is ignored."""
        _check_job_status("status", record.status)
        _check_progress(record.progress)
        columns = ", ".join(_JOB_COLUMNS)
        marks = ", ".join("?" for _ in _JOB_COLUMNS)
        with self._transaction() as conn:
            rows = self._sql(
                conn,
                f"INSERT INTO gs_jobs ({columns}) VALUES ({marks}) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                [getattr(record, column) for column in _JOB_COLUMNS],
            )
        if not rows:
            raise Conflict(f"a job {record.id!r} exists")

    def update_job(
        self, job_id: str, *, expect: Sequence[str] | None = None, **fields: Any
    ) -> bool:
        """Set some of a job's ``status``, ``progress``, ``message``, ``started``,
        ``finished``, ``owner``, ``result`` (bytes or None) and ``result_media``,
        and ``updated`` to now, in one statement.

        With ``expect``, only while the job's status is one of those: a worker's
        late progress on a job dismissed meanwhile changes nothing. Returns
        whether the job was changed (False: no such job, or not as expected).
        """
        unknown = sorted(set(fields) - set(_JOB_UPDATABLE))
        if unknown:
            raise TypeError(f"update_job cannot set {', '.join(unknown)}")
        if "status" in fields:
            _check_job_status("status", fields["status"])
        if "progress" in fields:
            _check_progress(fields["progress"])
        result = fields.get("result")
        if result is not None and not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError("a job's result is bytes")
        # Column names come from the fixed list, never from the caller.
        columns = [column for column in _JOB_UPDATABLE if column in fields]
        assignments = ", ".join(f"{column} = ?" for column in [*columns, "updated"])
        params: list[Any] = [fields[column] for column in columns]
        params += [now(), job_id]
        where = "id = ?"
        if expect is not None:
            expected = [expect] if isinstance(expect, str) else list(expect)
            for status in expected:
                _check_job_status("expect", status)
            if not expected:
                return False
            where += f" AND status IN ({', '.join('?' for _ in expected)})"
            params += expected
        with self._transaction() as conn:
            rows = self._sql(
                conn, f"UPDATE gs_jobs SET {assignments} WHERE {where} RETURNING id", params
            )
        return bool(rows)

    def job(self, job_id: str) -> JobRecord | None:
        """One job's record, or None."""
        return next(iter(self._select_jobs("WHERE id = ?", [job_id])), None)

    def job_result(self, job_id: str) -> tuple[bytes, str] | None:
        """A job's result and its media type, or None when it has none (yet, or any more)."""
        with self._reading() as conn:
            rows = self._sql(
                conn,
                "SELECT result, result_media FROM gs_jobs WHERE id = ? AND result IS NOT NULL",
                [job_id],
            )
        if not rows:
            return None
        result, media = rows[0]
        return bytes(result), media or "application/octet-stream"

    def jobs(self, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Jobs newest first, paged."""
        return self._select_jobs("ORDER BY created DESC, id DESC LIMIT ? OFFSET ?", [limit, offset])

    def count_jobs(self) -> int:
        with self._reading() as conn:
            return int(self._sql(conn, "SELECT count(*) FROM gs_jobs")[0][0])

    def cached_job(self, process: str, cache_key: str) -> JobRecord | None:
        """The newest successful job of ``process`` with ``cache_key`` whose
        result is still kept: its result answers the same request again."""
        found = self._select_jobs(
            "WHERE process = ? AND cache_key = ? AND status = 'successful' "
            "AND result IS NOT NULL ORDER BY created DESC, id DESC LIMIT 1",
            [process, cache_key],
        )
        return found[0] if found else None

    def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs accepted or running, oldest first (a restarted engine looks at these)."""
        return self._select_jobs("WHERE status IN ('accepted', 'running') ORDER BY created, id", [])

    def delete_job_result(self, job_id: str) -> bool:
        """Drop a job's result bytes (the record stays); False when there is no such job."""
        with self._transaction() as conn:
            rows = self._sql(
                conn,
                "UPDATE gs_jobs SET result = NULL, updated = ? WHERE id = ? RETURNING id",
                [now(), job_id],
            )
        return bool(rows)

    def _select_jobs(self, tail: str, params: Sequence[Any]) -> list[JobRecord]:
        with self._reading() as conn:
            rows = self._sql(
                conn,
                f"SELECT {', '.join(_JOB_COLUMNS)}, result IS NOT NULL FROM gs_jobs {tail}",
                params,
            )
        return [
            JobRecord(
                **dict(zip(_JOB_COLUMNS, row[:-1], strict=True)),
                has_result=bool(row[-1]),
            )
            for row in rows
        ]


#: ``gs_jobs`` columns a ``JobRecord`` holds (all but the result bytes), in table order.
_JOB_COLUMNS = (
    "id",
    "process",
    "status",
    "progress",
    "message",
    "inputs",
    "cache_key",
    "owner",
    "actor",
    "created",
    "started",
    "finished",
    "updated",
    "result_media",
)

#: What ``update_job`` may set: the only column names its SQL ever holds.
_JOB_UPDATABLE = (
    "status",
    "progress",
    "message",
    "started",
    "finished",
    "owner",
    "result",
    "result_media",
)


def _check_job_status(parameter: str, status: object) -> None:
    if status not in JOB_STATUSES:
        raise InvalidParameter(
            parameter, f"{status!r} is not a job status ({', '.join(JOB_STATUSES)})"
        )


def _check_progress(progress: object) -> None:
    if not isinstance(progress, int) or isinstance(progress, bool) or not 0 <= progress <= 100:
        raise InvalidParameter("progress", f"{progress!r} is not a whole percentage (0 to 100)")


def _token_record(row: Sequence[Any]) -> TokenRecord:
    name, role, towns, created_at, revoked_at = row
    return TokenRecord(
        name, role, tuple(t for t in (towns or "").split(",") if t), created_at, revoked_at
    )


def _user_record(row: Sequence[Any]) -> UserRecord:
    name, role, towns, created_at, disabled_at, failed, locked_until, password_hash = row
    return UserRecord(
        name,
        role,
        tuple(t for t in (towns or "").split(",") if t),
        created_at,
        disabled_at,
        int(failed or 0),
        locked_until,
        password_hash,
    )


def _verb(action: str, default: str) -> str:
    return default if action == "upsert" else action


def _next_day(date_text: str) -> str:
    return (dt.date.fromisoformat(date_text) + dt.timedelta(days=1)).isoformat()


def now() -> str:
    """UTC time as ISO 8601 with milliseconds: sorts as text on both backends."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# -- what both backends store the same way -----------------------------------------


def normalised(layer: Layer, props: dict[str, Any]) -> dict[str, Any]:
    """Properties in the order and shape the stores return them: catalog
    properties in catalog order (lists never None), then extras."""
    out: dict[str, Any] = {"id": props.get("id")}
    for spec in layer.properties.values():
        if spec.name != "id":
            value = props.get(spec.name)
            out[spec.name] = (
                ([] if value is None else list(value)) if spec.type == "list" else value
            )
    out.update({k: v for k, v in props.items() if k not in layer.properties})
    return out


def stored_geometry(layer: Layer, geometry: BaseGeometry) -> BaseGeometry:
    """Polygon layers hold MultiPolygons (one geometry type per GeoPackage table)."""
    if layer.geometry == "Polygon" and isinstance(geometry, Polygon):
        return MultiPolygon([geometry])
    return geometry


def same_content(layer: Layer, stored: StoredFeature, feature: ValidFeature) -> bool:
    return stored.properties == normalised(
        layer, feature.properties
    ) and stored.geometry.equals_exact(stored_geometry(layer, feature.geometry), 0)


def audit_row(
    actor: str, action: str, before: StoredFeature | None, after: StoredFeature | None
) -> tuple[Any, ...]:
    """One audit record's values, in the column order of ``Store._audit``:
    at, actor, action, layer_id, feature_id, town_code, previous_town_code,
    before, after."""
    subject = after or before
    assert subject is not None
    town_after = _town_of(after)
    town_before = _town_of(before)
    town = town_after or town_before
    return (
        now(),
        actor,
        action,
        subject.layer_id,
        subject.id,
        town,
        town_before if town_before != town else None,
        feature_json(before),
        feature_json(after),
    )


def _town_of(feature: StoredFeature | None) -> str | None:
    if feature is None:
        return None
    return feature.id if feature.layer_id == "towns" else feature.properties.get("town_code")


def feature_json(feature: StoredFeature | None) -> str | None:
    if feature is None:
        return None
    return orjson.dumps(feature.geojson()).decode()


def _claim_id(layer_id: str, feature_id: str, seen: set[str], reserved: set[str], source: str):
    """A new id of a bulk load's row, refused when given before or reserved
    by a deletion; the row is the position in the layer's rows so far."""
    row = len(seen) + 1
    if feature_id in seen:
        raise InvalidParameter(
            "id",
            f"row {row} of {layer_id} in {source}: feature id {feature_id!r} appears twice; "
            f"nothing was loaded / {source} 中 {layer_id} 的第 {row} 行：编号 {feature_id} "
            "重复，未导入任何数据",
        )
    if feature_id in reserved:
        raise Conflict(
            f"row {row} of {layer_id} in {source}: {feature_id} is the id of a deleted feature: "
            f"it stays reserved for its restore (geo-service restore {feature_id}); nothing was "
            f"loaded / {source} 中 {layer_id} 的第 {row} 行：编号 {feature_id} 属于已删除的要素，"
            "保留待恢复，未导入任何数据"
        )
    seen.add(feature_id)


def _parsed(value: Any) -> Any:
    """A JSON column as Python (SQLite gives text, PostgreSQL parsed JSON)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _from_snapshot(layer_id: str, feature_id: str, snapshot: Any) -> StoredFeature:
    """A feature from an audit record's GeoJSON (revision 0: the trail keeps none)."""
    data = _parsed(snapshot)
    return StoredFeature(
        layer_id,
        feature_id,
        data["properties"],
        shapely.geometry.shape(data["geometry"]),
        revision=0,
    )
