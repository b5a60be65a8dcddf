"""Benchmark the web map against the naive folium map, in headless Chromium, in one run.

    .venv/bin/python bench/webmap.py [--sites 10000] [--runs 3]

Both maps show the same synthetic facilities (spread over the district, across
the five facility layers) on the same machine, in the same run:

- **ours**: the service's page at ``/``: a small HTML page, Leaflet and the
  clustering plugin from installed files, the layers fetched as GeoJSON from
  the API, markers clustered;
- **naive**: ``folium.Map`` with every layer added as ``folium.GeoJson`` (data
  embedded in the HTML, one DOM marker per site), Leaflet served from the same
  installed files so neither side touches the network.

Printed: page weight (the HTML document; every response body the page loaded,
uncompressed; and bytes on the wire, where the service gzips and the naive
page's plain static server does not) and
the time from navigation start until every site is on the map (ours: every
marker handed to its cluster layer; naive: every marker element in the DOM),
median of ``--runs``, and the ratios naive / ours.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_service.sources.catalog import load_catalog  # noqa: E402
from geo_service.store import open_store  # noqa: E402
from geo_service.store.seeding import seed_store  # noqa: E402

CHROMIUM = os.environ.get("GEO_SERVICE_CHROMIUM") or shutil.which("chromium")
DISTRICT_BOX = (117.96, 36.70, 118.20, 36.90)


def synthetic_store(path: Path, n: int) -> int:
    """The shipped towns and district, plus ``n`` synthetic facilities."""
    catalog = load_catalog()
    store = open_store(path, catalog)
    seed_store(store, catalog)
    towns = sorted(f.id for f in store.all_features("towns"))
    rng = np.random.default_rng(2026)
    layers = catalog.facility_layers
    batches: dict[str, list] = {layer.id: [] for layer in layers}
    for i in range(n):
        layer = layers[i % len(layers)]
        kinds = list(layer.kinds)
        lon = float(rng.uniform(DISTRICT_BOX[0], DISTRICT_BOX[2]))
        lat = float(rng.uniform(DISTRICT_BOX[1], DISTRICT_BOX[3]))
        feature = {
            "type": "Feature",
            "id": f"bench-{i:05d}",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {
                "id": f"bench-{i:05d}",
                "name": f"合成站点 {i:05d}",
                "kind": kinds[i % len(kinds)],
                "address": f"张店区合成路 {i} 号",
                "town_code": towns[i % len(towns)],
                "phone": "0533-2180000",
                "opening_hours": "Mo-Fr 09:00-17:00",
                "services": ["priority_queue"],
                "eligible": ["veteran", "military_family"],
                "status": "open",
                "source": "synthetic benchmark data",
                "updated_at": "2026-11-29",
                "sample": True,
                "position_quality": "approximate",
            },
        }
        batches[layer.id].append(catalog.validate_feature(layer.id, feature))
    store.write_layers(batches, actor="bench", replace=True)
    store.close()
    return n


def naive_page(base: str, folder: Path) -> Path:
    """The map as one would first write it with folium: every layer embedded."""
    import folium

    fmap = folium.Map(location=[36.80, 118.05], zoom_start=12, tiles=None)
    fmap.default_js = [("leaflet", f"{base}/static/leaflet/leaflet.js")]
    fmap.default_css = [("leaflet_css", f"{base}/static/leaflet/leaflet.css")]
    catalog = load_catalog()
    for layer in catalog.layers.values():
        data = httpx.get(f"{base}/collections/{layer.id}/items", params={"limit": 10000}).json()
        folium.GeoJson(
            data,
            name=layer.zh,
            popup=folium.GeoJsonPopup(fields=["name"]) if layer.is_facility else None,
        ).add_to(fmap)
    path = folder / "naive.html"
    fmap.save(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(base: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{base}/conformance", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


OURS_DRAWN = (
    "document.body.dataset.gsReady === '1' && Object.values(gsApp.layers)"
    ".every(l => l.cluster.getLayers().length === l.markers.length)"
)


def measure(browser, url: str, drawn: str) -> tuple[float, int, int, int]:
    """(milliseconds from navigation start until ``drawn`` is true, bytes loaded,
    bytes of the HTML document itself, bytes on the wire: compressed, headers
    included)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    loaded: list[int] = []
    document: list[int] = []

    def count(response):
        try:
            size = len(response.body())
        except Exception:  # a redirect or aborted response has no body
            return
        loaded.append(size)
        if response.request.resource_type == "document":
            document.append(size)

    def local_only(route):
        host = route.request.url.split("/")[2] if "://" in route.request.url else ""
        if host.startswith("127.0.0.1"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", local_only)
    page.on("response", count)
    page.goto(url, timeout=120_000)
    page.wait_for_function(drawn, timeout=120_000, polling=20)
    elapsed = page.evaluate("performance.now()")
    page.wait_for_timeout(300)  # late responses still count toward the weight
    wire = page.evaluate(
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType("
        "'resource')).reduce((n, e) => n + e.transferSize, 0)"
    )
    context.close()
    return elapsed, sum(loaded), sum(document), wire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not CHROMIUM:
        sys.exit("Debian's chromium is required: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp())
    store = folder / "bench.gpkg"
    print(f"building a store with {args.sites:,} synthetic sites ...", flush=True)
    synthetic_store(store, args.sites)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "geo_service.cli", "serve", "--port", str(port)],
        env=dict(os.environ, GEO_SERVICE_STORE=str(store)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    static = None
    try:
        wait_up(base)
        naive = naive_page(base, folder)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=static.serve_forever, daemon=True).start()
        naive_url = f"http://127.0.0.1:{static.server_address[1]}/{naive.name}"
        naive_drawn = f"document.querySelectorAll('.leaflet-marker-icon').length >= {args.sites}"
        results: dict[str, list[tuple[float, int, int, int]]] = {"ours": [], "naive": []}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for _ in range(args.runs):  # alternate, so machine noise hits both
                results["ours"].append(measure(browser, base + "/", OURS_DRAWN))
                results["naive"].append(measure(browser, naive_url, naive_drawn))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if static is not None:
            static.shutdown()
    summary = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(4))
        for name, runs in results.items()
    }
    print(f"\nweb map with {args.sites:,} sites, headless Chromium, median of {args.runs} runs")
    print(
        f"{'page':<8} {'HTML':>10} {'all loaded':>12} {'on the wire':>12} {'to markers drawn':>18}"
    )
    for name, (ms, size, doc, wire) in summary.items():
        print(
            f"{name:<8} {doc / 1024:>6,.0f} KiB {size / 1024:>8,.0f} KiB "
            f"{wire / 1024:>8,.0f} KiB {ms:>15,.0f} ms"
        )
    ours, naive_ = summary["ours"], summary["naive"]
    print(
        f"ratio naive/ours: HTML {naive_[2] / ours[2]:.0f}x, all loaded "
        f"{naive_[1] / ours[1]:.2f}x, on the wire {naive_[3] / ours[3]:.1f}x, "
        f"time to markers {naive_[0] / ours[0]:.2f}x"
    )


if __name__ == "__main__":
    main()
