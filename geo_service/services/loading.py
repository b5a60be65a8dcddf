"""Copy every layer of one store into another (``geo-service db load``),
streamed in chunks through the store's bulk path (``Store.load_layers``).

Two ways to check the source's rows, chosen per load:

- Full validation, every row as an import checks its rows: for a file
  whose rows were checked against another catalog or an unknown one (an
  older or another office's GeoPackage may hold what today's catalog
  refuses), and always with ``check=True`` (``db load --check``).
- The fast path, for a GeoPackage this service wrote (its schema version)
  whose rows were all checked against a catalog with the target's
  fingerprint (``GeoPackageStore.validated_against``), into a layer the
  target holds nothing of: the rows were validated by the store that wrote
  them, so they are read raw and only the damage a hand edit most likely
  does is looked for, cheaply, in every row: a control character anywhere
  in its text (``WITHOUT_CONTROL_CHARACTERS`` over a chunk's text at once), a position
  that is not a point with finite lon/lat in range, a town code the target
  will not know; ids given twice or reserved by a deletion are refused by
  ``load_layers`` as on the full path. A row that fails a cheap check gets
  full validation, so the refusal names the field (and a false alarm
  passes).

The first bad row stops the load, named by its layer, position and file,
and nothing is written.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import shapely

from geo_service.errors import FieldProblem, InvalidFeature
from geo_service.sources.catalog import (
    ID_PATTERN,
    MAX_STRING,
    MAX_TEXT,
    PHONE_PATTERN,
    WITHOUT_CONTROL_CHARACTERS,
    Catalog,
    Layer,
    PropertySpec,
    ValidFeature,
)
from geo_service.store import Store, StoredFeature, WriteResult
from geo_service.store.base import PackageRows
from geo_service.store.geopackage import (
    GeoPackageStore,
    PackageLayout,
    blob_wkb,
    package_columns,
    package_layout,
    package_properties,
    point_positions,
)

__all__ = ["LOAD_CHUNK", "file_sha256", "load_store", "trusted_source"]

#: Rows per chunk: big enough for COPY and executemany to run at full speed,
#: small enough that a chunk's rows never weigh much in memory (100k stations
#: into a GeoPackage: the same time with 5,000 as with 20,000, and a peak RSS
#: of 127 MB, the command's own, instead of 266 MB).
LOAD_CHUNK = 5_000


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def trusted_source(origin: Store, catalog: Catalog) -> bool:
    """Whether every row of ``origin`` was validated, when written by this
    service, against a catalog that accepts exactly what ``catalog`` does."""
    return isinstance(origin, GeoPackageStore) and origin.validated_against() == catalog.fingerprint


def load_store(
    origin: Store,
    target: Store,
    source: Path,
    *,
    actor: str,
    chunk: int = LOAD_CHUNK,
    check: bool = False,
) -> dict[str, WriteResult]:
    """Every layer of ``origin`` (opened from the file ``source``) into
    ``target`` in one transaction, each row checked against the target's
    catalog: fully, or on the fast path (see the module) when ``origin`` is
    trusted, the layer is a point layer the target holds nothing of, and
    ``check`` is false. The towns go first, so facilities are checked
    against the towns the target will hold: its own and the source's."""
    catalog = target.catalog
    layer_ids = sorted(origin.catalog.layers, key=lambda layer_id: layer_id != "towns")
    town_codes = {f.id for chunk_ in origin.stream_features("towns") for f in chunk_}
    town_codes |= {f.id for f in target.all_features("towns")}
    fast = not check and trusted_source(origin, catalog)
    batches = {}
    for layer_id in layer_ids:
        layer = catalog.layer(layer_id)
        if fast and layer.is_facility and target.count(layer_id) == 0:
            assert isinstance(origin, GeoPackageStore)
            batches[layer_id] = _checked_rows(
                catalog, layer, origin.stream_rows(layer_id, chunk=chunk), town_codes, source.name
            )
        else:
            batches[layer_id] = _validated(
                catalog,
                layer_id,
                origin.stream_features(layer_id, chunk=chunk),
                town_codes,
                source.name,
            )
    # The file is hashed beside the load (hashlib lets go of the GIL on
    # large blocks): at national scale that is seconds the load need not wait.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hashing:
        digest = hashing.submit(file_sha256, source)
        return target.load_layers(batches, actor=actor, source=source.name, sha256=digest.result)


#: Catalog property types whose values are mostly one per site (names,
#: addresses, phones, ids): checked by their cheap rules a chunk at a time.
#: Every other column (kinds, lists, statuses, hours, towns, dates, flags,
#: the extras) holds few distinct values: each new one is checked by full
#: validation of the first row that holds it.
FREE_TYPES = frozenset({"string", "text", "phone", "id"})


