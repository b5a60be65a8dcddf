"""The geo-service command line, run as a user runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pyogrio
import pytest


def run(*args, store, check=True):
    return subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        check=check,
        env={"COLUMNS": "120", "PATH": ""},
    )


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "cli.gpkg"


def test_layers_seeds_a_new_store_and_counts_by_kind(store_path):
    output = run("layers", store=store_path).stdout
    assert store_path.exists()
    for text in ("stations", "服务站点", "green_channels", "town_station 13", "towns"):
        assert text in output


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "csv"])
def test_export_writes_every_feature(store_path, tmp_path, fmt):
    out = tmp_path / f"green.{fmt}"
    run("export", "green_channels", "--format", fmt, "--out", str(out), store=store_path)
    if fmt == "geojson":
        body = json.loads(out.read_text(encoding="utf-8"))
        assert len(body["features"]) == 29
    elif fmt == "gpkg":
        frame = pyogrio.read_dataframe(out)
        assert len(frame) == 29 and frame.crs.to_epsg() == 4326
    else:
        rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
        assert len(rows) == 29
        assert {"id", "name", "lon", "lat", "window"} <= set(rows[0])
        assert all(117.9 < float(r["lon"]) < 118.25 for r in rows)


def test_export_in_gcj02_moves_points_east(store_path, tmp_path):
    plain, shifted = tmp_path / "w.geojson", tmp_path / "g.geojson"
    run("export", "stations", "-o", str(plain), store=store_path)
    run("export", "stations", "-o", str(shifted), "--crs", "gcj02", store=store_path)
    a = json.loads(plain.read_text())["features"][0]["geometry"]["coordinates"]
    b = json.loads(shifted.read_text())["features"][0]["geometry"]["coordinates"]
    assert 0.005 < b[0] - a[0] < 0.007


def test_unknown_layer_is_a_clear_error_not_a_traceback(store_path, tmp_path):
    result = run(
        "export", "spaceports", "-o", str(tmp_path / "x.json"), store=store_path, check=False
    )
    assert result.returncode == 2
    assert "no collection 'spaceports'" in result.stderr
    assert "Traceback" not in result.stderr


#: What a light command must not load: the web framework, the map and chart
#: libraries, the data-frame stack (seconds of start-up on every call).
HEAVY = ("fastapi", "starlette", "folium", "matplotlib", "geopandas")


@pytest.mark.parametrize(
    "args", [["--help"], ["layers"], ["jobs", "list"], ["tokens", "list"], ["users", "list"]]
)
def test_light_commands_load_no_web_or_drawing_stack(store_path, args):
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from geo_service.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r} + "
        f"([] if {args!r} == ['--help'] else ['--store', {str(store_path)!r}]))\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"geo-service {' '.join(args)} loaded {loaded}"


def test_coverage_prints_a_town_name_that_looks_like_markup_as_it_is(store_path):
    """Rich reads [red]…[/] as markup: a town named so must print as text, not
    crash the table or colour it."""
    from geo_service.sources.catalog import ValidFeature, load_catalog
    from geo_service.store import open_store

    run("layers", store=store_path)
    store = open_store(store_path, load_catalog())
    town = store.get("towns", "370303002")
    props = dict(town.properties, name="[/]公园[red]街道")
    store.write("towns", [ValidFeature(town.id, props, town.geometry)], actor="test")
    store.close()
    result = run("coverage", "--radius", "15min", "-p", "1", store=store_path, check=False)
    assert result.returncode == 0, result.stderr
    assert "[/]公园[red]街道" in result.stdout


def test_users_add_passwd_disable_enable_and_list(store_path):
    from geo_service.errors import Unauthorized
    from geo_service.services import accounts
    from geo_service.settings import Settings
    from geo_service.sources.catalog import load_catalog
    from geo_service.store import open_store

    policy = accounts.AccountPolicy.from_settings(Settings())
    added = run(
        "users",
        "add",
        "--name",
        "王芳",
        "--role",
        "editor",
        "--towns",
        "370303009",
        store=store_path,
    )
    initial = added.stdout.splitlines()[-1]
    assert len(initial) >= 16 and initial not in added.stderr

    store = open_store(store_path, load_catalog())
    try:
        first = accounts.sign_in(store, "王芳", initial, policy)
        # A new generated password: printed last, and the old sessions end.
        changed = run("users", "passwd", "王芳", store=store_path).stdout.splitlines()[-1]
        assert changed != initial
        with pytest.raises(Unauthorized):
            accounts.session_for(store, first.session_id, policy)
        with pytest.raises(Unauthorized):
            accounts.sign_in(store, "王芳", initial, policy)
        # A password chosen by the office, from standard input (never an argument).
        chosen = "长城-Great-Wall-42"
        piped = subprocess.run(
            [
                sys.executable,
                "-m",
                "geo_service.cli",
                "users",
                "passwd",
                "王芳",
                "--stdin",
                "--store",
                str(store_path),
            ],
            input=chosen + "\n",
            capture_output=True,
            text=True,
            check=True,
            env={"COLUMNS": "120", "PATH": ""},
        )
        assert chosen not in piped.stdout + piped.stderr
        second = accounts.sign_in(store, "王芳", chosen, policy)

        run("users", "disable", "王芳", store=store_path)
        with pytest.raises(Unauthorized):
            accounts.session_for(store, second.session_id, policy)
        with pytest.raises(Unauthorized):
            accounts.sign_in(store, "王芳", chosen, policy)
        listed = run("users", "list", store=store_path).stdout
        assert "王芳" in listed and "370303009" in listed and "$argon2" not in listed
        assert chosen not in listed

        run("users", "enable", "王芳", store=store_path)
        accounts.sign_in(store, "王芳", chosen, policy)
    finally:
        store.close()


def test_users_refuses_unknown_towns_and_names(store_path):
    refused = run(
        "users",
        "add",
        "--name",
        "x",
        "--role",
        "editor",
        "--towns",
        "999",
        store=store_path,
        check=False,
    )
    assert refused.returncode == 2 and "unknown town code" in refused.stderr
    missing = run("users", "disable", "nobody", store=store_path, check=False)
    assert missing.returncode == 2 and "no user named 'nobody'" in missing.stderr
