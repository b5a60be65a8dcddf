"""The layer catalog: which layers exist, their kinds and their property schema.

The catalog is a TOML file (``layers/catalog.toml``) that office staff may
extend; nothing in the code names a layer. ``validate_feature`` checks a
GeoJSON feature against its layer and reports every bad field at once.

Example
-------
>>> catalog = load_catalog()
>>> catalog.layer("stations").zh
'服务站点'
>>> try:
...     catalog.validate_feature("stations", {"type": "Feature", "properties": {},
...                                           "geometry": None})
... except InvalidFeature as error:
...     sorted(p.field for p in error.problems)[:3]
['address', 'eligible', 'geometry']
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geo_service import resources
from geo_service.errors import (
    CatalogError,
    CollectionNotFound,
    FieldProblem,
    InvalidFeature,
    OpeningHoursNotUnderstood,
)
from geo_service.sources.hours import to_opening_hours

__all__ = [
    "CONTROL_CHARACTERS",
    "FILTERABLE_TYPES",
    "ID_PATTERN",
    "MAX_STRING",
    "MAX_TEXT",
    "PHONE_PATTERN",
    "WITHOUT_CONTROL_CHARACTERS",
    "Catalog",
    "Layer",
    "PropertySpec",
    "ValidFeature",
    "WriteLimits",
    "control_character",
    "control_message",
    "default_layers_dir",
    "load_catalog",
    "printable",
]

#: Longest value of a one-line ``string`` property and of a ``text`` property.
MAX_STRING = 200
MAX_TEXT = 2000
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Landlines with area code (0533 is Zibo), mobiles, 5-digit service hotlines
# (12345, 95588) and 400/800 numbers; extensions after "-" or "转".
PHONE_PATTERN = re.compile(
    r"^(?:(?:\+?86[- ]?)?(?:0\d{2,3}[- ]?\d{7,8}|1[3-9]\d{9})"
    r"|\d{5}|[48]00[- ]?\d{3}[- ]?\d{4})(?:(?:-|转)\d{1,5})?$"
)
_POLYGON_TYPES = {"Polygon", "MultiPolygon"}
#: Property types that ``?name=value`` filters may use (store and API alike).
FILTERABLE_TYPES = frozenset(
    {"id", "string", "kind", "enum", "town_code", "boolean", "integer", "list", "date"}
)
_TYPES = {
    "string",
    "text",
    "id",
    "kind",
    "town_code",
    "phone",
    "opening_hours",
    "enum",
    "list",
    "boolean",
    "integer",
    "date",
}


#: Control characters no stored text may hold: C0 (U+0000-U+001F, tab and line
#: breaks included), DEL and C1 (U+0080-U+009F). NUL breaks PostgreSQL text;
#: the others hide or reorder text on screens and drive terminals. (Format
#: characters such as U+202E are text, kept and shown inert.)
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


#: Text holding no control character of ``CONTROL_CHARACTERS``, raw or
#: JSON-escaped as in the list and extra columns a store writes (``\n``,
#: ``\u0007``): ``fullmatch`` it over many rows' text joined at once. A
#: backslash before an ``n`` in plain text fails it too (a false alarm the
#: caller checks again); a control character never passes.
WITHOUT_CONTROL_CHARACTERS = re.compile(
    r"(?:[^\x00-\x1f\x7f-\x9f\\]++|\\(?![bfnrt]|u00[0189][0-9a-fA-F]|u007[fF]))*+"
)


def control_character(text: str) -> str | None:
    r"""The first control character of ``text`` as ``U+0007``, or None.

    >>> control_character("示例\x07站"), control_character("拥军\u202e站")
    ('U+0007', None)
    """
    found = CONTROL_CHARACTERS.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def control_message(code_point: str) -> str:
    """The one wording of the refusal, for API problems and import rows alike."""
    return f"不能包含控制字符 (control character {code_point})"


def printable(text: str, limit: int = 80) -> str:
    """``text`` safe to quote in a message: control characters escaped, cut at ``limit``."""
    shown = CONTROL_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


@dataclass(frozen=True)
class WriteLimits:
    """What one feature may carry besides its catalog properties, and how far
    a site may lie from the town it declares (``Settings.write_limits``).

    Extra properties (an office's own spreadsheet columns) are shown to every
    map visitor, so they are bounded: how many, their names, each value, their
    nesting and their size together as JSON. ``town_tolerance_m`` is the
    slack the approximate town boundaries get (see
    ``sources.importing.town_of_position``).
    """

    max_extras: int = 20
    max_extra_key_chars: int = 64
    max_extra_value_chars: int = 2_000
    max_extras_bytes: int = 8_192
    max_extra_depth: int = 3
    town_tolerance_m: float = 500.0


DEFAULT_WRITE_LIMITS = WriteLimits()


def default_layers_dir() -> Path:
    """The shipped ``layers/`` directory (packaged as ``geo_service.layers``)."""
    return resources.layers_dir()


@dataclass(frozen=True)
class Label:
    zh: str
    en: str


@dataclass(frozen=True)
class PropertySpec:
    name: str
    type: str
    required: bool
    zh: str
    en: str
    values: str | None = None


@dataclass(frozen=True)
class Layer:
    id: str
    zh: str
    en: str
    geometry: str
    schema: str
    file: str
    kinds: dict[str, Label]
    properties: dict[str, PropertySpec]
    #: For a context layer (``geometry = "Any"``): kind -> the geometry types
    #: a feature of that kind may have (a road is a line, a landmark a point).
    kind_geometries: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def is_facility(self) -> bool:
        return self.geometry == "Point"

    @property
    def is_context(self) -> bool:
        """The office's roads, water and landmarks: drawn under the sites to
        find one's way by, never searched, counted or routed to."""
        return self.geometry == "Any"

    @cached_property
    def filterable(self) -> frozenset[str]:
        """Names of the properties a query may filter on."""
        return frozenset(n for n, s in self.properties.items() if s.type in FILTERABLE_TYPES)


@dataclass(frozen=True)
class ValidFeature:
    """A feature that passed validation: normalised properties and a shapely geometry."""

    id: str
    properties: dict[str, Any]
    geometry: BaseGeometry


@dataclass
class Catalog:
    district_code: str
    district_zh: str
    district_en: str
    town_code_prefix: str
    values: dict[str, dict[str, Label]]
    layers: dict[str, Layer]
    directory: Path
    limits: WriteLimits = field(default=DEFAULT_WRITE_LIMITS)

    # -- lookup -----------------------------------------------------------

    def layer(self, layer_id: str) -> Layer:
        try:
            return self.layers[layer_id]
        except KeyError:
            raise CollectionNotFound(layer_id, list(self.layers)) from None

    @cached_property
    def facility_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.is_facility]

    @cached_property
    def fingerprint(self) -> str:
        """A hash of what validation depends on: every layer's geometry, kinds
        and properties (name, type, required, value list), the value lists,
        the town code prefix and the write limits; labels are left out. Two
        catalogs with one fingerprint accept exactly the same features."""
        definition = {
            "town_code_prefix": self.town_code_prefix,
            "limits": dataclasses.asdict(self.limits),
            "values": {name: sorted(labels) for name, labels in self.values.items()},
            "layers": {
                layer.id: {
                    "geometry": layer.geometry,
                    "kinds": sorted(layer.kinds),
                    "kind_geometries": {k: sorted(v) for k, v in layer.kind_geometries.items()},
                    "properties": [
                        [spec.name, spec.type, spec.required, spec.values]
                        for spec in layer.properties.values()
                    ],
                }
                for layer in self.layers.values()
            },
        }
        return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def layer_file(self, layer_id: str) -> Path:
        return self.directory / self.layer(layer_id).file

    # -- validation -------------------------------------------------------

    def validate_feature(
        self,
        layer_id: str,
        feature: Any,
        town_codes: set[str] | frozenset[str] | None = None,
        *,
        memo: dict[Any, Any] | None = None,
    ) -> ValidFeature:
        """Check ``feature`` (a GeoJSON Feature dict; its geometry may also be
        a shapely geometry, as a store holds it) against its layer.

        ``town_codes``, when given, are the codes of the towns in the store:
        a facility's ``town_code`` must be one of them. Returns the normalised
        feature, or raises ``InvalidFeature`` naming every bad field. Unknown
        properties are kept (an office's extra spreadsheet columns), provided
        they are plain JSON values within ``self.limits``.

        Every write passes here (API bodies, import rows, town files,
        restores), so this is where control characters are refused: in any
        property's value, an extra property's name, and anything nested in
        an extra value (``CONTROL_CHARACTERS``).

        ``memo``: a dict the caller passes to many calls for one layer with the
        same ``town_codes`` (a bulk load's chunk): a catalog property's value
        seen before (the same kind, town, opening hours on thousands of rows)
        is not checked again; the answer is the same as without it.
        """
        layer = self.layer(layer_id)
        problems: list[FieldProblem] = []
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise InvalidFeature(None, [FieldProblem("type", "must be a GeoJSON Feature")])
        props = feature.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            problems.append(FieldProblem("properties", "must be an object"))
            props = {}
        top_id = feature.get("id")
        if isinstance(top_id, str) and (code := control_character(top_id)):
            problems.append(FieldProblem("id", control_message(code)))
        geometry = _check_geometry(layer, feature.get("geometry"), problems, props.get("kind"))
        clean: dict[str, Any] = {}
        for name, spec in layer.properties.items():
            value = props.get(name)
            key = _memo_key(name, value) if memo is not None else None
            if key is not None and key in memo:
                checked, found_problems = memo[key]
                problems += found_problems
                if checked is not _REFUSED:
                    clean[name] = list(checked) if isinstance(checked, list) else checked
                continue
            before = len(problems)
            checked = self._check_property(layer, spec, value, problems, town_codes)
            if checked is not _REFUSED:
                clean[name] = checked
            if key is not None:
                memo[key] = (
                    list(checked) if isinstance(checked, list) else checked,
                    problems[before:],
                )
        extras = {name: value for name, value in props.items() if name not in layer.properties}
        clean.update(_check_extras(extras, self.limits, problems))
        feature_id = clean.get("id")
        if top_id not in (None, "") and feature_id is not None and (str(top_id) != str(feature_id)):
            problems.append(FieldProblem("id", "the feature id and properties.id differ"))
        if problems:
            shown = printable(str(feature_id)) if feature_id else None
            raise InvalidFeature(shown, problems)
        return ValidFeature(id=str(feature_id), properties=clean, geometry=geometry)

    def _check_property(
        self,
        layer: Layer,
        spec: PropertySpec,
        value: Any,
        problems: list[FieldProblem],
        town_codes: Any,
    ) -> Any:
        """One catalog property's clean value, or ``_REFUSED`` when it is left out."""
        found = _find_control(value, self.limits.max_extra_depth)
        if found is not None:
            problems.append(FieldProblem(spec.name, control_message(found[1])))
            return _REFUSED
        if _is_blank(value):
            if spec.required:
                problems.append(FieldProblem(spec.name, "is required", f"{spec.zh}为必填项"))
                return _REFUSED
            return [] if spec.type == "list" else None
        return self._check_value(layer, spec, value, problems, town_codes)

    def _check_value(
        self,
        layer: Layer,
        spec: PropertySpec,
        value: Any,
        problems: list[FieldProblem],
        town_codes: Any,
    ) -> Any:
        name, kind = spec.name, spec.type

        def bad(message: str, zh: str | None = None) -> None:
            problems.append(FieldProblem(name, message, zh))

        if kind in {
            "string",
            "text",
            "id",
            "phone",
            "opening_hours",
            "kind",
            "enum",
            "town_code",
            "date",
        }:
            if isinstance(value, bool) or not isinstance(value, str | int):
                bad("must be text", "应为文字")
                return None
            value = str(value).strip()
        if kind == "string":
            if "\n" in value or len(value) > MAX_STRING:
                bad("must be a single line of at most 200 characters", "应为一行，最多200字")
            return value
        if kind == "text":
            if len(value) > MAX_TEXT:
                bad("must be at most 2000 characters", "最多2000字")
            return value
        if kind == "id":
            if not ID_PATTERN.match(value):
                bad(
                    "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                    "or digit"
                )
            return value
        if kind == "kind":
            if value not in layer.kinds:
                bad(
                    f"unknown kind {value!r} for layer {layer.id}; allowed: "
                    + ", ".join(layer.kinds),
                    f"没有这个类型：{value}；可选："
                    + "、".join(label.zh for label in layer.kinds.values()),
                )
            return value
        if kind == "town_code":
            if not (
                len(value) == 9 and value.isdigit() and value.startswith(self.town_code_prefix)
            ):
                bad(
                    f"must be a 9-digit town code starting with {self.town_code_prefix}",
                    f"镇街代码应为以 {self.town_code_prefix} 开头的9位数字",
                )
            elif town_codes and value not in town_codes and layer.is_facility:
                bad(f"unknown town code {value}")
            return value
        if kind == "phone":
            compact = value.replace(" ", "")
            if not PHONE_PATTERN.match(compact):
                bad(
                    f"not a valid phone number: {value!r}",
                    f"电话号码格式不对：{value}（如 0533-2181234 或 13812345678）",
                )
            return value
        if kind == "opening_hours":
            # Every write passes here, so the edit API, imports and restores all
            # take the Chinese forms offices write; the store keeps the OSM form.
            try:
                return to_opening_hours(value)
            except OpeningHoursNotUnderstood as error:
                bad(error.message, error.message)
                return value
        if kind == "enum":
            allowed = self.values[spec.values or ""]
            if value not in allowed:
                bad(
                    f"unknown value {value!r}; allowed: " + ", ".join(allowed),
                    f"没有这个选项：{value}；可选：" + "、".join(v.zh for v in allowed.values()),
                )
            return value
        if kind == "list":
            allowed = self.values[spec.values or ""]
            if isinstance(value, str):
                items = [v.strip() for v in re.split(r"[;,；，、]", value) if v.strip()]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                items = [v.strip() for v in value]
            else:
                bad("must be a list of values", "应为一组选项")
                return []
            unknown = [v for v in items if v not in allowed]
            if unknown:
                bad(
                    f"unknown value(s) {', '.join(map(repr, unknown))}; allowed: "
                    + ", ".join(allowed),
                    f"没有这些选项：{'、'.join(unknown)}；可选："
                    + "、".join(v.zh for v in allowed.values()),
                )
            if spec.required and not items:
                bad("needs at least one value", "至少选择一项")
            return list(dict.fromkeys(items))
        if kind == "boolean":
            if not isinstance(value, bool):
                bad("must be true or false", "应为“是”或“否”")
            return value
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                bad("must be a non-negative whole number", "应为不小于0的整数")
            return value
        if kind == "date":
            try:
                return dt.date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                bad(
                    f"must be an ISO date (YYYY-MM-DD), got {value!r}",
                    f"日期格式应为 2024-01-31，现为：{value}",
                )
                return value
        raise CatalogError(f"unknown property type {kind!r}")  # pragma: no cover