def _checked_rows(
    catalog: Catalog,
    layer: Layer,
    chunks: Iterator[list[tuple]],
    town_codes: set[str],
    source: str,
) -> Iterator[PackageRows]:
    """The fast path's checks on raw GeoPackage rows (``package_columns``), a
    chunk at a time: cheap rules for the columns of one value per site, and
    full validation of the first row holding each value of any other column
    (a value seen valid is not checked again). A row a cheap rule doubts is
    validated fully too: refused in the validator's words, or a false alarm."""
    columns = package_columns(layer)
    geom = columns.index("geom")
    specs = layer.properties
    kinds = {name: spec.type for name, spec in specs.items()}
    towns = [i for i, name in enumerate(columns) if kinds.get(name) == "town_code"]
    free = [(i, specs[name]) for i, name in enumerate(columns) if kinds.get(name) in FREE_TYPES]
    keyed = [i for i, name in enumerate(columns) if i != geom and kinds.get(name) not in FREE_TYPES]
    good: dict[int, set] = {i: set() for i in keyed}
    done = 0
    for rows in chunks:
        columns_of = list(zip(*rows, strict=True))  # the chunk column by column
        doubted = set(_doubted(rows, columns_of, geom, towns, town_codes))
        doubted.update(_free_doubts(columns_of, free))
        learn = _Learner(catalog, layer, town_codes, source, keyed, good, done)
        for n in sorted(doubted):
            learn(rows, n)
        # A value not seen valid before: the first row holding it is validated.
        for i in keyed:
            column = columns_of[i]
            if not (new := set(column) - good[i]):
                continue
            first = dict(zip(reversed(column), range(len(column) - 1, -1, -1), strict=True))
            for n in sorted(first[value] for value in new):
                if rows[n][i] not in good[i]:
                    learn(rows, n)
        done += len(rows)
        yield PackageRows(rows)


@dataclass
class _Learner:
    """Full validation of one row of a chunk, the row stored as the service
    writes it; its few-per-layer values are then known good."""

    catalog: Catalog
    layer: Layer
    town_codes: set[str]
    source: str
    keyed: list[int]
    good: dict[int, set]
    done: int  # rows of the layer before this chunk
    memo: dict = field(default_factory=dict)

    def __call__(self, rows: list[tuple], n: int) -> None:
        row = self.done + n + 1
        values = rows[n]
        clean = _validate_row(
            self.catalog, self.layer, values, self.town_codes, self.source, row, self.memo
        )
        _same_as_stored(package_layout(self.layer), self.layer, values, clean, self.source, row)
        for j in self.keyed:
            self.good[j].add(values[j])


def _free_doubts(columns: list[tuple], free: list[tuple[int, PropertySpec]]) -> set[int]:
    """Rows whose one-per-site columns break a rule ``Catalog`` applies to
    them (text or nothing, trimmed, within its length, a phone's or an id's
    pattern, present when required), by index; each column of the whole
    chunk checked at once (C loops: ``map``), row by row only when it fails."""
    doubted: set[int] = set()
    for i, spec in free:
        values = columns[i]
        if _free_column_ok(values, spec):
            continue
        doubted.update(n for n, value in enumerate(values) if not _free_column_ok((value,), spec))
    return doubted


_NO_SPACES = operator.methodcaller("replace", " ", "")


def _free_column_ok(values: tuple, spec: PropertySpec) -> bool:
    if None in values:
        if spec.required:
            return False
        values = tuple(v for v in values if v is not None)
    if not set(map(type, values)) <= {str} or "" in values:
        return False
    if not all(map(str.__eq__, values, map(str.strip, values))):
        return False
    if spec.type == "string":
        return max(map(len, values), default=0) <= MAX_STRING and not any(
            map(operator.contains, values, itertools.repeat("\n"))
        )
    if spec.type == "text":
        return max(map(len, values), default=0) <= MAX_TEXT
    if spec.type == "id":
        return all(map(ID_PATTERN.match, values))
    return all(map(PHONE_PATTERN.match, map(_NO_SPACES, values)))


def _same_as_stored(
    layout: PackageLayout, layer: Layer, values: tuple, clean: ValidFeature, source: str, row: int
) -> None:
    """A row the validator accepts must also be stored as it would write it:
    the fast path puts the raw row in, so a value in another form (hours in
    Chinese, a list with repeats, an extra shadowing a catalog column, which
    the columns the store filters on would then contradict) is refused."""
    stored = package_properties(layout, values)
    extras = orjson.loads(values[-1]) if values[-1] else {}
    shadowing = sorted(name for name in extras if name in layer.properties)
    changed = sorted(
        name
        for name in layer.properties
        if name != "id" and stored.get(name) != clean.properties.get(name)
    )
    if not shadowing and not changed:
        return
    names = ", ".join(shadowing or changed)
    raise _refusal(
        InvalidFeature(
            str(values[0]),
            [
                FieldProblem(
                    names,
                    "stored in a form this service does not write (load with --check "
                    "to have every row validated and written in today's form)",
                    "存储形式与本服务写入的不一致（可加 --check 逐行校验并按当前格式写入）",
                )
            ],
        ),
        layer.id,
        row,
        source,
    )


