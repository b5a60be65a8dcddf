"""CQL2 filters (OGC API - Features Part 3): what a layer lets a filter ask
(its queryables), each filter checked once against the catalog, then compiled
to parameterised SQL for each store.

Both encodings, CQL2-text and CQL2-JSON, are parsed by ``cql2`` (the Rust
implementation of the OGC standard, which passes its conformance suite) into
one canonical CQL2-JSON tree. That tree is checked here into a small typed
tree (``_Node``): every property named must be a queryable of the layer, every
value must have that property's type, an enumerated value must be one the
catalog allows. Only then does a backend dialect turn it into SQL, in which
every value is a bound parameter and every identifier comes from the catalog:
nothing a user wrote is ever spliced into SQL text.

Supported: comparisons (``= <> < <= > >=``, property to value or property to
property of the same type), ``AND OR NOT``, ``IN``, ``LIKE`` (``%`` and ``_``,
``\\`` escapes), ``BETWEEN``, ``IS NULL``, ``CASEI``, the array functions
``A_CONTAINS A_CONTAINEDBY A_OVERLAPS A_EQUALS`` on list properties, the
spatial functions ``S_INTERSECTS S_DISJOINT S_WITHIN S_CONTAINS S_EQUALS
S_TOUCHES S_CROSSES S_OVERLAPS`` against a geometry or ``BBOX`` literal, and
``S_DWITHIN(geometry, literal, distance[, units])`` in metres (or
``kilometers``), measured on the WGS-84 ellipsoid. Dates compare as
``DATE('2024-01-01')`` (or the same ISO text). Not supported, and refused
by name: temporal functions, arithmetic, ``ACCENTI`` and custom functions.

>>> from geo_service.sources.catalog import load_catalog
>>> catalog = load_catalog()
>>> f = parse_filter("kind = 'bank' AND A_CONTAINS(eligible, ('veteran'))",
...                  "cql2-text", catalog.layer("green_channels"), catalog)
>>> f.text
"(kind = 'bank') AND A_CONTAINS(eligible, ('veteran'))"
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import InvalidParameter
from geo_service.sources.catalog import Catalog, Layer, PropertySpec, printable
from geo_service.sources.crs import CrsReference

__all__ = [
    "CQL2_CONFORMANCE",
    "FILTER_LANGS",
    "GEOMETRY",
    "MAX_FILTER_CHARS",
    "Filter",
    "SqlDialect",
    "parse_filter",
    "queryables",
    "register_sqlite_functions",
]

#: The name a filter uses for a feature's geometry (the ``primary-geometry`` queryable).
GEOMETRY = "geometry"
#: ``cql-text`` is the Part 3 draft's name for the text encoding, which GDAL's
#: OGC API driver (and so QGIS and ogr2ogr) still sends when it turns an OGR
#: attribute filter into one: read as CQL2-text, which its output is.
FILTER_LANGS = ("cql2-text", "cql2-json", "cql-text")
#: A filter longer than this is not a question a person or a GIS asks.
MAX_FILTER_CHARS = 20_000
#: Nesting deeper than this is refused before it reaches a recursive walk.
_MAX_DEPTH = 40
#: Values in one IN list or array literal.
_MAX_VALUES = 1000

#: What this module implements, as the conformance classes of Part 3 and CQL2.
CQL2_CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    # The draft's name for basic-spatial-functions, which QGIS before 3.44
    # looks for before it sends S_INTERSECTS to the server.
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
]

# -- value types -------------------------------------------------------------------

#: Catalog property type -> the type a filter compares it as.
_VALUE_TYPE = {
    "id": "text",
    "string": "text",
    "text": "text",
    "kind": "text",
    "enum": "text",
    "town_code": "text",
    "phone": "text",
    "opening_hours": "text",
    "integer": "number",
    "boolean": "boolean",
    "date": "date",
    "list": "list",
}
_ORDERED = {"text", "number", "date"}
_COMPARISONS = {"=", "<>", "<", "<=", ">", ">="}
_SPATIAL = {
    "s_intersects": "intersects",
    "s_disjoint": "disjoint",
    "s_within": "within",
    "s_contains": "contains",
    "s_equals": "equals",
    "s_touches": "touches",
    "s_crosses": "crosses",
    "s_overlaps": "overlaps",
}
_ARRAY = {"a_contains", "a_containedby", "a_overlaps", "a_equals"}
_UNITS = {None: 1.0, "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
          "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0, "kilometre": 1000.0,
          "kilometres": 1000.0}  # fmt: skip
#: (fewest, most) arguments of each operator.
_ARITY = {
    "and": (1, 10_000),
    "or": (1, 10_000),
    "not": (1, 1),
    **{op: (2, 2) for op in _COMPARISONS},
    "in": (2, 2),
    "like": (2, 2),
    "between": (3, 3),
    "isnull": (1, 1),
    "spatial": (2, 2),
    "s_dwithin": (3, 4),
}
#: What a refused operator is, for the message.
_REFUSED = {
    "accenti": "ACCENTI (accent-insensitive comparison) is not supported",
    "+": "arithmetic is not supported",
    "-": "arithmetic is not supported",
    "*": "arithmetic is not supported",
    "/": "arithmetic is not supported",
    "%": "arithmetic is not supported",
    "div": "arithmetic is not supported",
    "^": "arithmetic is not supported",
}


def _type_name(spec: PropertySpec) -> str:
    return _VALUE_TYPE[spec.type]


# -- the checked tree ----------------------------------------------------------------


@dataclass(frozen=True)
class _Prop:
    name: str
    type: str  # text | number | boolean | date | list
    column_type: str  # the catalog's type (id is a column of its own)


@dataclass(frozen=True)
class _Value:
    value: Any  # str | float | int | bool (dates as ISO text)
    type: str


@dataclass(frozen=True)
class _Lower:
    """CASEI(...): the operand in lower case."""

    operand: _Prop | _Value

    @property
    def type(self) -> str:
        return "text"


_Operand = _Prop | _Value | _Lower


@dataclass(frozen=True)
class _Node:
    """One checked predicate or combination; ``args`` by ``op``:

    ``and``/``or``: nodes; ``not``: (node,); ``const``: (bool,);
    comparison ops: (operand, operand); ``in``: (operand, values...);
    ``like``: (operand, pattern); ``between``: (operand, low, high);
    ``isnull``: (operand,); spatial: (predicate name, WKB);
    ``dwithin``: (WKB, metres); array ops: (property, JSON array text).
    """

    op: str
    args: tuple


@dataclass(frozen=True)
class Filter:
    """A CQL2 filter checked against one layer: ready for any store."""

    layer_id: str
    root: _Node
    text: str  # CQL2-text, as cql2 writes it back (for messages and logs)


# -- parsing and checking --------------------------------------------------------------


def parse_filter(
    raw: str,
    lang: str | None,
    layer: Layer,
    catalog: Catalog,
    crs: CrsReference | None = None,
) -> Filter:
    """``raw`` in ``lang`` (``cql2-text``, the default, or ``cql2-json``),
    checked against ``layer``; geometry literals in ``crs`` (CRS84 unless the
    EPSG:4326 URI says latitude first). Faults are ``InvalidParameter`` on
    ``filter`` (or ``filter-lang``/``filter-crs``), naming what is wrong."""
    import cql2

    lang = (lang or "cql2-text").strip().lower()
    if lang not in FILTER_LANGS:
        raise InvalidParameter(
            "filter-lang", f"unknown language {lang!r}; use cql2-text or cql2-json"
        )
    if lang == "cql-text":
        lang = "cql2-text"
    crs = crs or CrsReference()
    if crs.system.value != "wgs84":
        raise InvalidParameter(
            "filter-crs", "geometries in a filter are WGS-84 (CRS84 or EPSG:4326)"
        )
    if len(raw) > MAX_FILTER_CHARS:
        raise InvalidParameter("filter", f"longer than {MAX_FILTER_CHARS} characters")
    if not raw.strip():
        raise InvalidParameter("filter", "is empty")
    try:
        expr = cql2.parse_text(raw) if lang == "cql2-text" else cql2.parse_json(raw)
        tree = expr.to_json()
    except (cql2.ParseError, cql2.ValidationError, ValueError) as error:
        raise InvalidParameter("filter", f"not valid {lang}: {_first_lines(str(error))}") from None
    checker = _Checker(layer, catalog, lat_first=crs.lat_first)
    root = checker.predicate(tree, 0)
    try:
        text = expr.to_text()
    except Exception:  # to_text cannot write every valid tree back; the JSON is exact
        text = orjson.dumps(tree).decode()
    return Filter(layer.id, root, text)


def _first_lines(message: str, limit: int = 400) -> str:
    """cql2's parse error (a caret drawing under the text) as one line:
    where, and what was expected there."""
    where = re.search(r"-->\s*(\d+):(\d+)", message)
    expected = re.search(r"=\s*(expected .*)", message)
    if where and expected:
        message = f"at line {where[1]}, column {where[2]}: {expected[1].strip()}"
    else:
        message = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return message if len(message) <= limit else message[: limit - 1] + "…"


class _Checker:
    def __init__(self, layer: Layer, catalog: Catalog, *, lat_first: bool):
        self.layer = layer
        self.catalog = catalog
        self.lat_first = lat_first

    # predicates

    def predicate(self, node: Any, depth: int) -> _Node:
        if depth > _MAX_DEPTH:
            raise InvalidParameter("filter", f"nested deeper than {_MAX_DEPTH} levels")
        if isinstance(node, bool):
            return _Node("const", (node,))
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidParameter("filter", f"{_show(node)} is not a condition")
        op = str(node["op"]).lower()
        args = node.get("args")
        args = args if isinstance(args, list) else [] if args is None else [args]
        arity = _ARITY.get(op) or (_ARITY["spatial"] if op in _SPATIAL else None)
        if op in _ARRAY:
            arity = (2, 2)
        if arity is not None and not arity[0] <= len(args) <= arity[1]:
            wanted = str(arity[0]) if arity[0] == arity[1] else f"{arity[0]} to {arity[1]}"
            raise InvalidParameter(
                "filter", f"{op.upper()} takes {wanted} arguments, got {len(args)}"
            )
        if op in {"and", "or"}:
            return _Node(op, tuple(self.predicate(a, depth + 1) for a in args))
        if op == "not":
            return _Node("not", (self.predicate(args[0], depth + 1),))
        if op in _COMPARISONS:
            return self.comparison(op, args)
        if op == "in":
            return self.in_(args)
        if op == "like":
            return self.like(args)
        if op == "between":
            return self.between(args)
        if op == "isnull":
            return _Node("isnull", (self.property_of(args[0], "IS NULL"),))
        if op in _SPATIAL:
            return self.spatial(op, args)
        if op == "s_dwithin":
            return self.dwithin(args)
        if op in _ARRAY:
            return self.array(op, args)
        if op.startswith("t_"):
            raise InvalidParameter("filter", f"{op.upper()}: temporal functions are not supported")
        raise InvalidParameter("filter", _REFUSED.get(op, f"{op!r} is not supported"))

    def comparison(self, op: str, args: list) -> _Node:
        left, right = self.operand(args[0]), self.operand(args[1])
        if isinstance(left, _Value) and isinstance(right, _Value):
            raise InvalidParameter("filter", "a comparison needs a property on at least one side")
        prop = left if not isinstance(left, _Value) else right
        if prop.type in {"list", "geometry"}:
            raise InvalidParameter("filter", self._whole_type_hint(prop))
        left, right = self.typed(left, prop), self.typed(right, prop)
        if left.type != right.type:
            raise InvalidParameter(
                "filter", f"cannot compare {_describe(left)} with {_describe(right)}"
            )
        if op not in {"=", "<>"} and left.type not in _ORDERED:
            raise InvalidParameter("filter", f"{_describe(prop)} can only be compared with = or <>")
        if op in {"=", "<>"}:
            for side in (left, right):
                if isinstance(side, _Value) and isinstance(prop, _Prop):
                    self.known_value(prop, side.value)
        return _Node(op, (left, right))

    def in_(self, args: list) -> _Node:
        prop = self.operand(args[0])
        if isinstance(prop, _Value) or prop.type in {"list", "geometry"}:
            raise InvalidParameter("filter", "IN needs a property (not a list) before it")
        values = args[1] if isinstance(args[1], list) else [args[1]]
        if not values or len(values) > _MAX_VALUES:
            raise InvalidParameter("filter", f"IN needs 1 to {_MAX_VALUES} values")
        checked = [self.typed(self.operand(v), prop) for v in values]
        for value in checked:
            if not isinstance(value, _Value):
                raise InvalidParameter("filter", "IN takes a list of values")
            if isinstance(prop, _Prop):
                self.known_value(prop, value.value)
        return _Node("in", (prop, *checked))

    def like(self, args: list) -> _Node:
        operand = self.operand(args[0])
        pattern = self.operand(args[1])
        if isinstance(operand, _Value) or operand.type != "text":
            raise InvalidParameter("filter", "LIKE needs a text property on its left")
        lowered = isinstance(pattern, _Lower)  # CASEI(name) LIKE CASEI('%Bank%')
        if lowered:
            pattern = pattern.operand
        if not isinstance(pattern, _Value) or pattern.type != "text":
            raise InvalidParameter("filter", "LIKE needs a quoted pattern on its right")
        return _Node("like", (operand, pattern.value.lower() if lowered else pattern.value))

    def between(self, args: list) -> _Node:
        prop = self.operand(args[0])
        if isinstance(prop, _Value) or prop.type not in {"number", "date"}:
            raise InvalidParameter("filter", "BETWEEN needs a number or date property")
        low, high = (self.typed(self.operand(v), prop) for v in args[1:3])
        for value in (low, high):
            if value.type != prop.type:
                raise InvalidParameter(
                    "filter", f"cannot compare {_describe(prop)} with {_describe(value)}"
                )
        return _Node("between", (prop, low, high))

    def spatial(self, op: str, args: list) -> _Node:
        self.geometry_property(args[0], op)
        geometry = self.geometry_literal(args[1], op)
        return _Node("spatial", (_SPATIAL[op], shapely.to_wkb(geometry)))

    def dwithin(self, args: list) -> _Node:
        if len(args) not in (3, 4):
            raise InvalidParameter(
                "filter", "S_DWITHIN takes (geometry, a geometry literal, distance[, units])"
            )
        self.geometry_property(args[0], "s_dwithin")
        geometry = self.geometry_literal(args[1], "s_dwithin")
        distance = args[2]
        units = args[3] if len(args) == 4 else None
        if isinstance(units, str):
            units = units.strip().lower()
        if units not in _UNITS:
            raise InvalidParameter(
                "filter", f"S_DWITHIN: unknown units {units!r}; use meters or kilometers"
            )
        if isinstance(distance, bool) or not isinstance(distance, int | float):
            raise InvalidParameter("filter", "S_DWITHIN: the distance must be a number")
        metres = float(distance) * _UNITS[units]
        if not math.isfinite(metres) or metres < 0:
            raise InvalidParameter("filter", "S_DWITHIN: the distance must be 0 or more")
        return _Node("dwithin", (shapely.to_wkb(geometry), metres))

    def array(self, op: str, args: list) -> _Node:
        prop = self.operand(args[0])
        if not isinstance(prop, _Prop) or prop.type != "list":
            lists = sorted(n for n, s in self.layer.properties.items() if s.type == "list")
            raise InvalidParameter(
                "filter",
                f"{op.upper()} needs a list property first ({', '.join(lists) or 'none here'})",
            )
        values = args[1]
        if not isinstance(values, list) or len(values) > _MAX_VALUES:
            raise InvalidParameter(
                "filter", f"{op.upper()} needs a list of values second, e.g. ('veteran')"
            )
        for value in values:
            if not isinstance(value, str):
                raise InvalidParameter("filter", f"{prop.name} holds text; quote {_show(value)}")
            self.known_value(prop, value)
        return _Node(op, (prop, orjson.dumps(values).decode()))

    # operands

    def operand(self, node: Any) -> _Operand:
        if isinstance(node, dict) and "property" in node:
            return self.property(node["property"])
        if isinstance(node, dict) and str(node.get("op", "")).lower() == "casei":
            inner = self.operand((node.get("args") or [None])[0])
            if inner.type != "text" or isinstance(inner, _Lower):
                raise InvalidParameter("filter", "CASEI takes a text property or a quoted text")
            return _Lower(inner)
        if isinstance(node, dict) and "date" in node:
            return _Value(_iso_date(node["date"]), "date")
        if isinstance(node, dict) and "timestamp" in node:
            raise InvalidParameter(
                "filter", "timestamps are not supported; dates compare as DATE('2024-01-01')"
            )
        if isinstance(node, bool):
            return _Value(node, "boolean")
        if isinstance(node, int | float):
            if not math.isfinite(node):
                raise InvalidParameter("filter", "numbers must be finite")
            return _Value(node, "number")
        if isinstance(node, str):
            return _Value(node, "text")
        if isinstance(node, dict) and "op" in node:
            op = str(node["op"]).lower()
            raise InvalidParameter("filter", _REFUSED.get(op, f"{op!r} cannot be used as a value"))
        if isinstance(node, dict) and ("type" in node or "bbox" in node):
            raise InvalidParameter(
                "filter", "a geometry can only be used in a spatial function (S_INTERSECTS, ...)"
            )
        if node is None:
            raise InvalidParameter("filter", "NULL can only be tested with IS NULL")
        raise InvalidParameter("filter", f"{_show(node)} is not a value this filter can use")

    def property(self, name: Any) -> _Prop:
        name = str(name)
        if name == GEOMETRY:
            return _Prop(GEOMETRY, "geometry", "geometry")
        spec = self.layer.properties.get(name)
        if spec is None:
            known = ", ".join([*self.layer.properties, GEOMETRY])
            raise InvalidParameter(
                "filter",
                f"{_printable(name)} is not a queryable of {self.layer.id}; queryables: {known}",
            )
        return _Prop(name, _type_name(spec), spec.type)

    def property_of(self, node: Any, what: str) -> _Prop:
        prop = self.operand(node)
        if not isinstance(prop, _Prop) or prop.type == "geometry":
            raise InvalidParameter("filter", f"{what} needs a property")
        return prop

    def typed(self, operand: _Operand, prop: _Operand) -> _Operand:
        """A text value read as the property's date (``'2024-01-01'`` for
        ``DATE('2024-01-01')``); everything else as it is."""
        if isinstance(operand, _Value) and operand.type == "text" and prop.type == "date":
            return _Value(_iso_date(operand.value), "date")
        if isinstance(operand, _Value) and operand.type == "number" and prop.type == "text":
            raise InvalidParameter(
                "filter", f"{_describe(prop)} is text; quote the value: '{operand.value}'"
            )
        return operand

    def known_value(self, prop: _Prop, value: Any) -> None:
        """An enumerated property compared with a value it can never hold is a
        typo (``kind = 'bnak'``): say so, with the values it can hold."""
        if prop.column_type == "kind":
            allowed = list(self.layer.kinds)
        elif prop.column_type in {"enum", "list"}:
            spec = self.layer.properties[prop.name]
            allowed = list(self.catalog.values.get(spec.values or "", {}))
        else:
            return
        if value not in allowed:
            raise InvalidParameter(
                "filter",
                f"{prop.name} is never {_show(value)}; its values: {', '.join(allowed)}",
            )

    def geometry_property(self, node: Any, op: str) -> None:
        if not (isinstance(node, dict) and node.get("property") == GEOMETRY):
            raise InvalidParameter(
                "filter", f"{op.upper()} compares the property {GEOMETRY!r} with a geometry"
            )

    def geometry_literal(self, node: Any, op: str) -> BaseGeometry:
        if isinstance(node, dict) and "bbox" in node:
            box = node["bbox"]
            numbers = [box[0], box[1], box[3], box[4]] if len(box) == 6 else box
            if len(numbers) != 4:
                raise InvalidParameter("filter", "BBOX needs 4 numbers")
            if self.lat_first:
                numbers = [numbers[1], numbers[0], numbers[3], numbers[2]]
            geometry = shapely.box(*numbers)
        elif isinstance(node, dict) and "type" in node:
            try:
                geometry = shapely.geometry.shape(node)
            except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError):
                raise InvalidParameter("filter", f"{op.upper()}: not a valid geometry") from None
            if self.lat_first:
                geometry = shapely.transform(geometry, lambda xy: xy[:, ::-1])
        else:
            raise InvalidParameter(
                "filter", f"{op.upper()} needs a geometry literal (POINT(...), BBOX(...), ...)"
            )
        geometry = shapely.force_2d(geometry)
        if geometry.is_empty:
            raise InvalidParameter("filter", f"{op.upper()}: the geometry is empty")
        west, south, east, north = geometry.bounds
        if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
            raise InvalidParameter(
                "filter",
                f"{op.upper()}: coordinates outside longitude -180..180 / latitude -90..90"
                + ("" if self.lat_first else " (CRS84 is longitude first)"),
            )
        return geometry

    def _whole_type_hint(self, prop: _Operand) -> str:
        if prop.type == "list":
            return (
                f"{_describe(prop)} is a list; ask A_CONTAINS({_name(prop)}, ('value')) "
                "or A_OVERLAPS"
            )
        return f"{GEOMETRY} is compared with spatial functions (S_INTERSECTS, S_DWITHIN, ...)"


def _printable(name: str) -> str:
    return repr(printable(name, 60))


def _name(operand: _Operand) -> str:
    if isinstance(operand, _Lower):
        return f"CASEI({_name(operand.operand)})"
    return operand.name if isinstance(operand, _Prop) else _show(operand.value)


def _describe(operand: _Operand) -> str:
    if isinstance(operand, _Value):
        return f"the {operand.type} {_show(operand.value)}"
    return f"{_name(operand)} ({operand.type})"


def _show(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _iso_date(value: Any) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidParameter("filter", f"{_show(value)} is not a date (YYYY-MM-DD)") from None


# -- SQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlDialect:
    """How one backend spells what a filter needs; every value goes through
    ``mark`` (a bound parameter)."""

    mark: str
    collate: str  # appended to text compared by order, so both stores sort alike
    column: Callable[[_Prop], str]  # a property as SQL of its filter type
    list_json: Callable[[_Prop], str]  # a list property as JSON text / json
    like: Callable[[str, str], str]  # (expression, pattern mark) -> condition
    lower: Callable[[str], str]
    spatial: Callable[[str, str], str]  # (predicate name, WKB mark) -> condition
    dwithin: Callable[[str, str], str]  # (WKB mark, metres mark) -> condition
    array: Callable[[str, str, str], str]  # (op, list JSON, values mark) -> condition
    list_empty: Callable[[str], str]  # (list JSON) -> condition
    boolean: Callable[[bool], Any]  # a boolean value as the backend binds it

    def compile(self, where: Filter) -> tuple[str, list[Any]]:
        """``where`` as one SQL condition and its parameters, in order."""
        params: list[Any] = []
        return self._node(where.root, params), params

    def _node(self, node: _Node, params: list[Any]) -> str:
        op, args = node.op, node.args
        if op in {"and", "or"}:
            return "(" + f" {op.upper()} ".join(self._node(a, params) for a in args) + ")"
        if op == "not":
            return f"(NOT {self._node(args[0], params)})"
        if op == "const":
            return "(1 = 1)" if args[0] else "(1 = 0)"
        if op in _COMPARISONS:
            left = self._operand(args[0], params)
            right = self._operand(args[1], params)
            if op not in {"=", "<>"} and args[0].type == "text":
                left, right = left + self.collate, right + self.collate
            return f"({left} {op} {right})"
        if op == "in":
            subject = self._operand(args[0], params)
            marks = ", ".join(self._operand(v, params) for v in args[1:])
            return f"({subject} IN ({marks}))"
        if op == "like":
            subject = self._operand(args[0], params)
            params.append(args[1])
            return self.like(subject, self.mark)
        if op == "between":
            subject = self._operand(args[0], params)
            low = self._operand(args[1], params)
            high = self._operand(args[2], params)
            if args[0].type == "text":
                subject, low, high = (x + self.collate for x in (subject, low, high))
            return f"({subject} BETWEEN {low} AND {high})"
        if op == "isnull":
            prop = args[0]
            if prop.type == "list":
                return self.list_empty(self.list_json(prop))
            return f"({self.column(prop)} IS NULL)"
        if op == "spatial":
            params.append(args[1])
            return self.spatial(args[0], self.mark)
        if op == "dwithin":
            params += [args[0], args[1]]
            return self.dwithin(self.mark, self.mark)
        if op in _ARRAY:
            params.append(args[1])
            return self.array(op, self.list_json(args[0]), self.mark)
        raise AssertionError(f"unchecked filter node {op!r}")  # pragma: no cover

    def _operand(self, operand: _Operand, params: list[Any]) -> str:
        if isinstance(operand, _Lower):
            return self.lower(self._operand(operand.operand, params))
        if isinstance(operand, _Prop):
            return self.column(operand)
        value = operand.value
        params.append(self.boolean(value) if operand.type == "boolean" else value)
        return self.mark


# -- the embedded store's SQL functions ---------------------------------------------------


def register_sqlite_functions(conn, geometry_of: Callable[[bytes], BaseGeometry]) -> None:
    """What the embedded store's filter SQL calls: SQLite has no spatial
    functions, its ``LIKE`` ignores ASCII case and its ``lower`` knows only
    ASCII, so these follow PostGIS and PostgreSQL instead."""

    def spatial(predicate: str, blob: bytes | None, wkb: bytes) -> int | None:
        if blob is None:
            return None
        # the feature first, as in PostGIS: S_WITHIN(geometry, area) is
        # "the feature lies within the area"
        return int(getattr(shapely, predicate)(geometry_of(blob), _literal(wkb)))

    def dwithin(blob: bytes | None, wkb: bytes, metres: float) -> int | None:
        if blob is None:
            return None
        return int(_metric_distance(wkb, geometry_of(blob)) <= metres)

    def like(value: str | None, pattern: str) -> int | None:
        return None if value is None else int(_like_regex(pattern).fullmatch(value) is not None)

    conn.create_function("gs_spatial", 3, spatial, deterministic=True)
    conn.create_function("gs_dwithin", 3, dwithin, deterministic=True)
    conn.create_function("gs_like", 2, like, deterministic=True)
    conn.create_function(
        "gs_lower", 1, lambda v: None if v is None else str(v).lower(), deterministic=True
    )


@functools.lru_cache(maxsize=64)
def _literal(wkb: bytes) -> BaseGeometry:
    return shapely.from_wkb(wkb)


@functools.lru_cache(maxsize=64)
def _metric(wkb: bytes):
    """The literal and a transformer to an azimuthal equidistant projection
    centred on it: distances from its centre are geodesic (on the WGS-84
    ellipsoid, as PostGIS's geography measures them)."""
    from pyproj import CRS, Transformer

    geometry = shapely.from_wkb(wkb)
    centre = geometry.centroid
    local = CRS.from_proj4(
        f"+proj=aeqd +lat_0={centre.y} +lon_0={centre.x} +ellps=WGS84 +units=m +no_defs"
    )
    transformer = Transformer.from_crs("EPSG:4326", local, always_xy=True)
    return shapely.transform(geometry, _projector(transformer)), transformer


def _projector(transformer):
    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return project


def _metric_distance(wkb: bytes, geometry: BaseGeometry) -> float:
    literal, transformer = _metric(wkb)
    return float(literal.distance(shapely.transform(geometry, _projector(transformer))))


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    """A CQL2 LIKE pattern as a regular expression: ``%`` any run, ``_`` one
    character, ``\\`` makes the next character literal."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


# -- queryables -----------------------------------------------------------------------------


def queryables(layer: Layer, catalog: Catalog, schema_id: str) -> dict[str, Any]:
    """The layer's queryables as JSON Schema (Part 3): every catalog property
    with its type, allowed values and Chinese/English title, and the geometry."""
    geometry_format = {"Point": "geometry-point", "Polygon": "geometry-polygon"}.get(
        layer.geometry, "geometry-any"
    )
    properties: dict[str, Any] = {
        GEOMETRY: {
            "title": "位置 Geometry",
            "format": geometry_format,
            "x-ogc-role": "primary-geometry",
        }
    }
    for name, spec in layer.properties.items():
        properties[name] = {"title": f"{spec.zh} {spec.en}", **_json_type(layer, catalog, spec)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "type": "object",
        "title": f"{layer.zh} {layer.en}",
        "properties": properties,
        "additionalProperties": False,
    }


def _json_type(layer: Layer, catalog: Catalog, spec: PropertySpec) -> dict[str, Any]:
    if spec.type == "kind":
        return {"type": "string", "enum": list(layer.kinds)}
    if spec.type == "enum":
        return {"type": "string", "enum": list(catalog.values[spec.values or ""])}
    if spec.type == "list":
        values = list(catalog.values[spec.values or ""])
        return {"type": "array", "items": {"type": "string", "enum": values}}
    if spec.type == "integer":
        return {"type": "integer"}
    if spec.type == "boolean":
        return {"type": "boolean"}
    if spec.type == "date":
        return {"type": "string", "format": "date"}
    if spec.type == "town_code":
        return {"type": "string", "pattern": "^[0-9]{9}$"}
    return {"type": "string"}
