"""Plan the import of a town office's file into a facility layer: map its
columns, convert its coordinates, check every row, and report row by row.

Planning reads and checks everything and writes nothing; it is handed the
stored towns and sites (the import service reads them from the store), and
``services.importing.apply_import`` writes the plan. Re-importing the same
file changes nothing: rows match stored features by id, or by name and
position when the file has no ids, and a row whose content is unchanged
keeps its stored date and source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import re
import statistics
import threading
import tomllib
import unicodedata
import weakref
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely

from geo_service.errors import InvalidFeature, InvalidParameter
from geo_service.sources.catalog import (
    CONTROL_CHARACTERS,
    Catalog,
    Layer,
    ValidFeature,
    control_character,
    control_message,
    printable,
)
from geo_service.sources.crs import (
    CoordinateSystem,
    convert,
    geodesic_distance,
    geodesic_inverse,
    metric_crs,
)
from geo_service.sources.geocoding import PlacedFeature
from geo_service.sources.samples import SampleNames, same_place_warning
from geo_service.sources.tables import (
    DEFAULT_LIMITS,
    CellError,
    ImportLimits,
    SourceRow,
    SourceTable,
    read_table,
)
from geo_service.sources.towns import TownIndex

__all__ = [
    "ImportLimits",
    "ImportPlan",
    "ImportRefused",
    "RowReport",
    "RowStatus",
    "TownChoice",
    "feature_id_for",
    "file_label",
    "fold_cell",
    "header_names",
    "load_header_aliases",
    "normalise_header",
    "plan_rows",
    "town_of_position",
]

#: Two rows with the same normalised name closer than this are probably one site.
DUPLICATE_DISTANCE_M = 50.0
#: GCJ-02 declared as WGS-84 puts points about this far east of their address.
GCJ_SHIFT_HINT_M = (300.0, 800.0)
#: Rows geocoded to test for that shift: a median needs no more, and each
#: geocode costs a couple of milliseconds.
GCJ_SAMPLE_ROWS = 200
#: Same-named sites compared with each row for "same place" (the earliest in the
#: file, or in the store, in each grid cell around it), and duplicates named per
#: row; beyond these a dense cluster of one name gets a single summary warning.
DUPLICATE_CANDIDATES = 64
DUPLICATE_REASONS = 5
#: What the import fills in when a row leaves a property empty, and how the
#: report names it. A missing position quality is
#: ``approximate`` (never ``surveyed``: nobody said the point was measured);
#: a missing eligibility is every group and a missing status ``open``, so the
#: site shows up for residents as the office most likely meant, and every such
#: row says so.
FILLED_DEFAULTS = {
    # property: (Chinese name, Chinese default, English name, English default)
    "position_quality": (
        "位置精度",
        "记为“示意位置”（approximate），不是“实测”",
        "position quality",
        "recorded as approximate, not surveyed",
    ),
    "eligible": ("服务对象", "记为全部五类优抚对象", "eligible groups", "recorded as all five"),
    "status": ("状态", "记为“正常开放”", "status", "recorded as open"),
}
DEFAULT_VALUES = {"position_quality": "approximate", "status": "open"}
#: Grid cells of the duplicate index: 0.001 degrees of latitude (about 111 m) by
#: 0.002 of longitude (about 178 m in Zibo), both wider than DUPLICATE_DISTANCE_M
#: up to 77 degrees of latitude, so sites within 50 m are in neighbouring cells.
_CELL_LAT, _CELL_LON = 0.001, 0.002


class RowStatus(StrEnum):
    ok = "OK"
    warning = "warning"
    error = "error"


@dataclass
class RowReport:
    line: int
    status: RowStatus = RowStatus.ok
    id: str | None = None
    name: str | None = None
    action: str = ""  # insert, update, unchanged; empty when not written
    reasons: list[str] = field(default_factory=list)
    geocoded: bool = False  # placed from its address, not from the file's coordinates
    #: Properties the row left empty and the import filled with a default
    #: (``FILLED_DEFAULTS``), each also stated among the reasons (``note``).
    defaults: list[str] = field(default_factory=list)
    #: Ids of sample sites this row is probably the same place as.
    same_as_samples: list[str] = field(default_factory=list)

    def warn(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.status == RowStatus.ok:
            self.status = RowStatus.warning

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)
        self.status = RowStatus.error

    def note(self, reason: str) -> None:
        """Said, but nothing to fix: the status stays as it is."""
        self.reasons.append(reason)


@dataclass
class ImportPlan:
    layer_id: str
    source: str
    crs: CoordinateSystem | None  # None for polygon files (they carry their own CRS)
    rows: list[RowReport]
    features: dict[int, ValidFeature]  # line -> feature, for rows without errors
    notes: list[str] = field(default_factory=list)  # about the whole file
    extra_batches: dict[str, list[ValidFeature]] = field(default_factory=dict)
    #: A context import replaces the stored features of this kind; ``kept``
    #: are the layer's features of other kinds, written back unchanged.
    replace_kind: str | None = None
    kept: list[ValidFeature] = field(default_factory=list)
    #: The file's SHA-256 (hex), kept in the audit record of a bulk import.
    sha256: str = ""

    @property
    def errors(self) -> list[RowReport]:
        return [r for r in self.rows if r.status == RowStatus.error]

    def counts(self) -> dict[str, int]:
        out = {status.value: 0 for status in RowStatus}
        for row in self.rows:
            out[row.status.value] += 1
        return out

    def default_counts(self) -> dict[str, int]:
        """Per property of ``FILLED_DEFAULTS``: how many rows to be written got
        the default."""
        return {
            prop: sum(prop in row.defaults for row in self.rows if row.status != RowStatus.error)
            for prop in FILLED_DEFAULTS
        }

    def summary(self) -> list[str]:
        """What the office should know about the file as a whole, beyond the
        counts: the defaults filled in and the sample sites probably replaced
        (Chinese first); shown after the rows by the CLI, and in the JSON report."""
        lines = []
        for prop, rows in self.default_counts().items():
            if rows:
                name_zh, default_zh, name_en, default_en = FILLED_DEFAULTS[prop]
                lines.append(
                    f"{rows} 行未填{name_zh}，{default_zh} "
                    f"({rows} rows without {name_en}: {default_en})"
                )
        samples = sum(
            bool(row.same_as_samples) for row in self.rows if row.status != RowStatus.error
        )
        if samples:
            lines.append(
                f"{samples} 行可能与示例站点是同一地点，核实后请删除或替换示例 "
                f"({samples} rows are probably the same place as a sample site)"
            )
        return lines


class ImportRefused(InvalidParameter):
    """The file has rows with errors and skipping them was not asked for."""

    def __init__(self, plan: ImportPlan):
        super().__init__(
            "file",
            f"{len(plan.errors)} of {len(plan.rows)} rows have errors; nothing was written "
            "(fix them, or import with --skip-invalid to load only the valid rows)",
        )
        self.plan = plan


# -- names -------------------------------------------------------------------------


def normalise_header(text: str) -> str:
    """Case, width, spaces and bracketed notes do not matter in a header."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = re.sub(r"\(.*?\)|\[.*?\]", "", text)
    return re.sub(r"[\s_\-:：]+", "", text)