#: A catalog property left out of the clean properties (a problem was found).
_REFUSED = object()


def _memo_key(name: str, value: Any) -> tuple[Any, ...] | None:
    """A memo key for a property's value: scalars and lists of text (the type
    is part of it: ``True == 1``); None for anything else, checked every time."""
    if value is None or isinstance(value, str | int | float | bool):
        return (name, type(value), value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return (name, list, tuple(value))
    return None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or value == []


def _is_plain_json(value: Any) -> bool:
    """Plain JSON (objects with text keys, arrays, finite numbers, text, true,
    false, null); called on values already known to be shallow."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests arrays or objects more than ``max_depth`` levels
    (a scalar is level 0); stops looking there, so any depth is safe to ask."""
    level, frontier = 0, [value]
    while frontier:
        containers = [v for v in frontier if isinstance(v, dict | list)]
        if not containers:
            return False
        level += 1
        if level > max_depth:
            return True
        frontier = [
            item
            for container in containers
            for item in (container.values() if isinstance(container, dict) else container)
        ]
    return False


def _find_control(value: Any, max_depth: int) -> tuple[str, str] | None:
    """The first control character in ``value``'s text or object keys, nested
    at most ``max_depth`` levels (deeper ones are refused for their depth):
    (where, as ``.key`` / ``[index]`` steps, or "" for the value itself; ``U+XXXX``)."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        where, item, level = stack.pop()
        if isinstance(item, str):
            code = control_character(item)
            if code:
                return where, code
        elif level < max_depth and isinstance(item, dict):
            for key, inner in item.items():
                step = f"{where}.{printable(str(key), 40)}"
                code = control_character(key) if isinstance(key, str) else None
                if code:
                    return step, code
                stack.append((step, inner, level + 1))
        elif level < max_depth and isinstance(item, list):
            stack.extend((f"{where}[{i}]", inner, level + 1) for i, inner in enumerate(item))
    return None


def _check_extras(
    extras: dict[str, Any], limits: WriteLimits, problems: list[FieldProblem]
) -> dict[str, Any]:
    """The extra properties that pass, in order; each bad one named in ``problems``."""
    kept: dict[str, Any] = {}
    bad = False
    for name, value in extras.items():
        label = printable(name, limits.max_extra_key_chars + 16)
        before = len(problems)
        if code := control_character(name):
            problems.append(FieldProblem(label, "property name: " + control_message(code)))
        elif not name.strip():
            problems.append(FieldProblem("properties", "an extra property has an empty name"))
        elif len(name) > limits.max_extra_key_chars:
            problems.append(
                FieldProblem(
                    label,
                    f"extra property names are at most {limits.max_extra_key_chars} "
                    f"characters (this one has {len(name)})",
                )
            )
        if _too_deep(value, limits.max_extra_depth):
            problems.append(
                FieldProblem(
                    label,
                    f"extra property values nest at most {limits.max_extra_depth} levels "
                    "of arrays and objects",
                )
            )
        elif (found := _find_control(value, limits.max_extra_depth)) is not None:
            problems.append(FieldProblem(label + found[0], control_message(found[1])))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(FieldProblem(label, "must be a finite number"))
        elif not _is_plain_json(value):
            problems.append(FieldProblem(label, "extra properties must be plain JSON values"))
        else:
            size = len(value) if isinstance(value, str) else len(_json(value).decode())
            if size > limits.max_extra_value_chars:
                as_json = "" if isinstance(value, str) else " as JSON"
                problems.append(
                    FieldProblem(
                        label,
                        f"extra property values are at most {limits.max_extra_value_chars:,} "
                        f"characters{as_json} (this one has {size:,})",
                    )
                )
        if len(problems) > before:
            bad = True
        else:
            kept[name] = value
    if len(extras) > limits.max_extras:
        names = ", ".join(printable(str(n), 24) for n in list(extras)[:5])
        names += ", …" if len(extras) > 5 else ""
        problems.append(
            FieldProblem(
                "properties",
                f"at most {limits.max_extras} extra properties (beyond the catalog's) are "
                f"kept; got {len(extras)}: {names}",
            )
        )
    elif not bad and kept:
        total = len(_json(kept))
        if total > limits.max_extras_bytes:
            problems.append(
                FieldProblem(
                    "properties",
                    f"extra properties hold at most {limits.max_extras_bytes:,} bytes as JSON "
                    f"together; these hold {total:,}",
                )
            )
    return kept


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


_OUT_OF_RANGE = (
    "coordinates out of range: longitude must be within ±180 and "
    "latitude within ±90 (WGS-84, lon/lat order)"
)


def _allowed_geometries(layer: Layer, kind: Any) -> frozenset[str]:
    if layer.is_context:
        if isinstance(kind, str) and kind in layer.kind_geometries:
            return layer.kind_geometries[kind]
        return frozenset().union(*layer.kind_geometries.values())  # the kind is checked apart
    return frozenset({"Point"}) if layer.geometry == "Point" else _POLYGON_TYPES


def _check_geometry(
    layer: Layer, geometry: Any, problems: list[FieldProblem], kind: Any = None
) -> BaseGeometry | None:
    if isinstance(geometry, BaseGeometry):
        # As a store holds it (a bulk load's towns): no GeoJSON round trip.
        gtype = geometry.geom_type
    elif not isinstance(geometry, dict):
        problems.append(FieldProblem("geometry", "is required"))
        return None
    else:
        gtype = geometry.get("type")
    allowed = _allowed_geometries(layer, kind)
    if gtype not in allowed:
        of = f"a {kind}" if layer.is_context and kind in layer.kind_geometries else "layer"
        problems.append(
            FieldProblem(
                "geometry",
                f"must be {' or '.join(sorted(allowed))} for {of} {layer.id}, got {gtype!r}",
            )
        )
        return None
    coordinates = None if isinstance(geometry, BaseGeometry) else geometry.get("coordinates")
    if (
        gtype == "Point"
        and isinstance(coordinates, list | tuple)
        and len(coordinates) == 2
        and all(type(c) in (int, float) for c in coordinates)
    ):
        # The common case of millions (a national load), without GeoJSON parsing:
        # the same checks, the same messages as below.
        x, y = coordinates
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.append(FieldProblem("geometry", "has non-finite coordinates"))
            return None
        if not (-180 <= x <= 180 and -90 <= y <= 90):
            problems.append(FieldProblem("geometry", _OUT_OF_RANGE))
            return None
        return shapely.Point(x, y)
    try:
        geom = geometry if isinstance(geometry, BaseGeometry) else shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException):
        problems.append(FieldProblem("geometry", "has malformed coordinates"))
        return None
    if geom.is_empty:
        problems.append(FieldProblem("geometry", "is empty"))
        return None
    coords = shapely.get_coordinates(geom)
    if not coords.size or not np.isfinite(coords).all():
        problems.append(FieldProblem("geometry", "has non-finite coordinates"))
        return None
    lon_ok = ((coords[:, 0] >= -180) & (coords[:, 0] <= 180)).all()
    lat_ok = ((coords[:, 1] >= -90) & (coords[:, 1] <= 90)).all()
    if not (lon_ok and lat_ok):
        problems.append(FieldProblem("geometry", _OUT_OF_RANGE))
        return None
    if gtype in _POLYGON_TYPES and not geom.is_valid:
        problems.append(
            FieldProblem("geometry", f"invalid polygon: {shapely.is_valid_reason(geom)}")
        )
        return None
    if shapely.has_z(geom):
        geom = shapely.force_2d(geom)
    return geom


# -- loading ------------------------------------------------------------------


def load_catalog(
    directory: Path | str | None = None, *, limits: WriteLimits | None = None
) -> Catalog:
    """Read ``catalog.toml`` from ``directory`` (default: the shipped ``layers/``);
    ``limits`` bound every write validated against it (default ``WriteLimits()``)."""
    directory = Path(directory) if directory else default_layers_dir()
    path = directory / "catalog.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"no catalog.toml in {directory}") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"catalog.toml is not valid TOML: {error}") from None
    try:
        catalog = _parse_catalog(raw, directory)
    except (KeyError, TypeError) as error:
        raise CatalogError(f"catalog.toml is missing or mistypes {error}") from None
    if limits is not None:
        catalog.limits = limits
    return catalog


def _labels(table: dict[str, Any]) -> dict[str, Label]:
    return {key: Label(zh=v["zh"], en=v["en"]) for key, v in table.items()}


def _parse_catalog(raw: dict[str, Any], directory: Path) -> Catalog:
    values = {name: _labels(table) for name, table in raw["values"].items()}
    schemas: dict[str, dict[str, PropertySpec]] = {}
    for schema_name, props in raw["schemas"].items():
        schemas[schema_name] = {name: _spec(name, spec, values) for name, spec in props.items()}
    layers: dict[str, Layer] = {}
    for entry in raw["layers"]:
        props = dict(schemas[entry["schema"]])
        for name, spec in entry.get("properties", {}).items():
            props[name] = _spec(name, spec, values)
        if entry["geometry"] not in {"Point", "Polygon", "Any"}:
            raise CatalogError(f"layer {entry['id']}: geometry must be Point, Polygon or Any")
        kind_geometries = {}
        if entry["geometry"] == "Any":
            for kind, label in entry["kinds"].items():
                types = frozenset(label.get("geometry", ()))
                if not types or not types <= _KNOWN_GEOMETRIES:
                    raise CatalogError(
                        f"layer {entry['id']}: kind {kind} needs geometry = a list of "
                        + ", ".join(sorted(_KNOWN_GEOMETRIES))
                    )
                kind_geometries[kind] = types
        if not _NAME.fullmatch(entry["id"]):
            raise CatalogError(
                f"layer {entry['id']!r}: ids are a-z, 0-9 and _, starting with a letter"
            )
        if entry["id"] in layers:
            raise CatalogError(f"layer {entry['id']} is defined twice")
        layers[entry["id"]] = Layer(
            id=entry["id"],
            zh=entry["zh"],
            en=entry["en"],
            geometry=entry["geometry"],
            schema=entry["schema"],
            file=entry["file"],
            kinds=_labels(entry["kinds"]),
            properties=props,
            kind_geometries=kind_geometries,
        )
    district = raw["district"]
    return Catalog(
        district_code=district["code"],
        district_zh=district["name_zh"],
        district_en=district["name_en"],
        town_code_prefix=district["town_code_prefix"],
        values=values,
        layers=layers,
        directory=directory,
    )


_KNOWN_GEOMETRIES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)

#: Layer and property names become SQL identifiers (tables, columns, JSON
#: keys) in both stores, so they are plain lower-case names, never quoted text.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _spec(name: str, spec: dict[str, Any], values: dict[str, Any]) -> PropertySpec:
    if not _NAME.fullmatch(name):
        raise CatalogError(f"property {name!r}: names are a-z, 0-9 and _, starting with a letter")
    if spec["type"] not in _TYPES:
        raise CatalogError(f"property {name}: unknown type {spec['type']!r}")
    if spec["type"] in {"enum", "list"} and spec.get("values") not in values:
        raise CatalogError(f"property {name}: values must name a [values.*] table")
    return PropertySpec(
        name=name,
        type=spec["type"],
        required=bool(spec.get("required")),
        zh=spec["zh"],
        en=spec["en"],
        values=spec.get("values"),
    )