def _doubted(
    rows: list[tuple], columns: list[tuple], geom: int, towns: list[int], town_codes: set[str]
) -> list[int]:
    """The rows of a chunk (``columns``: the same chunk column by column) that
    fail a cheap check, by index (usually none): a position that is not a
    point with finite lon/lat in range, a town code not known, a control
    character in any text, a value of another type than a column of this
    store holds (a blob where text belongs)."""
    xy = point_positions(list(columns[geom]))
    doubted = set(
        np.flatnonzero(
            ~((np.abs(xy[:, 0]) <= 180) & (np.abs(xy[:, 1]) <= 90))  # NaN fails too
        ).tolist()
    )
    for i in towns:
        if unknown := set(columns[i]) - town_codes - {None}:
            doubted.update(n for n, value in enumerate(columns[i]) if value in unknown)
    # SQLite gives text, numbers, NULL or blobs: one blob per row, its geometry.
    others = [column for k, column in enumerate(columns) if k != geom]
    types = [set(map(type, column)) for column in others]
    # The whole chunk's text in one search; a row at a time only when it finds one.
    text = " ".join(
        " ".join(filter(None, column))
        for column, kinds in zip(others, types, strict=True)
        if str in kinds and kinds <= {str, type(None)}
    )
    mixed = any(
        bytes in kinds or (str in kinds and not kinds <= {str, type(None)}) for kinds in types
    )
    if mixed or WITHOUT_CONTROL_CHARACTERS.fullmatch(text) is None:
        doubted.update(
            n
            for n, values in enumerate(rows)
            if any(type(v) is bytes for k, v in enumerate(values) if k != geom)
            or WITHOUT_CONTROL_CHARACTERS.fullmatch(" ".join([v for v in values if type(v) is str]))
            is None
        )
    return sorted(doubted)


def _validate_row(
    catalog: Catalog,
    layer: Layer,
    values: tuple,
    town_codes: set[str],
    source: str,
    row: int,
    memo: dict,
) -> ValidFeature:
    """Full validation of one raw row: refused with the validator's words,
    or the row's clean feature (the raw row is what goes in)."""
    try:
        props = package_properties(package_layout(layer), values)
        geometry = shapely.from_wkb(blob_wkb(values[-2]))
    except (ValueError, TypeError, IndexError, KeyError, shapely.errors.GEOSException):
        raise _refusal(
            InvalidFeature(
                str(values[0]), [FieldProblem("geometry", "the row cannot be read", "该行无法读取")]
            ),
            layer.id,
            row,
            source,
        ) from None
    feature = StoredFeature(layer.id, str(values[0]), props, geometry, 0)
    try:
        return catalog.validate_feature(
            layer.id, _as_geojson(feature), town_codes=town_codes, memo=memo
        )
    except InvalidFeature as refused:
        raise _refusal(refused, layer.id, row, source) from None


def _validated(
    catalog: Catalog,
    layer_id: str,
    chunks: Iterator[list[StoredFeature]],
    town_codes: set[str],
    source: str,
) -> Iterator[list[ValidFeature]]:
    row = 0
    for stored in chunks:
        valid = []
        memo: dict = {}  # per chunk: repeated values checked once, memory bounded
        for feature in stored:
            row += 1
            try:
                valid.append(
                    catalog.validate_feature(
                        layer_id, _as_geojson(feature), town_codes=town_codes, memo=memo
                    )
                )
            except InvalidFeature as refused:
                raise _refusal(refused, layer_id, row, source) from None
        yield valid


def _refusal(refused: InvalidFeature, layer_id: str, row: int, source: str) -> InvalidFeature:
    return InvalidFeature(
        refused.feature_id,
        [
            FieldProblem(
                "row",
                f"row {row} of {layer_id} in {source} does not pass today's "
                "checks; nothing was loaded",
                f"{source} 中 {layer_id} 的第 {row} 行未通过校验，未导入任何数据",
            ),
            *refused.problems,
        ],
    )


def _as_geojson(feature: StoredFeature) -> dict:
    """The feature as the validator reads it: a point as GeoJSON coordinates,
    anything else as the shapely geometry the store gave (no GeoJSON round
    trip for the national towns' polygons)."""
    geometry = feature.geometry
    if geometry.geom_type == "Point" and not geometry.is_empty:
        shape = {"type": "Point", "coordinates": [geometry.x, geometry.y]}
    else:
        shape = geometry
    return {
        "type": "Feature",
        "id": feature.id,
        "geometry": shape,
        "properties": feature.properties,
    }