def normalise_name(text: str) -> str:
    """For duplicate checks: width, case, spaces and punctuation ignored."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return re.sub(r"[\s\W_]+", "", text)


def load_header_aliases(path: Path) -> dict[str, str]:
    """Normalised header -> property, from ``layers/import_headers.toml``."""
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for prop, names in table.items():
        for name in [prop, *names]:
            aliases[normalise_header(name)] = prop
    return aliases


def header_names(path: Path) -> dict[str, str]:
    """Property -> the header the import template writes for it: the first
    name ``layers/import_headers.toml`` lists, as offices write it."""
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    return {prop: names[0] if names else prop for prop, names in table.items()}


def _crs_hint(header: str) -> CoordinateSystem | None:
    text = unicodedata.normalize("NFKC", header).lower()
    if "高德" in text or "gcj" in text or "腾讯" in text:
        return CoordinateSystem.gcj02
    if "百度" in text or "bd09" in text:
        return CoordinateSystem.bd09
    return None


# -- the town rule -------------------------------------------------------------------


@dataclass(frozen=True)
class TownChoice:
    """The town a site is in, by ``town_of_position``, and how it was decided."""

    code: str | None  # the site's town; None: outside the district
    located: str | None  # the town whose polygon holds the point, if any
    declared: str | None  # the town the site declared, if any (a known code)
    distance_m: float | None  # from the declared town's polygon, when it was measured
    tolerance_m: float  # the tolerance that applied (0 for official boundaries)

    @property
    def kept_declared(self) -> bool:
        """The declared town was kept though the point falls outside its polygon."""
        return self.declared is not None and self.code == self.declared != self.located

    @property
    def overruled(self) -> bool:
        """A declared town was too far from the point: the position decided."""
        return self.declared is not None and self.code is not None and self.code != self.declared

    def outside(self, lon: float, lat: float) -> str:
        """Why a point with no town is refused (API problems and import rows alike)."""
        beyond = (
            f"more than {self.tolerance_m:,.0f} m from every town"
            if self.tolerance_m
            else "outside every town"
        )
        return f"outside the district: {beyond} ({lon:.5f}, {lat:.5f} in WGS-84)"


_METRIC_TOWNS: weakref.WeakKeyDictionary[TownIndex, tuple[Any, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)
_METRIC_LOCK = threading.Lock()


def _town_distances_m(towns: TownIndex, lon: float, lat: float) -> np.ndarray:
    """Metres from the point to each town polygon (``towns.codes`` order), in
    the district's metric projection (CGCS2000 / GK CM 117E in Zibo)."""
    with _METRIC_LOCK:
        cached = _METRIC_TOWNS.get(towns)
        if cached is None:
            bounds = tuple(float(b) for b in shapely.total_bounds(towns.geometries))
            to_metric = pyproj.Transformer.from_crs(4326, metric_crs(bounds), always_xy=True)

            def project(xy: np.ndarray) -> np.ndarray:
                return np.column_stack(to_metric.transform(xy[:, 0], xy[:, 1]))

            projected = np.array([shapely.transform(g, project) for g in towns.geometries])
            cached = _METRIC_TOWNS[towns] = (to_metric, projected)
    to_metric, projected = cached
    x, y = to_metric.transform(lon, lat)
    if not (math.isfinite(x) and math.isfinite(y)):
        return np.full(len(projected), math.inf)
    return shapely.distance(projected, shapely.Point(x, y))


