"""The coverage report the office reads, assembled once from the store, and
the same numbers for the API, the CLI workbook and the coverage map."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geo_service.analysis import coverage as cv
from geo_service.errors import InvalidParameter
from geo_service.runtime import Runtime
from geo_service.services.samples import coverage_sample_note, coverage_sample_notes

__all__ = [
    "MAX_P",
    "Question",
    "coverage_report",
    "keep_population_file",
    "parse_p",
    "question_from",
    "recommend_sites",
]

#: The most new sites one recommendation suggests.
MAX_P = 10


@dataclass(frozen=True)
class Question:
    layers: tuple[str, ...] | None
    kinds: tuple[str, ...] | None
    radius_m: float
    cell_m: float = 100.0
    #: the office's population points or cells (a file), instead of town totals
    population_file: str | None = None
    #: the office's candidate sites (a file with 经度/纬度), instead of grid cells
    candidates_file: str | None = None


def question_from(
    rt: Runtime,
    layers: Sequence[str] | None,
    kinds: Sequence[str] | None,
    radius: str | None,
) -> Question:
    """The office's question as given (names, ``15min`` or metres in any float
    spelling), checked against the catalog: ``InvalidParameter`` names the fault."""
    question = Question(
        tuple(layers) if layers else None, tuple(kinds) if kinds else None, _radius(radius)
    )
    # Checked now against no sites, so a typo is refused before any work is queued.
    cv.chosen_facilities(
        rt.catalog, {layer.id: [] for layer in rt.catalog.facility_layers}, layers, kinds
    )
    return question


def _radius(raw: str | None) -> float:
    """Metres in any float spelling (``800``, ``1e3``, as OpenAPI's number
    allows), else what ``parse_radius`` reads (``15min``, ``800m``)."""
    try:
        metres = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return cv.parse_radius(raw)
    if not (math.isfinite(metres) and 0 < metres <= cv.MAX_RADIUS_M):
        raise InvalidParameter("radius", f"must be more than 0 and at most {cv.MAX_RADIUS_M:.0f} m")
    return metres


def parse_p(raw: str) -> int:
    """How many new sites: a whole number from 1 to ``MAX_P``."""
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_P:
        raise InvalidParameter("p", f"must be a whole number from 1 to {MAX_P}, got {raw!r}")
    return int(raw)


def _inputs(rt: Runtime, question: Question):
    towns = rt.store.all_features("towns")
    features = {layer.id: rt.store.all_features(layer.id) for layer in rt.catalog.facility_layers}
    sites = cv.chosen_facilities(rt.catalog, features, question.layers, question.kinds)
    grid = rt.results.get(("grid", question.cell_m), lambda: cv.demand_grid(towns, question.cell_m))
    if question.population_file:
        lon, lat, people = cv.read_points_file(question.population_file, rt.catalog, "population")
        grid = cv.apply_population(grid, lon, lat, people, Path(question.population_file).name)
    return towns, features, sites, grid


def keep_population_file(rt: Runtime, content: bytes, media: str, filename: str | None) -> str:
    """Keep an office's uploaded population file for the jobs that read it,
    checked first (a bad row refuses it, named, before any work is queued).
    Named by its content, so the same file asks the same question (and is
    answered from the cache); its own name kept for the report's notes."""
    from geo_service.services.editing import IMPORT_TYPES

    digest = hashlib.sha256(content).hexdigest()[:32]
    stem = re.sub(r"[^\w.-]+", "_", Path(filename or "population").stem)[:80] or "population"
    path = Path(rt.settings.spool_dir) / "population" / digest / f"{stem}{IMPORT_TYPES[media]}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    try:
        cv.read_points_file(path, rt.catalog, "population")
    except InvalidParameter as error:
        path.unlink()
        raise InvalidParameter("population", error.message) from None
    return str(path)


def coverage_report(rt: Runtime, question: Question) -> dict[str, Any]:
    """Coverage and compliance per town, cached until the store changes."""
    return rt.results.get(("report", question), lambda: _report(rt, question))


