"""The offline geocoder's hit rate on the addresses in the shipped data.

    .venv/bin/python bench/geocode.py

Every shipped facility with an address is geocoded and the best candidate is
compared with the facility's stored position: the share within 200 m and 1 km,
by match level. So the test is not circular, the geocoder here knows only the
gazetteer and the towns, not the facilities themselves.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.sources.crs import GEOD  # noqa: E402
from geo_service.sources.geocoding import Geocoder, load_gazetteer  # noqa: E402
from geo_service.store import open_store  # noqa: E402
from geo_service.store.seeding import seed_store  # noqa: E402


def main() -> None:
    catalog = load_catalog()
    store = open_store(Path(tempfile.mkdtemp()) / "hits.gpkg", catalog)
    seed_store(store, catalog)
    places, roads = load_gazetteer(catalog.directory / "gazetteer.csv")
    geocoder = Geocoder(places, roads, store.all_features("towns"))  # no facilities
    rows = []
    for layer in catalog.facility_layers:
        for site in store.all_features(layer.id):
            address = site.properties.get("address")
            if not address:
                continue
            best = geocoder.geocode(address, 1)
            if not best:
                rows.append((site, address, None, None))
                continue
            distance = GEOD.inv(best[0].lon, best[0].lat, site.geometry.x, site.geometry.y)[2]
            rows.append((site, address, best[0], distance))
    total = len(rows)
    found = [r for r in rows if r[2] is not None]
    within = {limit: sum(1 for r in found if r[3] <= limit) for limit in (200, 1000)}
    levels = Counter(r[2].level for r in found)
    print(f"addresses geocoded: {total} (every shipped facility with an address)")
    print(f"  a candidate found : {len(found):3d} ({len(found) / total:.0%})")
    for limit, count in within.items():
        print(f"  within {limit:>5,} m   : {count:3d} ({count / total:.0%})")
    print("  best match level  : " + ", ".join(f"{k} {v}" for k, v in levels.most_common()))
    print("\nworst found (address → level, distance):")
    for site, address, best, distance in sorted(found, key=lambda r: -r[3])[:5]:
        print(f"  {address} → {best.level} {best.matched!r}, {distance:,.0f} m ({site.id})")
    store.close()


if __name__ == "__main__":
    main()