def town_of_position(
    towns: TownIndex,
    lon: float,
    lat: float,
    declared: str | None,
    *,
    approximate: bool,
    tolerance_m: float,
) -> TownChoice:
    """The town rule, for every write (single edits, import rows, restores,
    new boundaries): **the position decides the town**.

    - A declared town (a known code) is kept when the point lies on its
      polygon, or, while the boundaries are ``approximate``, within
      ``tolerance_m`` metres of it: drawn boundaries are off by that much.
    - Otherwise the town is the one whose polygon holds the point.
    - A point in no polygon goes, while the boundaries are approximate, to
      the nearest town within ``tolerance_m``; beyond that (or outside
      official boundaries) it is outside the district: ``code`` is None.

    Whether the writer may write in the town decided here is
    ``services.access.authorize_change``'s question.

    Example
    -------
    >>> from shapely.geometry import box
    >>> towns = TownIndex([("370303001", box(118.0, 36.8, 118.01, 36.81)),
    ...                    ("370303002", box(118.01, 36.8, 118.02, 36.81))])
    >>> near = town_of_position(towns, 118.011, 36.805, "370303001",
    ...                         approximate=True, tolerance_m=500)
    >>> near.code, near.kept_declared, round(near.distance_m)
    ('370303001', True, 89)
    >>> far = town_of_position(towns, 118.019, 36.805, "370303001",
    ...                        approximate=True, tolerance_m=500)
    >>> far.code, far.overruled
    ('370303002', True)
    >>> town_of_position(towns, 116.4, 39.9, "370303001",
    ...                  approximate=True, tolerance_m=500).code is None
    True
    """
    tolerance = float(tolerance_m) if approximate else 0.0
    if declared is not None and declared not in towns.codes:
        declared = None  # an unknown code is the catalog's to refuse
    if len(towns) == 0:
        return TownChoice(None, None, declared, None, tolerance)
    located = towns.locate(lon, lat)
    if declared is None or declared == located:
        code = located
        distance = None
        if code is None and tolerance > 0:
            distances = _town_distances_m(towns, lon, lat)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= tolerance:
                code, distance = towns.codes[nearest], float(distances[nearest])
        return TownChoice(code, located, declared, distance, tolerance)
    index = towns.codes.index(declared)
    if towns.geometries[index].intersects(shapely.Point(lon, lat)):
        return TownChoice(declared, located, declared, 0.0, tolerance)  # on a shared edge
    distances = _town_distances_m(towns, lon, lat)
    distance = float(distances[index])
    if distance <= tolerance:
        return TownChoice(declared, located, declared, distance, tolerance)
    code = located
    if code is None and tolerance > 0:
        nearest = int(np.argmin(distances))
        if distances[nearest] <= tolerance:
            code = towns.codes[nearest]
    return TownChoice(code, located, declared, distance, tolerance)


# -- values ------------------------------------------------------------------------

#: Line breaks and tabs inside a spreadsheet cell (Excel's Alt+Enter), with
#: the spaces around them: folded to one space on import, with a row warning.
_CELL_BREAKS = re.compile(r"[ ]*[\t\r\n][ \t\r\n]*")


def fold_cell(value: Any) -> tuple[Any, bool]:
    r"""A cell's text with tabs and line breaks folded to single spaces, and
    whether any were (other control characters are left for the checks to refuse).

    >>> fold_cell("张店区\r\n  人民路1号")
    ('张店区 人民路1号', True)
    """
    if not isinstance(value, str) or not _CELL_BREAKS.search(value):
        return value, False
    return _CELL_BREAKS.sub(" ", value).strip(), True


def file_label(name: str) -> str:
    """A file's name as the ``source`` text of what it brings (a name may hold
    control characters; stored text may not)."""
    return CONTROL_CHARACTERS.sub("_", name)


