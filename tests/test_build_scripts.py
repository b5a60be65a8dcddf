"""The shipped layers are what the build scripts make: rebuilt from the
repository alone into a temporary folder, they match ``layers/`` byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
LAYERS = ROOT / "layers"
#: What each script writes into ``layers/``.
BUILT_FILES = {
    "build_sample_data.py": [
        "district.geojson",
        "towns.geojson",
        "stations.geojson",
        "green_channels.geojson",
        "medical.geojson",
        "memorials.geojson",
        "education.geojson",
    ],
    "build_gazetteer.py": ["gazetteer.csv"],
}


@pytest.mark.parametrize("script", sorted(BUILT_FILES))
def test_a_build_script_reproduces_the_shipped_files_byte_for_byte(script, tmp_path):
    # Run from an unrelated folder, so nothing is found relative to the caller.
    subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--out", str(tmp_path)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(BUILT_FILES[script])
    for name in BUILT_FILES[script]:
        built = (tmp_path / name).read_bytes()
        shipped = (LAYERS / name).read_bytes()
        assert built == shipped, f"{name}: the shipped file differs from what {script} makes"


@pytest.mark.parametrize("script", sorted(BUILT_FILES))
def test_a_build_script_reads_only_the_repository(script):
    # The research notes live outside the repository; a build that reads them
    # cannot be repeated from a checkout.
    text = (SCRIPTS / script).read_text(encoding="utf-8")
    assert "shared" not in text
    assert "sys.argv" not in text  # inputs come from scripts/data, not a path argument
