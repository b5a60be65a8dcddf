"""The heavy use cases as OGC API - Processes: what each takes, checks and returns.

A process is data plus two functions: ``check`` reads a client's inputs (JSON
values, or query parameters as text) into canonical inputs, fast, in the
process that was asked, so a bad request is a 400 before anything is queued;
``run`` does the work in a job worker and returns the result's bytes and media
type. The canonical inputs are what a job records and what its cache key hashes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from geo_service.errors import InvalidParameter
from geo_service.runtime import Runtime

__all__ = ["PROCESSES", "Output", "Process", "Progress", "process", "unknown_inputs"]

#: Reports the share of the work done, 0..1. Raises to stop a dismissed job.
Progress = Callable[[float], None]

PDF = "application/pdf"
JSON = "application/json"


@dataclass(frozen=True)
class Output:
    content: bytes
    media_type: str


@dataclass(frozen=True)
class Process:
    id: str
    title: str
    description: str
    #: JSON Schema of each input, as ``GET /processes/{id}`` states it.
    inputs: dict[str, dict[str, Any]]
    #: The one output's media type.
    media_type: str
    check: Callable[[Runtime, dict[str, Any]], dict[str, Any]]
    run: Callable[[Runtime, dict[str, Any], Progress], Output]
    #: Same inputs and same data give the same result: cache it.
    cacheable: bool = True
    #: Who may run it: anyone, or only a signed-in editor or admin.
    needs_principal: bool = False
    required: tuple[str, ...] = field(default=())
    #: Inputs the service sets (where QR codes point, the uploaded file, who
    #: sent it); a client naming one is refused like any unknown input.
    internal: frozenset[str] = frozenset()


def unknown_inputs(proc: Process, raw: dict[str, Any], *, trusted: bool) -> None:
    """Refuse inputs the process does not take; the internal ones only from the service."""
    for name in raw:
        if name not in proc.inputs and not (trusted and name in proc.internal):
            raise InvalidParameter(name, "unknown input; known: " + ", ".join(proc.inputs))


def _text(raw: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(name, "must be text")
    return value


def _names(raw: dict[str, Any], name: str) -> list[str] | None:
    """A list input: a JSON array of names, or comma-separated text (query strings)."""
    from geo_service.services.queries import MAX_LIST_VALUES, list_param

    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return list_param(value, name) or None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameter(name, "must be a list of names")
    if len(value) > MAX_LIST_VALUES:
        raise InvalidParameter(name, f"at most {MAX_LIST_VALUES} values, got {len(value)}")
    return value or None


def _number(raw: dict[str, Any], name: str) -> float | None:
    from geo_service.services.queries import parse_number

    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidParameter(name, "must be a number")
    if isinstance(value, int | float):
        return parse_number(name, str(value))
    if isinstance(value, str):
        return parse_number(name, value)
    raise InvalidParameter(name, "must be a number")


def _flag(raw: dict[str, Any], name: str) -> bool:
    value = raw.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
        return value.lower() in {"true", "1"}
    raise InvalidParameter(name, "must be true or false")


# -- printing ---------------------------------------------------------------------

_SIZE = {"type": "string", "enum": ["A4", "A3"], "default": "A4"}
_ORIENTATION = {"type": "string", "enum": ["portrait", "landscape"], "default": "portrait"}
_LAYERS = {"type": "array", "items": {"type": "string"}, "description": "Facility layer ids"}


def _print_options(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    from geo_service.services.printing import PrintOptions

    options = PrintOptions.checked(
        rt, _text(raw, "size"), _text(raw, "orientation"), _names(raw, "layers")
    )
    return {
        "size": options.size,
        "orientation": options.orientation,
        "layers": list(options.layers) if options.layers else None,
    }


def _check_atlas(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    unknown_inputs(PRINT_ATLAS, raw, trusted=True)
    return _print_options(rt, raw)


def _run_atlas(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services import printing

    options = printing.PrintOptions(inputs["size"], inputs["orientation"], _tuple(inputs))
    content = printing.atlas(rt, options, base_url=printing.qr_target(rt), progress=progress)
    return Output(content, PDF)


def _tuple(inputs: dict[str, Any]) -> tuple[str, ...] | None:
    return tuple(inputs["layers"]) if inputs.get("layers") else None


PRINT_ATLAS = Process(
    id="print-atlas",
    title="区资源地图册 · District atlas (PDF)",
    description="The overview page, then every town: map, numbered sites, index table, QR code.",
    inputs={"size": _SIZE, "orientation": _ORIENTATION, "layers": _LAYERS},
    media_type=PDF,
    check=_check_atlas,
    run=_run_atlas,
)


def _check_town(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    unknown_inputs(PRINT_TOWN, raw, trusted=True)
    code = _text(raw, "code")
    if code is None or not re.fullmatch(r"[0-9]{9}", code):
        raise InvalidParameter("code", "give the town's 9-digit code, e.g. 370303002")
    return {"code": code, **_print_options(rt, raw)}


def _run_town(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services import printing

    options = printing.PrintOptions(inputs["size"], inputs["orientation"], _tuple(inputs))
    return Output(printing.town(rt, inputs["code"], options, base_url=printing.qr_target(rt)), PDF)


PRINT_TOWN = Process(
    id="print-town",
    title="镇街地图 · One town's pages (PDF)",
    description="One town's map, numbered sites and index table.",
    inputs={
        "code": {"type": "string", "pattern": "^[0-9]{9}$", "description": "Town code"},
        "size": _SIZE,
        "orientation": _ORIENTATION,
        "layers": _LAYERS,
    },
    media_type=PDF,
    check=_check_town,
    run=_run_town,
    required=("code",),
)


def _check_nearest_sheet(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    from geo_service.services.nearest import MAX_ADDRESS
    from geo_service.services.printing import PrintOptions

    unknown_inputs(PRINT_NEAREST, raw, trusted=True)
    address = _text(raw, "address")
    lon, lat = _number(raw, "lon"), _number(raw, "lat")
    if address is not None:
        if lon is not None or lat is not None:
            raise InvalidParameter("address", "give either address or lon/lat, not both")
        if not address.strip() or len(address) > MAX_ADDRESS:
            raise InvalidParameter("address", f"give an address of 1 to {MAX_ADDRESS} characters")
    else:
        for name, value, bound in (("lon", lon, 180), ("lat", lat, 90)):
            if value is None:
                raise InvalidParameter(name, "is required (or give address)")
            if not -bound <= value <= bound:
                raise InvalidParameter(name, f"{value} is outside -{bound}..{bound}")
    size = PrintOptions.checked(rt, _text(raw, "size")).size
    return {"lon": lon, "lat": lat, "address": address, "size": size}


def _run_nearest_sheet(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services import printing

    content = printing.nearest_sheet(
        rt,
        lon=inputs["lon"],
        lat=inputs["lat"],
        address=inputs["address"],
        size=inputs["size"],
        base_url=printing.base_url(rt),
    )
    return Output(content, PDF)


PRINT_NEAREST = Process(
    id="print-nearest",
    title="最近服务点单页 · A resident's nearest-services sheet (PDF)",
    description="The nearest two sites of each layer for one position or address, large type.",
    inputs={
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "address": {"type": "string", "minLength": 1, "maxLength": 200},
        "size": _SIZE,
    },
    media_type=PDF,
    check=_check_nearest_sheet,
    run=_run_nearest_sheet,
)


# -- coverage planning ---------------------------------------------------------------

_RADIUS = {
    "anyOf": [
        {"type": "string", "enum": ["5min", "10min", "15min"]},
        {"type": "number", "exclusiveMinimum": 0, "maximum": 20000},
    ],
    "default": "15min",
}
_QUESTION_INPUTS = {
    "layers": _LAYERS,
    "kinds": {"type": "array", "items": {"type": "string"}, "description": "Kinds to count"},
    "radius": _RADIUS,
    "population": {
        "type": "object",
        "description": "The office's population points or cells instead of town totals "
        '(so people and area shares differ): {"value": base64, "mediaType": "text/csv", '
        '"filename": "社区人口.csv"}, a CSV/XLSX with 经度, 纬度 and 人口 (or 常住人口) '
        "columns, or a GeoJSON/GeoPackage with a population property",
        "properties": {
            "value": {"type": "string"},
            "mediaType": {"type": "string"},
            "filename": {"type": "string", "maxLength": 120},
        },
    },
}


def _uploaded(raw: dict[str, Any], name: str) -> tuple[bytes, str]:
    """A file given as an input value: ``{"value": base64, "mediaType": ...}``."""
    from geo_service.services.editing import IMPORT_TYPES

    given = raw.get(name)
    if not isinstance(given, dict) or not isinstance(given.get("value"), str):
        raise InvalidParameter(
            name, 'give {"value": "<base64>", "mediaType": "text/csv"} (or another type)'
        )
    media = str(given.get("mediaType") or "").split(";")[0].strip().lower()
    if media not in IMPORT_TYPES:
        raise InvalidParameter(name, "mediaType must be one of " + ", ".join(IMPORT_TYPES))
    try:
        return base64.b64decode(given["value"], validate=True), media
    except (binascii.Error, ValueError):
        raise InvalidParameter(name, "value is not base64") from None


def _question(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    from geo_service.services.planning import question_from

    radius = raw.get("radius")
    if isinstance(radius, bool) or (
        radius is not None and not isinstance(radius, str | int | float)
    ):
        raise InvalidParameter("radius", "give 5min, 10min, 15min or metres")
    question = question_from(
        rt, _names(raw, "layers"), _names(raw, "kinds"), None if radius is None else str(radius)
    )
    population = None
    if raw.get("population") is not None:
        from geo_service.services.planning import keep_population_file

        content, media = _uploaded(raw, "population")
        filename = raw["population"].get("filename")
        population = keep_population_file(
            rt, content, media, filename if isinstance(filename, str) else None
        )
    return {
        "layers": list(question.layers) if question.layers else None,
        "kinds": list(question.kinds) if question.kinds else None,
        "radius_m": question.radius_m,
        "population_file": population,
    }


def _as_question(inputs: dict[str, Any]):
    from geo_service.services.planning import Question

    return Question(
        tuple(inputs["layers"]) if inputs["layers"] else None,
        tuple(inputs["kinds"]) if inputs["kinds"] else None,
        inputs["radius_m"],
        population_file=inputs.get("population_file"),
    )


def _check_coverage(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    unknown_inputs(COVERAGE_REPORT, raw, trusted=True)
    return _question(rt, raw)


def _run_coverage(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services.planning import coverage_report

    return Output(orjson.dumps(coverage_report(rt, _as_question(inputs))), JSON)


COVERAGE_REPORT = Process(
    id="coverage-report",
    title="覆盖分析 · Coverage and compliance per town",
    description="Per town: facilities, share of people and of area within reach, walking "
    "distances, and the items of the 2022 opinion met or not.",
    inputs=_QUESTION_INPUTS,
    media_type=JSON,
    check=_check_coverage,
    run=_run_coverage,
)


def _check_recommendation(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    from geo_service.services.planning import MAX_P, parse_p

    unknown_inputs(SITE_RECOMMENDATION, raw, trusted=True)
    p = raw.get("p", 2)
    if isinstance(p, bool) or not isinstance(p, int | str):
        raise InvalidParameter("p", f"must be a whole number from 1 to {MAX_P}")
    return {**_question(rt, raw), "p": parse_p(str(p))}


def _run_recommendation(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services.planning import recommend_sites

    return Output(orjson.dumps(recommend_sites(rt, _as_question(inputs), inputs["p"])), JSON)


SITE_RECOMMENDATION = Process(
    id="site-recommendation",
    title="新站点选址 · Where new sites should go (MCLP)",
    description="The p sites covering the most people not yet within reach, every existing "
    "facility kept (maximal covering location problem, spopt + CBC), with a greedy "
    "choice for comparison.",
    inputs={**_QUESTION_INPUTS, "p": {"type": "integer", "minimum": 1, "maximum": 10}},
    media_type=JSON,
    check=_check_recommendation,
    run=_run_recommendation,
)


# -- imports ------------------------------------------------------------------------

#: Set by the adapter that received the file and knows who sent it.
_INTERNAL_IMPORT = frozenset({"spool", "who"})


def _check_import(rt: Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    from geo_service.services.editing import spool_upload
    from geo_service.sources.crs import CoordinateSystem

    unknown_inputs(IMPORT, raw, trusted=True)
    collection = _text(raw, "collection")
    if collection is None:
        raise InvalidParameter("collection", "is required: the layer to import into")
    rt.catalog.layer(collection)
    crs = _text(raw, "crs")
    if crs is not None:
        crs = CoordinateSystem.parse(crs, "crs").value
    filename = _text(raw, "filename")
    spool = raw.get("spool")
    if spool is None:
        # Through /processes/import/execution: the file is an input value, base64.
        content, media = _uploaded(raw, "file")
        spool = str(spool_upload(rt, content, media, filename))
    return {
        "collection": collection,
        "crs": crs,
        "dry_run": _flag(raw, "dry_run"),
        "skip_invalid": _flag(raw, "skip_invalid"),
        "filename": filename,
        "spool": spool,
        "who": raw.get("who"),
    }


def _run_import(rt: Runtime, inputs: dict[str, Any], progress: Progress) -> Output:
    from geo_service.services.editing import import_spooled

    report = import_spooled(rt, inputs, progress)
    return Output(orjson.dumps(report), JSON)


IMPORT = Process(
    id="import",
    title="导入 · Import a spreadsheet or GIS file",
    description="CSV (UTF-8 or GBK), XLSX, GeoJSON or GeoPackage into one layer; every row "
    "checked and reported; all or nothing unless skip_invalid. Needs a token.",
    inputs={
        "collection": {"type": "string", "description": "Layer id, e.g. stations"},
        "file": {
            "type": "object",
            "description": 'The file: {"value": base64, "mediaType": "text/csv"}',
            "properties": {"value": {"type": "string"}, "mediaType": {"type": "string"}},
        },
        "crs": {"type": "string", "enum": ["wgs84", "gcj02", "bd09"]},
        "dry_run": {"type": "boolean", "default": False},
        "skip_invalid": {"type": "boolean", "default": False},
        "filename": {"type": "string", "maxLength": 120},
    },
    media_type=JSON,
    check=_check_import,
    run=_run_import,
    cacheable=False,
    needs_principal=True,
    required=("collection", "file"),
    internal=_INTERNAL_IMPORT,
)


PROCESSES: dict[str, Process] = {
    p.id: p
    for p in (
        PRINT_ATLAS,
        PRINT_TOWN,
        PRINT_NEAREST,
        COVERAGE_REPORT,
        SITE_RECOMMENDATION,
        IMPORT,
    )
}


def process(process_id: str) -> Process:
    from geo_service.errors import NotFound

    try:
        return PROCESSES[process_id]
    except KeyError:
        raise NotFound(f"no process {process_id!r}; known: " + ", ".join(PROCESSES)) from None
