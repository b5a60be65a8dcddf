"""Build ``layers/gazetteer.csv``, the offline geocoder's own place and road list.

    .venv/bin/python scripts/build_gazetteer.py [RAW_DIR]

Build time only: reads the compiled fact tables (``zhangdian_places.csv``,
``zhangdian_roads.csv``; default ``../shared/data/raw``) and writes the
project's gazetteer in WGS-84, every row with its source and how it was
derived. The service and the tests read only the written file.

- Places: the rows with coordinates; GCJ-02 positions (Amap) converted to
  WGS-84; a "proxy" row (a bus stop or bank branch standing in for a place) is
  kept under the proxy's own name, so it is never mistaken for the place.
- Roads: the source gives an orientation (E-W or N-S) and the extent of the
  stretch sampled (GCJ-02). The course written here is a straight line across
  that extent, along the orientation: a derived approximation, said so in the
  row. Roads with no extent are left out.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.sources.crs import convert  # noqa: E402

OUT = ROOT / "layers" / "gazetteer.csv"
COLUMNS = [
    "kind",
    "name",
    "address",
    "aliases",
    "category",
    "town_code",
    "lon",
    "lat",
    "wkt",
    "source",
    "confidence",
]


def _names(raw: str) -> tuple[str, list[str]]:
    """'人民路 (人民西路/人民东路)' -> ('人民路', ['人民西路', '人民东路'])."""
    match = re.match(r"^(.*?)\s*\((.*)\)\s*$", raw)
    if not match:
        return raw.strip(), []
    main, inner = match.group(1).strip(), match.group(2)
    aliases = [a.strip().lstrip("=") for a in re.split(r"[/、]", inner) if a.strip()]
    aliases = [a for a in aliases if re.search(r"[\u4e00-\u9fff]|^G\d+$", a) and a != main]
    return main, aliases


def _place_name(raw: str) -> str | None:
    """The name the row's coordinates belong to."""
    name = raw.split(": ", 1)[1] if ": " in raw else raw
    name = re.sub(r"\s+\(.*\)\s*$", "", name).strip()
    if not re.search(r"[\u4e00-\u9fff]", name):
        return None  # "Zibo (GeoNames city point)": not a name residents type
    return name


def _address(raw: str) -> str:
    """A street address with a house number, without notes; else nothing."""
    text = re.sub(r"\s*[(（].*?[)）]", "", raw).strip()
    text = text.split(";")[0].strip()
    return text if re.search(r"\d+号", text) and " " not in text else ""


def numbered_points(raw_dir: Path) -> list[dict[str, str]]:
    """House numbers whose position a source states inside another row's text
    ("王舍路83号 at 118.034798,36.78726")."""
    rows = []
    pattern = re.compile(
        r"([\u4e00-\u9fff]{1,8}?(?:大道|大街|路|街))(\d+)号 at (\d{3}\.\d+),\s*(\d{2}\.\d+)"
    )
    with (raw_dir / "zhangdian_places.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for road, number, lon, lat in pattern.findall(row["address"]):
                w_lon, w_lat = _wgs84(float(lon), float(lat), row["crs"] or "GCJ-02")
                rows.append(
                    {
                        "kind": "address",
                        "name": f"{road}{number}号",
                        "address": f"{road}{number}号",
                        "aliases": "",
                        "category": "house_number",
                        "town_code": row["town_code"],
                        "lon": f"{w_lon:.6f}",
                        "lat": f"{w_lat:.6f}",
                        "wkt": "",
                        "source": f"{row['source']}; stated in the text of row {row['name']!r}; "
                        f"{row['crs']} converted to WGS-84",
                        "confidence": row["confidence"],
                    }
                )
    return rows


def _wgs84(lon: float, lat: float, crs: str) -> tuple[float, float]:
    if crs.startswith("WGS-84"):
        return lon, lat
    # GCJ-02, and the "unstated" rows that match GCJ-02 Amap points
    g_lon, g_lat = convert(lon, lat, "gcj02", "wgs84")
    return float(g_lon), float(g_lat)


def places(raw_dir: Path) -> list[dict[str, str]]:
    rows = []
    with (raw_dir / "zhangdian_places.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["lon"] or not row["lat"] or "NOT in Zhangdian" in row["name"]:
                continue
            name = _place_name(row["name"])
            if name is None:
                continue
            lon, lat = _wgs84(float(row["lon"]), float(row["lat"]), row["crs"])
            proxy = "proxy" in row["category"]
            rows.append(
                {
                    "kind": "place",
                    "name": name,
                    # A proxy's (or a 2-decimal nominal) position is not at the
                    # address, so it does not carry one.
                    "address": "" if proxy or "nominal" in row["crs"] else _address(row["address"]),
                    "aliases": "",
                    "category": row["category"],
                    "town_code": row["town_code"],
                    "lon": f"{lon:.6f}",
                    "lat": f"{lat:.6f}",
                    "wkt": "",
                    "source": (
                        f"{row['source']}; position {row['crs']} converted to WGS-84"
                        + ("; a proxy point standing in for the named place" if proxy else "")
                    ),
                    "confidence": row["confidence"],
                }
            )
    return rows


def roads(raw_dir: Path) -> list[dict[str, str]]:
    rows = []
    with (raw_dir / "zhangdian_roads.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["lon_min"]:
                continue
            main, aliases = _names(row["name"])
            west, south = _wgs84(float(row["lon_min"]), float(row["lat_min"]), "GCJ-02")
            east, north = _wgs84(float(row["lon_max"]), float(row["lat_max"]), "GCJ-02")
            if row["orientation"] == "E-W":
                mid = (south + north) / 2
                line = f"LINESTRING ({west:.6f} {mid:.6f}, {east:.6f} {mid:.6f})"
            else:
                mid = (west + east) / 2
                line = f"LINESTRING ({mid:.6f} {south:.6f}, {mid:.6f} {north:.6f})"
            rows.append(
                {
                    "kind": "road",
                    "name": main,
                    "address": "",
                    "aliases": "|".join(aliases),
                    "category": row["orientation"],
                    "town_code": "",
                    "lon": "",
                    "lat": "",
                    "wkt": line,
                    "source": (
                        f"{row['source']}; course DERIVED by this project: a straight "
                        f"{row['orientation']} line across the sampled extent, converted "
                        "from GCJ-02 to WGS-84"
                    ),
                    "confidence": row["confidence"],
                }
            )
    return rows


def main() -> None:
    raw_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "raw"
    rows = places(raw_dir) + numbered_points(raw_dir) + roads(raw_dir)
    with OUT.open("w", encoding="utf-8", newline="") as handle:
        handle.write(
            "# Offline geocoder gazetteer of 张店区, WGS-84.\n"
            "# Written by scripts/build_gazetteer.py\n"
            "# from compiled public facts (sources per row). Office staff may add rows:\n"
            "# kind=place (with an address when the position is at it), kind=address\n"
            "# (a house number's position) with lon/lat; kind=road with a WKT LINESTRING.\n"
        )
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"wrote {OUT.relative_to(ROOT)}: {sum(r['kind'] == 'place' for r in rows)} places, "
        f"{sum(bool(r['address']) for r in rows)} with addresses, "
        f"{sum(r['kind'] == 'road' for r in rows)} roads"
    )


if __name__ == "__main__":
    main()
