"""QGIS reads the service: its own OGC API - Features provider (the one the
"Add WFS / OGC API - Features Layer" dialog uses), driven by Debian's
``python3-qgis`` in a subprocess, against a real server on each store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from shapely.geometry import shape

from geo_service.sources.catalog import load_catalog
from tests.conftest import missing

CATALOG = load_catalog()
LAYERS = list(CATALOG.layers)
#: Debian's Python, which python3-qgis is built for (the venv's may differ).
SYSTEM_PYTHON = "/usr/bin/python3"
READER = Path(__file__).parent / "clients" / "qgis_read.py"


@pytest.fixture(scope="module")
def qgis_python() -> str:
    found = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, check=False
    )
    if found.returncode != 0:
        missing("QGIS's Python bindings are not installed (Debian: python3-qgis qgis-providers)")
    return SYSTEM_PYTHON


@pytest.fixture(scope="module")
def server(seeded_server: str) -> str:
    return seeded_server


def _read_with_qgis(python: str, base: str, runtime: Path) -> dict:
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [python, str(READER), base, *LAYERS],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_qgis_reads_every_layer_as_the_api_serves_it(server, qgis_python, tmp_path):
    got = _read_with_qgis(qgis_python, server, tmp_path / "runtime")
    for layer in LAYERS:
        read = got[layer]
        assert read["valid"], (layer, read)
        answer = httpx.get(f"{server}/collections/{layer}/items", params={"limit": 10000})
        features = answer.json()["features"]
        assert read["ids"] == sorted(f["id"] for f in features)
        if not read["ids"]:
            # Only the context layer is empty as shipped; with no feature to
            # tell its geometry type, QGIS opens it as a table (no CRS).
            assert CATALOG.layer(layer).is_context, layer
            continue
        assert read["crs"] == "EPSG:4326"
        # QGIS shows the catalog's properties as the layer's fields.
        assert set(CATALOG.layer(layer).properties) - {"id"} <= set(read["fields"])
        for feature in features:
            if feature["id"] in read["points"]:
                point = shape(feature["geometry"])
                # QGIS reads CRS84 longitude first, as the service writes it.
                assert read["points"][feature["id"]] == pytest.approx([point.x, point.y])
    box = {"bbox": "118.0,36.78,118.06,36.83", "limit": 10000}
    in_box = httpx.get(f"{server}/collections/stations/items", params=box).json()["features"]
    assert got["stations"]["in_box"] == sorted(f["id"] for f in in_box)
    assert 0 < len(in_box) < len(got["stations"]["ids"])
