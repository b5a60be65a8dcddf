"""Benchmark the printed atlas of the shipped data: time and file size.

    .venv/bin/python bench/printing.py [--runs 3]

Prints, per paper size, the pages, the PDF size and the median time to make
the whole atlas (overview + 13 towns) and one resident's nearest sheet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.analysis.nearest import SiteIndexCache  # noqa: E402
from geo_service.outputs.printing import atlas_pdf, nearest_pdf  # noqa: E402
from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.sources.style import default_style_file, load_style  # noqa: E402
from geo_service.store import open_store  # noqa: E402
from geo_service.store.seeding import seed_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    catalog = load_catalog()
    store = open_store(Path(tempfile.mkdtemp()) / "print.gpkg", catalog)
    seed_store(store, catalog)
    style = load_style(default_style_file(), catalog)
    print(f"{'document':<28} {'pages':>5} {'size':>9} {'median s':>9}")
    for size, orientation in (("A4", "portrait"), ("A3", "landscape")):
        times, content = [], b""
        for _ in range(args.runs):
            start = time.perf_counter()
            content = atlas_pdf(
                catalog,
                store,
                style,
                base_url="http://127.0.0.1:8000",
                size=size,
                orientation=orientation,
            )
            times.append(time.perf_counter() - start)
        pages = content.count(b"/Type /Page\n") or content.count(b"/Type /Page ")
        print(
            f"{f'atlas {size} {orientation}':<28} {pages:>5} {len(content) / 1024:>6,.0f} KiB "
            f"{statistics.median(times):>9.2f}"
        )
    index = SiteIndexCache(store).get()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        content = nearest_pdf(
            catalog,
            store,
            style,
            index,
            118.0427,
            36.8101,
            base_url="http://127.0.0.1:8000",
            where="人民公园",
        )
        times.append(time.perf_counter() - start)
    print(
        f"{'nearest sheet A4':<28} {1:>5} {len(content) / 1024:>6,.0f} KiB "
        f"{statistics.median(times):>9.2f}"
    )
    store.close()


if __name__ == "__main__":
    main()
