"""Build ``layers/gazetteer.csv``, the offline geocoder's own place and road list.

    .venv/bin/python scripts/build_gazetteer.py [--out DIR]

Build time only: reads the project's gazetteer tables in ``scripts/data`` and
writes the gazetteer in WGS-84, every row with its source and how it was
derived. The service and the tests read only the written file.

The tables hold what the project took from its compiled public facts: the
place names as residents type them, street addresses with a house number,
house numbers whose position a source states in the text of another row, and
roads with the extent sampled, each with its source and confidence, and
coordinates as the sources gave them (mostly GCJ-02). They were derived once
from the research notes (the parsing is in this script's history, up to
commit 02f1d58); this script never reads those notes, so anyone can rebuild
the shipped file from the repository alone.

- Places: GCJ-02 positions (Amap) converted to WGS-84; a "proxy" row (a bus
  stop or bank branch standing in for a place) is kept under the proxy's own
  name, so it is never mistaken for the place. A proxy's position, or a
  nominal 2-decimal one, is not at the place's address, so such a row carries
  no address (the geocoder would otherwise answer that address with it).
- Roads: the source gives an orientation (E-W or N-S) and the extent of the
  stretch sampled (GCJ-02). The course written here is a straight line across
  that extent, along the orientation: a derived approximation, said so in the
  row.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.sources.crs import convert  # noqa: E402

DATA = ROOT / "scripts" / "data"
FILE_NAME = "gazetteer.csv"
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
HEADER = (
    "# Offline geocoder gazetteer of 张店区, WGS-84.\n"
    "# Written by scripts/build_gazetteer.py\n"
    "# from compiled public facts (sources per row). Office staff may add rows:\n"
    "# kind=place (with an address when the position is at it), kind=address\n"
    "# (a house number's position) with lon/lat; kind=road with a WKT LINESTRING.\n"
)


def _wgs84(lon: float, lat: float, crs: str) -> tuple[float, float]:
    if crs.startswith("WGS-84"):
        return lon, lat
    # GCJ-02, and the "unstated" rows that match GCJ-02 Amap points
    g_lon, g_lat = convert(lon, lat, "gcj02", "wgs84")
    return float(g_lon), float(g_lat)


def _read(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def places(table: list[dict[str, str]]) -> list[dict[str, str]]:
    """Named places (``kind=place``) and house numbers (``kind=address``)."""
    rows = []
    for row in table:
        lon, lat = _wgs84(float(row["lon"]), float(row["lat"]), row["crs"])
        if row["kind"] == "address":
            address = row["address"]
            source = f"{row['source']}; {row['crs']} converted to WGS-84"
        else:
            proxy = "proxy" in row["category"]
            address = "" if proxy or "nominal" in row["crs"] else row["address"]
            source = f"{row['source']}; position {row['crs']} converted to WGS-84" + (
                "; a proxy point standing in for the named place" if proxy else ""
            )
        rows.append(
            {
                "kind": row["kind"],
                "name": row["name"],
                "address": address,
                "aliases": "",
                "category": row["category"],
                "town_code": row["town_code"],
                "lon": f"{lon:.6f}",
                "lat": f"{lat:.6f}",
                "wkt": "",
                "source": source,
                "confidence": row["confidence"],
            }
        )
    return rows


def roads(table: list[dict[str, str]]) -> list[dict[str, str]]:
    rows = []
    for row in table:
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
                "name": row["name"],
                "address": "",
                "aliases": row["aliases"],
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


def build(out_dir: Path) -> list[dict[str, str]]:
    """Write ``gazetteer.csv`` into ``out_dir``; the rows written."""
    rows = places(_read("gazetteer_places.csv")) + roads(_read("gazetteer_roads.csv"))
    with (out_dir / FILE_NAME).open("w", encoding="utf-8", newline="") as handle:
        handle.write(HEADER)
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "layers", help="folder to write into")
    out_dir = parser.parse_args().out
    rows = build(out_dir)
    print(
        f"wrote {out_dir / FILE_NAME}: {sum(r['kind'] == 'place' for r in rows)} places, "
        f"{sum(bool(r['address']) for r in rows)} with addresses, "
        f"{sum(r['kind'] == 'road' for r in rows)} roads"
    )


if __name__ == "__main__":
    main()
