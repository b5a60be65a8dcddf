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

import datetime as dt
import math
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import opening_hours
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geo_service import resources
from geo_service.errors import CatalogError, CollectionNotFound, FieldProblem, InvalidFeature

__all__ = [
    "FILTERABLE_TYPES",
    "Catalog",
    "Layer",
    "PropertySpec",
    "ValidFeature",
    "default_layers_dir",
    "load_catalog",
]

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Landlines with area code (0533 is Zibo), mobiles, 5-digit service hotlines
# (12345, 95588) and 400/800 numbers; extensions after "-" or "转".
_PHONE_PATTERN = re.compile(
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

    @property
    def is_facility(self) -> bool:
        return self.geometry == "Point"

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

    # -- lookup -----------------------------------------------------------

    def layer(self, layer_id: str) -> Layer:
        try:
            return self.layers[layer_id]
        except KeyError:
            raise CollectionNotFound(layer_id, list(self.layers)) from None

    @cached_property
    def facility_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.is_facility]

    def layer_file(self, layer_id: str) -> Path:
        return self.directory / self.layer(layer_id).file

    # -- validation -------------------------------------------------------

    def validate_feature(
        self, layer_id: str, feature: Any, town_codes: set[str] | frozenset[str] | None = None
    ) -> ValidFeature:
        """Check ``feature`` (a GeoJSON Feature dict) against its layer.

        ``town_codes``, when given, are the codes of the towns in the store:
        a facility's ``town_code`` must be one of them. Returns the normalised
        feature, or raises ``InvalidFeature`` naming every bad field. Unknown
        properties are kept (an office's extra spreadsheet columns), provided
        they are plain JSON values.
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
        geometry = _check_geometry(layer, feature.get("geometry"), problems)
        clean: dict[str, Any] = {}
        for name, spec in layer.properties.items():
            value = props.get(name)
            if _is_blank(value):
                if spec.required:
                    problems.append(FieldProblem(name, "is required"))
                else:
                    clean[name] = [] if spec.type == "list" else None
                continue
            checked = self._check_value(layer, spec, value, problems, town_codes)
            clean[name] = checked
        for name, value in props.items():
            if name in layer.properties:
                continue
            if isinstance(value, dict | list) and not _is_plain_json(value):
                problems.append(FieldProblem(name, "extra properties must be plain JSON values"))
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(FieldProblem(name, "must be a finite number"))
            else:
                clean[name] = value
        feature_id = clean.get("id")
        if (
            feature.get("id") not in (None, "")
            and feature_id is not None
            and (str(feature["id"]) != str(feature_id))
        ):
            problems.append(FieldProblem("id", "the feature id and properties.id differ"))
        if problems:
            raise InvalidFeature(str(feature_id) if feature_id else None, problems)
        return ValidFeature(id=str(feature_id), properties=clean, geometry=geometry)

    def _check_value(
        self,
        layer: Layer,
        spec: PropertySpec,
        value: Any,
        problems: list[FieldProblem],
        town_codes: Any,
    ) -> Any:
        name, kind = spec.name, spec.type

        def bad(message: str) -> None:
            problems.append(FieldProblem(name, message))

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
                bad("must be text")
                return None
            value = str(value).strip()
        if kind == "string":
            if "\n" in value or len(value) > 200:
                bad("must be a single line of at most 200 characters")
            return value
        if kind == "text":
            if len(value) > 2000:
                bad("must be at most 2000 characters")
            return value
        if kind == "id":
            if not _ID_PATTERN.match(value):
                bad(
                    "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                    "or digit"
                )
            return value
        if kind == "kind":
            if value not in layer.kinds:
                bad(
                    f"unknown kind {value!r} for layer {layer.id}; allowed: "
                    + ", ".join(layer.kinds)
                )
            return value
        if kind == "town_code":
            if not (
                len(value) == 9 and value.isdigit() and value.startswith(self.town_code_prefix)
            ):
                bad(f"must be a 9-digit town code starting with {self.town_code_prefix}")
            elif town_codes and value not in town_codes and layer.is_facility:
                bad(f"unknown town code {value}")
            return value
        if kind == "phone":
            compact = value.replace(" ", "")
            if not _PHONE_PATTERN.match(compact):
                bad(f"not a valid phone number: {value!r}")
            return value
        if kind == "opening_hours":
            if not opening_hours.validate(value):
                bad(f"not valid OpenStreetMap opening_hours syntax: {value!r}")
            return value
        if kind == "enum":
            allowed = self.values[spec.values or ""]
            if value not in allowed:
                bad(f"unknown value {value!r}; allowed: " + ", ".join(allowed))
            return value
        if kind == "list":
            allowed = self.values[spec.values or ""]
            if isinstance(value, str):
                items = [v.strip() for v in re.split(r"[;,；，、]", value) if v.strip()]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                items = [v.strip() for v in value]
            else:
                bad("must be a list of values")
                return []
            unknown = [v for v in items if v not in allowed]
            if unknown:
                bad(
                    f"unknown value(s) {', '.join(map(repr, unknown))}; allowed: "
                    + ", ".join(allowed)
                )
            if spec.required and not items:
                bad("needs at least one value")
            return list(dict.fromkeys(items))
        if kind == "boolean":
            if not isinstance(value, bool):
                bad("must be true or false")
            return value
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                bad("must be a non-negative whole number")
            return value
        if kind == "date":
            try:
                return dt.date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                bad(f"must be an ISO date (YYYY-MM-DD), got {value!r}")
                return value
        raise CatalogError(f"unknown property type {kind!r}")  # pragma: no cover


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or value == []


def _is_plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain_json(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _check_geometry(
    layer: Layer, geometry: Any, problems: list[FieldProblem]
) -> BaseGeometry | None:
    if not isinstance(geometry, dict):
        problems.append(FieldProblem("geometry", "is required"))
        return None
    gtype = geometry.get("type")
    allowed = {"Point"} if layer.geometry == "Point" else _POLYGON_TYPES
    if gtype not in allowed:
        problems.append(
            FieldProblem(
                "geometry",
                f"must be {' or '.join(sorted(allowed))} for layer {layer.id}, got {gtype!r}",
            )
        )
        return None
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException):
        problems.append(FieldProblem("geometry", "has malformed coordinates"))
        return None
    if geom.is_empty:
        problems.append(FieldProblem("geometry", "is empty"))
        return None
    coords = shapely.get_coordinates(geom)
    if not coords.size or not all(math.isfinite(c) for c in coords.ravel()):
        problems.append(FieldProblem("geometry", "has non-finite coordinates"))
        return None
    lon_ok = ((coords[:, 0] >= -180) & (coords[:, 0] <= 180)).all()
    lat_ok = ((coords[:, 1] >= -90) & (coords[:, 1] <= 90)).all()
    if not (lon_ok and lat_ok):
        problems.append(
            FieldProblem(
                "geometry",
                "coordinates out of range: longitude must be within ±180 and "
                "latitude within ±90 (WGS-84, lon/lat order)",
            )
        )
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


def load_catalog(directory: Path | str | None = None) -> Catalog:
    """Read ``catalog.toml`` from ``directory`` (default: the shipped ``layers/``)."""
    directory = Path(directory) if directory else default_layers_dir()
    path = directory / "catalog.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"no catalog.toml in {directory}") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"catalog.toml is not valid TOML: {error}") from None
    try:
        return _parse_catalog(raw, directory)
    except (KeyError, TypeError) as error:
        raise CatalogError(f"catalog.toml is missing or mistypes {error}") from None


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
        if entry["geometry"] not in {"Point", "Polygon"}:
            raise CatalogError(f"layer {entry['id']}: geometry must be Point or Polygon")
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


def _spec(name: str, spec: dict[str, Any], values: dict[str, Any]) -> PropertySpec:
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
