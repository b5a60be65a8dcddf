"""What ``pip install .`` ships: the sdist, the wheel built from it, and that wheel
installed into a fresh environment serving the shipped layers and map from an
empty folder, with no way back to this checkout.

Offline: the sdist and wheel are built with this environment's setuptools (no
build isolation), and the new environment reuses this one's dependencies
through a ``.pth`` line instead of installing them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

import tests.conftest
from geo_service.sources.catalog import Catalog
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.server

#: Not part of a source tree: copying them would only slow the build, or leak
#: stale files (build/) into it.
_NOT_SOURCE = {".git", ".venv", "venv", "build", "dist", "artifacts", "__pycache__"}
_NOT_SOURCE_SUFFIXES = (".egg-info", "_cache", ".hypothesis")
#: This environment's site-packages: the new one reuses its dependencies.
_OURS = frozenset({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
#: Environment variables that could lead the installed service back to this checkout.
_LEADS_BACK = ("PYTHONPATH", "PYTHONHOME", "GEO_SERVICE_LAYERS_DIR", "GEO_SERVICE_STYLE_FILE")


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    python: Path
    script: Path
    site_packages: Path
    cwd: Path  # empty: nothing to import from, no layers/ or maps/ beside it


def _run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _ignore(folder: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n in _NOT_SOURCE or n.endswith(_NOT_SOURCE_SUFFIXES)}
    if Path(folder) == ROOT / "maps":
        ignored.add("out")  # printed maps, possibly large; never packaged
    return ignored


def _data_files(folder: Path) -> set[str]:
    """The files of a shipped data folder, as the wheel should carry them."""
    return {p.name for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist of a copy of this working tree, and the wheel built from that sdist
    (as ``python -m build`` does): a wheel can only carry what the sdist has."""
    if tuple(int(n) for n in version("setuptools").split(".")[:2]) < (70, 1):
        pytest.fail("building a wheel offline needs setuptools>=70.1: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("packaging")
    # A copy, so building leaves nothing (build/, egg-info) in the checkout, and
    # nothing left there by an earlier build gets into this one.
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_ignore)
    dist = tmp / "dist"
    build_sdist = (
        "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    )
    _run([sys.executable, "-c", build_sdist, dist], cwd=source)
    (sdist,) = dist.glob("*.tar.gz")
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    _run([sys.executable, "-m", "pip", "wheel", *offline, "-w", dist, sdist], cwd=tmp)
    (wheel,) = dist.glob("*.whl")
    return Built(sdist, wheel)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A new virtual environment with the wheel installed by pip, seeing this
    environment's dependencies (not its geo_service: the editable install's
    finder is started by a .pth file, and the .pth line below runs none)."""
    tmp = tmp_path_factory.mktemp("installed")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site_packages = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    (site_packages / "dependencies.pth").write_text("\n".join(sorted(_OURS)) + "\n")
    # This environment's pip, run by the new interpreter, installs into the new
    # environment; --ignore-installed: the geo-service that pip sees through the
    # .pth is this checkout's, and it must not be "already satisfied" (or touched).
    install = ["--no-deps", "--no-index", "--ignore-installed", "--no-compile", "--quiet"]
    _run([python, "-m", "pip", "install", *install, built.wheel], cwd=tmp, env=_clean_env())
    cwd = tmp / "empty"
    cwd.mkdir()
    return Installed(python, venv / "bin" / "geo-service", site_packages, cwd)


def _clean_env() -> dict[str, str]:
    """This process's environment without a way back to the checkout's files."""
    return {name: value for name, value in os.environ.items() if name not in _LEADS_BACK}


def test_sdist_carries_the_data_folders(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        top = Path(sdist.getnames()[0]).parts[0]
        names = {n.removeprefix(f"{top}/") for n in sdist.getnames()}
    for folder in ("layers", "maps"):
        missing = {f"{folder}/{n}" for n in _data_files(ROOT / folder)} - names
        assert not missing, f"the sdist lacks {sorted(missing)}"


def test_wheel_carries_every_package_and_data_file(built: Built) -> None:
    """pyproject.toml lists the packages (the data folders are mapped in): a new
    package under geo_service/ must be listed there too, and a new kind of data
    file in layers/ or maps/ added to the package-data globs."""
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    source_modules = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "geo_service").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert not source_modules - names, f"the wheel lacks {sorted(source_modules - names)}"
    for folder in ("layers", "maps"):
        expected = {f"geo_service/{folder}/{n}" for n in _data_files(ROOT / folder)}
        assert not expected - names, f"the wheel lacks {sorted(expected - names)}"
    assert not [n for n in names if n.startswith("geo_service/maps/out/")]


def test_installed_wheel_serves_the_shipped_layers_and_map(
    installed: Installed,
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not any(installed.cwd.iterdir())
    env = _clean_env()
    probe = (
        "import json, sys, geo_service\n"
        "from geo_service.settings import Settings\n"
        "s = Settings()\n"
        "print(json.dumps({'module': geo_service.__file__, 'layers': str(s.layers_dir),"
        " 'style': str(s.style_file), 'path': sys.path}))\n"
    )
    found = json.loads(_run([installed.python, "-c", probe], cwd=installed.cwd, env=env).stdout)
    for key in ("module", "layers", "style"):
        assert Path(found[key]).is_relative_to(installed.site_packages), (key, found[key])
    # Only the dependencies' folders (this environment's site-packages, which may
    # lie inside the checkout) lead there; "" is the empty working directory.
    leaks = [
        entry
        for entry in found["path"]
        if entry not in _OURS and Path(entry or installed.cwd).resolve().is_relative_to(ROOT)
    ]
    assert not leaks, leaks

    # The project's server helper starts ``sys.executable -m geo_service.cli serve``
    # in ROOT, from os.environ: point those at the new interpreter and the empty
    # folder (the probe above ran with the same interpreter, folder and variables).
    monkeypatch.setattr(sys, "executable", str(installed.python))
    monkeypatch.setattr(tests.conftest, "ROOT", installed.cwd)
    for name in _LEADS_BACK:
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "x.gpkg"
    with running_server(tmp_path, "--store", str(store)) as base:
        monkeypatch.undo()  # sys.executable back before anything else reads it
        collections = httpx.get(f"{base}/collections", timeout=30)
        assert collections.status_code == 200
        ids = [c["id"] for c in collections.json()["collections"]]
        assert sorted(ids) == sorted(catalog.layers) and len(ids) == 8

        page = httpx.get(f"{base}/", headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        style = tomllib.loads((ROOT / "maps" / "style.toml").read_text(encoding="utf-8"))
        assert style["map"]["title_zh"] in page.text
        for script in ("static/app/app.js", "static/leaflet/leaflet.js"):
            assert script in page.text
            assert httpx.get(f"{base}/{script}", timeout=30).status_code == 200

    listed = _run(
        [installed.script, "layers", "--store", store],
        cwd=installed.cwd,
        env=dict(env, COLUMNS="200"),
    ).stdout
    for layer in catalog.layers:
        assert layer in listed