def _report(rt: Runtime, question: Question) -> dict[str, Any]:
    towns, features, sites, grid = _inputs(rt, question)
    rows = cv.coverage_by_town(sites, grid, question.radius_m)
    every_site = [s for layer in features.values() for s in layer]
    compliance = cv.compliance_by_town(every_site, towns)
    # Sample sites count as sites (the store holds them); the report says how many.
    samples_by_town = Counter(
        s.properties.get("town_code") for s in sites if s.properties.get("sample") is True
    )
    table = []
    for row in rows:
        entry = {key: getattr(row, key) for key, _zh in cv.TOWN_COLUMNS}
        entry["by_kind"] = row.by_kind
        for key in ("population_covered_share", "area_covered_share"):
            entry[key] = round(entry[key], 4)
        for key in ("median_distance_m", "p90_distance_m", "max_distance_m"):
            value = entry[key]
            # No facility at all (or no cell): no distance, not "inf".
            entry[key] = round(value, 1) if np.isfinite(value) else None
        checks = compliance[row.town_code]
        for item, _zh in cv.COMPLIANCE_COLUMNS:
            entry[f"has_{item}"] = checks["meets"][item]
            entry[f"{item}_count"] = checks["counts"][item]
        entry["all_met"] = checks["all_met"]
        entry["population_note"] = grid.towns[row.town_code]["note"]
        entry["sample_sites"] = samples_by_town.get(row.town_code, 0)
        table.append(entry)
    # Compliance counts open sites of every layer (``compliance_by_town``).
    open_sites = [s for s in every_site if s.properties.get("status") == "open"]
    samples = {
        "coverage": sum(bool(s.properties.get("sample")) for s in sites),
        "compliance": sum(bool(s.properties.get("sample")) for s in open_sites),
    }
    # Planned and suspended sites of the chosen layers and kinds: not counted,
    # and said so where a total differs from the layer's count.
    not_open = Counter(
        s.properties.get("status") or "unknown"
        for s in cv.chosen_facilities(
            rt.catalog, features, question.layers, question.kinds, only_open=False
        )
        if s.properties.get("status") != "open"
    )
    return {
        "radius_m": question.radius_m,
        "layers": list(question.layers) if question.layers else None,
        "kinds": list(question.kinds) if question.kinds else None,
        "cell_m": question.cell_m,
        "facilities": len(sites),
        "not_open": dict(sorted(not_open.items())),
        "distance": cv.distance_assumption(),
        "distance_zh": cv.distance_assumption_zh(),
        # Where the people come from: None, town totals spread evenly over each
        # town's cells (so a town's covered share of people equals its share of area).
        "population_source": grid.population_source,
        "population_outside": grid.population_outside,
        # Sample sites counted, and the note every output shows when there are any.
        "sample_sites": samples,
        "sample_note": coverage_sample_note(
            (samples["coverage"], len(sites)), (samples["compliance"], len(open_sites))
        ),
        # The same, each language alone (the coverage map's legend speaks one).
        "sample_notes": coverage_sample_notes(
            (samples["coverage"], len(sites)), (samples["compliance"], len(open_sites))
        ),
        "towns": table,
        "progress_by_unit": cv.progress_by_unit(every_site),
        "uncovered": {row.town_code: row.uncovered for row in rows},
        "sites": [
            {
                "layer": s.layer_id,
                "id": s.id,
                "name": s.properties.get("name"),
                "kind": s.properties.get("kind"),
                "lon": s.geometry.x,
                "lat": s.geometry.y,
            }
            for s in sites
        ],
    }


def recommend_sites(rt: Runtime, question: Question, p: int) -> dict[str, Any]:
    """Where ``p`` new sites would cover most people (MCLP), cached like the report."""
    return rt.results.get(("sites", question, p), lambda: _recommend(rt, question, p))


def _recommend(rt: Runtime, question: Question, p: int) -> dict[str, Any]:
    _towns, _features, sites, grid = _inputs(rt, question)
    candidates = None
    if question.candidates_file:
        lon, lat, _ = cv.read_points_file(question.candidates_file, rt.catalog, None)
        candidates = list(zip(lon.tolist(), lat.tolist(), strict=True))
    result = cv.recommend_for_district(grid, sites, question.radius_m, p, candidates)
    total = result.total or 1.0
    return {
        "radius_m": question.radius_m,
        "p": p,
        "distance": cv.distance_assumption(),
        "population": round(result.total),
        "covered_before": round(result.covered_before),
        "covered_after": round(result.covered_after),
        "covered_share_before": round(result.covered_before / total, 4),
        "covered_share_after": round(result.covered_after / total, 4),
        "solve_seconds": round(result.solve_seconds, 3),
        "candidates": result.candidates,
        "demand_points": result.demand_points,
        "sites": [_site(s, grid) for s in result.sites],
        "greedy": {
            "covered_after": round(result.greedy_covered_after),
            "covered_share_after": round(result.greedy_covered_after / total, 4),
            "sites": [_site(s, grid) for s in result.greedy_sites],
        },
        "notes": [en for _zh, en in result.notes],
        "notes_zh": [zh for zh, _en in result.notes],
    }


def _site(site: dict[str, Any], grid: cv.DemandGrid) -> dict[str, Any]:
    nearest_cell = int(np.argmin((grid.x - site["x"]) ** 2 + (grid.y - site["y"]) ** 2))
    code = str(grid.town[nearest_cell])
    return {
        "lon": site["lon"],
        "lat": site["lat"],
        "town_code": code,
        "town_name": grid.towns[code]["name"],
        "gain": round(site["gain"]),
    }