def _checked_cells(row: SourceRow, mapping: dict[str, str], report: RowReport) -> dict[str, Any]:
    """The row's cells as planning uses them: tabs and line breaks folded to a
    space (a warning); any other control character is a row error naming the
    field, and is then shown as U+FFFD by the row's other checks (the row is
    not written)."""
    cells: dict[str, Any] = {}
    for header, value in row.values.items():
        value, folded = fold_cell(value)
        field_name = mapping.get(header) or printable(header)
        if folded:
            report.warn(f"{field_name}: line breaks or tabs in the cell were folded to spaces")
        code = control_character(value) if isinstance(value, str) else None
        if code:
            report.fail(f"{field_name}: {control_message(code)}")
            value = CONTROL_CHARACTERS.sub("\ufffd", value)
        cells[header] = value
    return cells


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores phone numbers and codes as numbers
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    """A coordinate as written: 118.05, "118.05", "118.05°", full-width digits."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = unicodedata.normalize("NFKC", str(value)).strip().rstrip("°").strip()
    return float(text)  # ValueError for anything else


def _split(value: Any) -> list[str]:
    return [v.strip() for v in re.split(r"[;,；，、/|]", str(value)) if v.strip()]


#: id(labels) -> (labels, normalised name -> key): the catalog's label tables
#: are built once, so each is indexed once instead of on every row.
_LABEL_INDEXES: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}


def _lookup(labels: dict[str, Any], value: str) -> str | None:
    """A key from its key, Chinese label or English label (any case)."""
    cached = _LABEL_INDEXES.get(id(labels))
    if cached is None or cached[0] is not labels:
        index: dict[str, str] = {}
        for key, label in labels.items():
            # "汽车站/公交枢纽" answers to either of its parts too.
            names = [key, label.zh, label.en, *label.zh.split("/"), *label.en.split("/")]
            for name in names:
                index.setdefault(normalise_name(name), key)  # the first key wins
        cached = _LABEL_INDEXES[id(labels)] = (labels, index)
    return cached[1].get(normalise_name(value))


# -- planning ------------------------------------------------------------------------


@dataclass
class _Context:
    catalog: Catalog
    layer: Layer
    crs: CoordinateSystem
    actor: str
    today: str
    source: str
    towns: TownIndex
    town_names: dict[str, str]  # normalised name (and short name) -> code
    approximate_towns: bool
    stored: dict[str, Any]  # id -> StoredFeature of the layer
    geocoder: Any = None  # geo_service.sources.geocoding.Geocoder, for rows without coordinates
    town_labels: dict[str, str] = field(default_factory=dict)  # code -> name


def _town_label(ctx: _Context, code: str | None) -> str:
    name = ctx.town_labels.get(code or "")
    return f"{name} ({code})" if name else str(code)


def _extra_name(header: str) -> str:
    """An office's own column kept as an extra property, named by its header
    (a line break in a header cell folded like one in any cell)."""
    return fold_cell(header)[0]


def _town_context(towns: Sequence[PlacedFeature]) -> tuple[TownIndex, dict[str, str], bool]:
    index = TownIndex((town.id, town.geometry) for town in towns)
    names: dict[str, str] = {}
    for town in towns:
        name = str(town.properties.get("name") or "")
        names[normalise_name(name)] = town.id
        short = re.sub(r"(街道|街道办事处|镇)$", "", name)
        names[normalise_name(short)] = town.id
        names[town.id] = town.id
    approximate = any(town.properties.get("approximate") for town in towns)
    return index, names, approximate


def feature_id_for(layer: Layer, name: str, lon: float, lat: float) -> str:
    """A stable id for a row without one: the same name at the same place
    (to ~1 m) gets the same id on every import."""
    digest = hashlib.sha1(f"{normalise_name(name)}|{lon:.5f}|{lat:.5f}".encode()).hexdigest()
    return f"{layer.id}-{digest[:10]}"


def _row_properties(
    row: SourceRow, mapping: dict[str, str], ctx: _Context, report: RowReport
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """The row as catalog properties (extras kept) and its WGS-84 position."""
    props: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for header, value in _checked_cells(row, mapping, report).items():
        if isinstance(value, CellError):
            report.fail(f"column {printable(header)}: {value}")
            continue
        prop = mapping.get(header)
        if prop is None:
            text = _text(value)
            if text is not None:
                props[_extra_name(header)] = text  # an office's own column: kept as is
        elif value not in (None, ""):
            given[prop] = value

    name = _text(given.get("name"))
    report.name = name
    if not name:
        report.fail("missing name (名称)")

    position = None
    if row.geometry is not None and row.point is None:
        kind = "an empty geometry" if row.geometry.is_empty else f"a {row.geometry.geom_type}"
        report.fail(f"geometry is {kind}; a site must be a point")
    elif row.point is not None:
        position = convert(row.point[0], row.point[1], ctx.crs, CoordinateSystem.wgs84)
    elif (given.get("lon") is None) != (given.get("lat") is None):
        report.fail("only one of 经度/纬度 (longitude/latitude) is given")
    elif given.get("lon") is not None:
        try:
            lon, lat = _number(given.get("lon")), _number(given.get("lat"))
        except (TypeError, ValueError):
            report.fail(
                f"unparseable coordinates: 经度 {given.get('lon')!r}, 纬度 {given.get('lat')!r}"
            )
        else:
            if not (math.isfinite(lon) and math.isfinite(lat)):
                report.fail(f"coordinates are not finite numbers: {lon}, {lat}")
            elif 70 <= lat <= 140 and 0 <= lon <= 60:  # China's longitudes as latitude
                report.fail(f"coordinates look swapped (经度 {lon}, 纬度 {lat})")
            elif not (-180 <= lon <= 180 and -90 <= lat <= 90):
                report.fail(f"coordinates out of range: {lon}, {lat}")
            else:
                position = convert(lon, lat, ctx.crs, CoordinateSystem.wgs84)
    elif ctx.geocoder is not None:
        position = _geocode_row(given, ctx, report)
    else:
        report.fail("no coordinates (经度/纬度)")

    if position is not None:
        lon, lat = float(position[0]), float(position[1])
        position = (lon, lat)
        declared = _text(given.get("town"))
        declared_code = ctx.town_names.get(normalise_name(declared)) if declared else None
        if declared and declared_code is None:
            report.fail(f"unknown town {declared!r}")
        choice = town_of_position(
            ctx.towns,
            lon,
            lat,
            declared_code,
            approximate=ctx.approximate_towns,
            tolerance_m=ctx.catalog.limits.town_tolerance_m,
        )
        if choice.code is None:
            report.fail(choice.outside(lon, lat))
        elif choice.kept_declared:
            report.warn(
                f"town mismatch: declared {declared} ({declared_code}) but the position "
                f"falls in {_town_label(ctx, choice.located)} by the approximate boundaries, "
                f"{choice.distance_m:,.0f} m from {declared} (within the "
                f"{choice.tolerance_m:,.0f} m tolerance); kept the declared town"
            )
        elif choice.overruled:
            report.warn(
                f"town mismatch: declared {declared} ({declared_code}) but the position "
                f"lies in {_town_label(ctx, choice.code)}, {choice.distance_m:,.0f} m from "
                f"{declared} (beyond the {choice.tolerance_m:,.0f} m tolerance); the position "
                "decides the town"
            )
        props["town_code"] = choice.code

    kind = _text(given.get("kind"))
    if kind:
        key = _lookup(ctx.layer.kinds, kind)
        if key is None:
            report.fail(
                f"unknown kind {kind!r}; known: "
                + "、".join(label.zh for label in ctx.layer.kinds.values())
            )
        props["kind"] = key or kind
    else:
        report.fail("missing kind (类型)")

    for prop, values_name in (("services", "services"), ("eligible", "eligible")):
        raw = given.get(prop)
        if raw is None:
            continue
        keys = []
        for item in _split(raw):
            key = _lookup(ctx.catalog.values[values_name], item)
            if key is None:
                report.fail(f"unknown {prop} value {item!r}")
            else:
                keys.append(key)
        props[prop] = keys
    if "eligible" not in props:
        props["eligible"] = list(ctx.catalog.values["eligible"])
        report.defaults.append("eligible")
    for prop in ("status", "position_quality"):
        text = _text(given.get(prop))
        if text:
            props[prop] = _lookup(ctx.catalog.values[prop], text) or text
        else:
            props[prop] = DEFAULT_VALUES[prop]
            report.defaults.append(prop)  # said by _state_defaults, after the row's faults
    phone = given.get("phone")
    if isinstance(phone, int | float) and not isinstance(phone, bool):
        digits = _text(phone) or ""
        # Excel turned "0533…" into a number and dropped the 0 of the area code.
        if digits.isdigit() and 9 <= len(digits) <= 11 and not digits.startswith("1"):
            given["phone"] = "0" + digits
            report.warn(f"phone {digits} was stored as a number; restored the leading 0")
    for prop in ("address", "phone", "opening_hours", "responsible_unit", "window"):
        text = _text(given.get(prop))
        if text is not None:
            props[prop] = text
    if "window" in props and "window" not in ctx.layer.properties:
        report.warn("a window (窗口) is only kept for green channels; kept as an extra column")
    props["name"] = name
    props["source"] = _text(given.get("source")) or ctx.source
    props["updated_at"] = ctx.today
    props["sample"] = False
    row_id = _text(given.get("id"))
    if row_id:
        props["id"] = row_id
    return props, position


def _state_defaults(rows: list[RowReport]) -> None:
    """Each default a written row got, stated in the row's reasons. A default
    is not a fault (a file with no 状态 column means open sites), so the row's
    status stays; the summary counts them (``ImportPlan.summary``)."""
    for report in rows:
        if report.status == RowStatus.error:
            continue  # not written: its defaults do not matter
        for prop in report.defaults:
            name_zh, default_zh, name_en, default_en = FILLED_DEFAULTS[prop]
            report.note(f"未填{name_zh}，{default_zh} (no {name_en} given: {default_en})")


def _geocode_row(given: dict[str, Any], ctx: _Context, report: RowReport):
    """A row without coordinates is placed from its address by the offline
    geocoder, never below street level."""
    text = _text(given.get("address")) or _text(given.get("name"))
    best = ctx.geocoder.geocode(text, 1) if text else []
    if not best or best[0].level == "town":
        level = " (only its town was recognised)" if best else ""
        report.fail(f"no coordinates (经度/纬度), and the address could not be placed{level}")
        return None
    found = best[0]
    # Only a known street address is an address-quality position; a place's
    # centre or a house number estimated along a road is approximate, and the
    # geocoder must not learn from its own guesses.
    given.setdefault("position_quality", "address" if found.level == "address" else "approximate")
    report.warn(
        f"no coordinates: placed from {text!r} by the offline geocoder "
        f"({found.level} {found.matched!r}, confidence {found.confidence:.2f})"
    )
    report.geocoded = True
    return found.lon, found.lat


def _gcj_suspicion(plan_rows, features, ctx: _Context) -> str | None:
    """Points consistently ~500 m east of where their addresses geocode are
    GCJ-02 coordinates declared as WGS-84."""
    if ctx.geocoder is None or ctx.crs != CoordinateSystem.wgs84:
        return None
    candidates = []
    for report in plan_rows:
        feature = features.get(report.line)
        if feature is None or report.geocoded or not feature.properties.get("address"):
            continue
        candidates.append(feature)
    # An even sample over the whole file: the median needs no more.
    step = max(1, math.ceil(len(candidates) / GCJ_SAMPLE_ROWS))
    east, north = [], []
    for feature in candidates[::step]:
        best = ctx.geocoder.geocode(feature.properties["address"], 1)
        if not best or best[0].level not in {"address", "place", "intersection"}:
            continue
        if best[0].confidence < 0.6:
            continue
        azimuth, distance = geodesic_inverse(
            best[0].lon, best[0].lat, feature.geometry.x, feature.geometry.y
        )
        east.append(distance * math.sin(math.radians(azimuth)))
        north.append(distance * math.cos(math.radians(azimuth)))
    if len(east) < 3:
        return None
    e, n = statistics.median(east), statistics.median(north)
    if GCJ_SHIFT_HINT_M[0] <= e <= GCJ_SHIFT_HINT_M[1] and abs(n) < 300:
        return (
            f"warning: {len(east)} points sit a median {e:.0f} m east and {n:.0f} m north of "
            "where their addresses geocode: the file is probably GCJ-02 (Amap) declared as "
            "WGS-84; import with --crs gcj02"
        )
    return None


class _PlaceIndex:
    """Sites by normalised name and grid cell, in the order they were added:
    the candidates for "the same site" as a point are the sites of its name in
    the 3 x 3 cells around it, so no check compares every pair of rows or
    every row with every stored site.

    Example
    -------
    >>> index = _PlaceIndex()
    >>> index.add("驿站", "a", (118.0, 36.8), 1)
    >>> index.add("驿站", "b", (118.1, 36.8), 2)  # 9 km east
    >>> [key for key, *_ in index.near("驿站", (118.0001, 36.8))]
    ['a']
    >>> index.near("别的名字", (118.0, 36.8))
    []
    """

    def __init__(self) -> None:
        self._cells: dict[tuple[str, int, int], dict[str, tuple[Any, float, float]]] = {}
        self.truncated = False  # the last near() left candidates out

    @staticmethod
    def _cell(name: str, lon: float, lat: float) -> tuple[str, int, int]:
        return name, math.floor(lon / _CELL_LON), math.floor(lat / _CELL_LAT)

    def add(self, name: str, key: str, position: tuple[float, float], order: Any) -> None:
        self._cells.setdefault(self._cell(name, *position), {})[key] = (order, *position)

    def remove(self, name: str, key: str, position: tuple[float, float]) -> None:
        self._cells.get(self._cell(name, *position), {}).pop(key, None)

    def near(
        self, name: str, position: tuple[float, float], limit: int = DUPLICATE_CANDIDATES
    ) -> list[tuple[str, Any, float, float]]:
        """(key, order, lon, lat) of up to ``limit`` sites of ``name`` in the
        cells around ``position``, earliest added first."""
        _, column, row = self._cell(name, *position)
        found: list[tuple[Any, str, float, float]] = []
        self.truncated = False
        for dx, dy in itertools.product((-1, 0, 1), repeat=2):
            cell = self._cells.get((name, column + dx, row + dy))
            if not cell:
                continue
            if len(cell) > limit:
                self.truncated = True
            for key, (order, lon, lat) in itertools.islice(cell.items(), limit):
                found.append((order, key, lon, lat))
        found.sort(key=lambda item: item[0])
        if len(found) > limit:
            self.truncated = True
        return [(key, order, lon, lat) for order, key, lon, lat in found[:limit]]


class _StoredSites:
    """The layer's stored sites indexed by name and place, for matching rows
    without ids (``match``) and for duplicate warnings (``near``)."""

    def __init__(self, stored: dict[str, Any]):
        self.all = _PlaceIndex()
        self.unclaimed = _PlaceIndex()
        self.by_address: dict[str, list[str]] = defaultdict(list)
        self._place: dict[str, tuple[str, tuple[float, float]]] = {}
        for order, feature in enumerate(stored.values()):
            name = normalise_name(feature.properties.get("name") or "")
            position = (feature.geometry.x, feature.geometry.y)
            self.all.add(name, feature.id, position, order)
            self.unclaimed.add(name, feature.id, position, order)
            self._place[feature.id] = (name, position)
            if feature.properties.get("address"):
                self.by_address[normalise_name(feature.properties["address"])].append(feature.id)

    def claim(self, feature_id: str) -> None:
        """An earlier row has this id: no later row may be matched to it."""
        place = self._place.get(feature_id)
        if place is not None:
            self.unclaimed.remove(place[0], feature_id, place[1])


def _match_stored(
    ctx: _Context,
    layer: Layer,
    name: str,
    position: tuple[float, float],
    claimed: Any,
    sites: _StoredSites,
) -> str:
    """The id for a row without one: the stable id of the same name at the same
    place if stored; else the nearest stored site of that name within 50 m not
    already matched by an earlier row (``claimed``, also taken out of
    ``sites.unclaimed``); else a new stable id."""
    own = feature_id_for(layer, name, *position)
    if own in ctx.stored and own not in claimed:
        return own
    best: tuple[float, str] | None = None
    # Earliest stored first, so a tie goes to the first in the store's order.
    for feature_id, _, lon, lat in sites.unclaimed.near(normalise_name(name), position):
        distance = geodesic_distance(*position, lon, lat)
        if distance <= DUPLICATE_DISTANCE_M and (best is None or distance < best[0]):
            best = (distance, feature_id)
    return best[1] if best else own


def _keep_unchanged_dates(ctx: _Context, feature: ValidFeature) -> ValidFeature:
    """A row identical to what is stored keeps the stored date and source, so
    re-importing a file is a no-op."""
    stored = ctx.stored.get(feature.id)
    if stored is None:
        return feature
    volatile = {"updated_at", "source"}
    same = {k: v for k, v in feature.properties.items() if k not in volatile} == {
        k: v for k, v in stored.properties.items() if k not in volatile
    } and feature.geometry.equals_exact(stored.geometry, 1e-9)
    if not same:
        return feature
    props = dict(
        feature.properties,
        updated_at=stored.properties["updated_at"],
        source=stored.properties["source"],
    )
    return ValidFeature(feature.id, props, feature.geometry)


def _check_duplicates(
    rows: list[RowReport], features: dict[int, ValidFeature], ctx: _Context, sites: _StoredSites
) -> None:
    """Warn of rows that look like another row or a stored site: the same name
    within 50 m, or the same address. Each row is compared with the same-named
    sites around it (``_PlaceIndex``), never with every row or stored site."""
    report_of = {r.line: r for r in rows}
    in_file = _PlaceIndex()
    first_at_address: dict[str, tuple[int, str]] = {}
    for line, feature in features.items():  # in file order
        report = report_of[line]
        name = normalise_name(feature.properties["name"])
        position = (feature.geometry.x, feature.geometry.y)
        found = []
        for other_id, other_line, lon, lat in in_file.near(name, position):
            if other_id == feature.id:
                continue
            d = geodesic_distance(*position, lon, lat)
            if d <= DUPLICATE_DISTANCE_M:
                found.append(
                    f"probable duplicate of line {other_line} (same name, {d:.0f} m apart)"
                )
        _warn_some(report, found, in_file.truncated, "rows of the same name nearby")
        in_file.add(name, feature.id, position, line)
        address = feature.properties.get("address")
        if address:
            key = normalise_name(address)
            if key in first_at_address:
                first_line, first_id = first_at_address[key]
                if feature.id != first_id:
                    report.warn(f"probable duplicate of line {first_line} (same address)")
            else:
                first_at_address[key] = (line, feature.id)
        found = []
        for stored_id, _, lon, lat in sites.all.near(name, position):
            if stored_id == feature.id:
                continue
            d = geodesic_distance(*position, lon, lat)
            if d <= DUPLICATE_DISTANCE_M:
                found.append(f"probable duplicate of stored site {stored_id} ({d:.0f} m)")
        _warn_some(report, found, sites.all.truncated, "stored sites of the same name nearby")
        same_address = sites.by_address.get(normalise_name(address or ""), [])
        found = [
            f"probable duplicate of stored site {stored_id} (same address)"
            for stored_id in itertools.islice(same_address, DUPLICATE_CANDIDATES)
            if stored_id != feature.id
        ]
        more = len(same_address) > DUPLICATE_CANDIDATES
        _warn_some(report, found, more, "stored sites at the same address")


def _check_samples(rows: list[RowReport], features: dict[int, ValidFeature], ctx: _Context) -> None:
    """Warn of rows named like a stored sample site of the layer, wherever it
    lies: the real site the sample stood in for, most likely."""
    samples = SampleNames.of((f.id, f.properties) for f in ctx.stored.values())
    if not len(samples):
        return
    report_of = {r.line: r for r in rows}
    for line, feature in features.items():
        if feature.properties.get("sample"):
            continue
        report = report_of[line]
        for sample in samples.matches(feature.properties["name"], own_id=feature.id):
            report.same_as_samples.append(sample.id)
            report.warn(same_place_warning(sample))


def _warn_some(report: RowReport, reasons: list[str], truncated: bool, what: str) -> None:
    """Name the first few duplicates; a dense cluster of one name gets one line."""
    for reason in reasons[:DUPLICATE_REASONS]:
        report.warn(reason)
    if truncated:
        report.warn(
            f"too many {what} to compare them all: only the first {DUPLICATE_CANDIDATES} "
            "were checked for duplicates"
        )
    elif len(reasons) > DUPLICATE_REASONS:
        report.warn(f"and {len(reasons) - DUPLICATE_REASONS} more probable duplicates ({what})")


def plan_rows(
    path: Path,
    layer_id: str,
    catalog: Catalog,
    *,
    towns: Sequence[PlacedFeature],
    stored: Sequence[PlacedFeature],
    retired: Collection[str] = (),
    crs: CoordinateSystem | None = None,
    actor: str = "import",
    today: dt.date | None = None,
    progress: Callable[[Iterable[SourceRow]], Iterable[SourceRow]] | None = None,
    geocoder: Any = None,
    limits: ImportLimits = DEFAULT_LIMITS,
) -> ImportPlan:
    """Read and check ``path`` for the facility layer ``layer_id`` against the
    stored ``towns`` and the layer's ``stored`` sites; nothing is written.
    ``retired`` are the ids of deleted sites: they stay reserved for a restore,
    so a row naming one is an error. A file over one of ``limits`` raises
    ``ImportTooLarge`` as soon as it is found so."""
    layer = catalog.layer(layer_id)
    if not layer.is_facility:
        raise InvalidParameter("layer", f"layer {layer.id} cannot be imported row by row")
    aliases = load_header_aliases(catalog.directory / "import_headers.toml")
    table: SourceTable = read_table(path, set(aliases), normalise_header, limits)
    mapping = {
        h: aliases[normalise_header(h)] for h in table.headers if normalise_header(h) in aliases
    }
    claimed: dict[str, list[str]] = defaultdict(list)
    for header, prop in mapping.items():
        claimed[prop].append(header)
    clashes = {prop: heads for prop, heads in claimed.items() if len(heads) > 1}
    if clashes:
        raise InvalidParameter(
            "file",
            f"{table.name}: several columns mean the same thing, so one would silently "
            "replace another: "
            + "; ".join(f"{prop}: {', '.join(heads)}" for prop, heads in clashes.items()),
        )
    notes = [f"read {len(table.rows)} rows from {table.name}"]
    if table.encoding:
        notes.append(f"text encoding: {table.encoding}")
    notes += table.notes
    notes.append(
        "columns: "
        + ", ".join(
            f"{h} → {mapping[h]}" if h in mapping else f"{h} (kept as extra)" for h in table.headers
        )
    )
    hints = {_crs_hint(h) for h, prop in mapping.items() if prop in {"lon", "lat"}} - {None}
    if crs is None:
        crs = hints.pop() if len(hints) == 1 else CoordinateSystem.wgs84
        notes.append(
            f"coordinates taken as {crs.value}"
            + (" (from the column names)" if crs != CoordinateSystem.wgs84 else "")
        )
    elif hints and crs not in hints:
        notes.append(
            f"warning: the column names suggest {', '.join(h.value for h in hints)} but "
            f"--crs {crs.value} was given; check which is right"
        )
    town_index, town_names, approximate = _town_context(towns)
    today_text = (today or dt.date.today()).isoformat()
    ctx = _Context(
        catalog=catalog,
        layer=layer,
        crs=crs,
        actor=actor,
        today=today_text,
        # Public text: who imported stays in the audit trail, never on the map.
        source=f"imported from {file_label(table.name)} on {today_text}",
        towns=town_index,
        town_names=town_names,
        approximate_towns=approximate,
        stored={f.id: f for f in stored},
        geocoder=geocoder,
        town_labels={town.id: str(town.properties.get("name") or town.id) for town in towns},
    )
    sites = _StoredSites(ctx.stored)
    reports: list[RowReport] = []
    features: dict[int, ValidFeature] = {}
    seen_ids: dict[str, int] = {}
    rows = progress(table.rows) if progress else table.rows
    for row in rows:
        report = RowReport(line=row.line)
        reports.append(report)
        props, position = _row_properties(row, mapping, ctx, report)
        if position is not None and "id" not in props and props.get("name"):
            props["id"] = _match_stored(ctx, layer, props["name"], position, seen_ids, sites)
        report.id = props.get("id")
        if report.id in retired and report.id not in ctx.stored:
            report.fail(
                f"id {report.id} 属于一个已删除的站点，请恢复它（geo-service restore "
                f"{report.id}）或换一个 id (the id of a deleted site: restore it, or use "
                "another id)"
            )
        if report.id in seen_ids:
            report.fail(f"id {report.id} is already used by line {seen_ids[report.id]}")
        elif report.id:
            seen_ids[report.id] = row.line
            sites.claim(report.id)
        # The catalog's checks run even after an early error, so the report
        # names every reason at once.
        candidate = {
            "type": "Feature",
            "id": props.get("id"),
            "geometry": (
                {"type": "Point", "coordinates": list(position)} if position is not None else None
            ),
            "properties": props,
        }
        try:
            feature = catalog.validate_feature(
                layer.id, candidate, town_codes=set(town_index.codes)
            )
        except InvalidFeature as error:
            # Fields whose absence was already reported in the row's own words.
            said = {"name": not props.get("name"), "kind": not props.get("kind")}
            for field_name in ("geometry", "id", "town_code"):
                said[field_name] = position is None
            for problem in error.problems:
                if said.get(problem.field):
                    continue
                reason = f"{problem.field}: {problem.message}"
                if reason not in report.reasons:
                    report.fail(reason)
            continue
        if report.status == RowStatus.error:
            continue
        feature = _keep_unchanged_dates(ctx, feature)
        report.action = "update" if feature.id in ctx.stored else "insert"
        if report.action == "update" and feature.properties == ctx.stored[feature.id].properties:
            report.action = "unchanged"
        features[row.line] = feature
    _check_duplicates(reports, features, ctx, sites)
    _check_samples(reports, features, ctx)
    _state_defaults(reports)
    suspicion = _gcj_suspicion(reports, features, ctx)
    if suspicion:
        notes.append(suspicion)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return ImportPlan(layer.id, table.name, crs, reports, features, notes, sha256=digest)
