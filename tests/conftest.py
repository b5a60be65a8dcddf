"""Shared fixtures: the shipped catalog, a freshly seeded store, an app client, a live server."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from geo_service.api import create_app
from geo_service.settings import Settings
from geo_service.sources.catalog import Catalog, load_catalog
from geo_service.store import Store, open_store
from geo_service.store.seeding import seed_store

ROOT = Path(__file__).resolve().parent.parent


def eventually(check: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    """Wait until ``check()`` holds: a liveness bound, not a timing claim."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s:g} s: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


#: A PostgreSQL + PostGIS database the tests may use (``.ci/run`` starts one).
TEST_PG = os.environ.get("GEO_SERVICE_TEST_PG")


@pytest.fixture(params=["geopackage", "postgis"])
def empty_store(
    request: pytest.FixtureRequest, tmp_path: Path, catalog: Catalog
) -> Iterator[Store]:
    """Every store-dependent test runs on both backends: the embedded GeoPackage
    and a real PostGIS (a fresh schema per test, dropped afterwards)."""
    if request.param == "geopackage":
        store = open_store(tmp_path / "store.gpkg", catalog)
        yield store
        store.close()
        return
    store = open_store(_new_pg_location(_require_pg()), catalog)
    yield store
    store.drop()
    store.close()


@pytest.fixture
def store(empty_store: Store, catalog: Catalog) -> Store:
    seed_store(empty_store, catalog)
    return empty_store


def _require_pg() -> str:
    if not TEST_PG:
        if os.environ.get("CI") == "true":
            pytest.fail("GEO_SERVICE_TEST_PG is not set (CI=true: the PostGIS tests must run)")
        pytest.skip("no PostGIS database (set GEO_SERVICE_TEST_PG=postgresql://...)")
    return TEST_PG


def _new_pg_location(pg: str) -> str:
    import uuid

    separator = "&" if "?" in pg else "?"
    return f"{pg}{separator}schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def seeded_path(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path | str]:
    """A seeded store shared (read-only) by a module's API tests, on each
    backend in turn: a GeoPackage file, or a PostGIS URL with its own schema."""
    catalog = load_catalog()
    if request.param == "geopackage":
        location: Path | str = tmp_path_factory.mktemp("store") / "zhangdian.gpkg"
    else:
        location = _new_pg_location(_require_pg())
    store = open_store(location, catalog)
    seed_store(store, catalog)
    store.close()
    yield location
    if request.param == "postgis":
        store = open_store(location, catalog)
        store.drop()
        store.close()


@pytest.fixture(scope="module")
def client(seeded_path: Path | str) -> Iterator[TestClient]:
    app = create_app(Settings(store=str(seeded_path)))
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ConsoleOffice:
    """A real server over a seeded store with console users: what the
    console's browser tests sign in to."""

    base: str
    location: str
    folder: Path
    passwords: dict[str, str]

    def store(self) -> Store:
        return open_store(self.location, load_catalog())


@contextmanager
def console_office(
    backend: str, folder: Path, people: dict[str, tuple[str, list[str]]]
) -> Iterator[ConsoleOffice]:
    """A seeded store on ``backend`` (``geopackage`` or ``postgis``, its
    schema dropped afterwards) with ``people`` (name -> (role, towns)) as
    console users, served by a real uvicorn server. The per-address sign-in
    limit is off: a module signs in many times from 127.0.0.1."""
    from geo_service.services import accounts

    if backend == "geopackage":
        location = str(folder / "console.gpkg")
    else:
        location = _new_pg_location(_require_pg())
    store = open_store(location, load_catalog())
    seed_store(store, store.catalog)
    known = [town.id for town in store.all_features("towns")]
    passwords = {
        name: accounts.add_user(store, name, role, towns, known)
        for name, (role, towns) in people.items()
    }
    store.close()
    try:
        with running_server(
            folder, GEO_SERVICE_STORE=location, GEO_SERVICE_SIGN_IN_PER_MINUTE="0"
        ) as base:
            yield ConsoleOffice(base, location, folder, passwords)
    finally:
        if backend == "postgis":
            store = open_store(location, load_catalog())
            store.drop()
            store.close()


def sign_in(page, base: str, name: str, password: str) -> None:
    """Sign in through the console's sign-in page, as a person does."""
    page.goto(base + "/admin/login")
    page.get_by_label("用户名").fill(name)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()


@contextmanager
def running_server(
    folder: Path, *args: str, ca_file: Path | None = None, **env_extra: str
) -> Iterator[str]:
    """``geo-service serve`` as a real uvicorn process on a free loopback port,
    on a new store that the server seeds itself, as a user's first run does.
    With ``ca_file`` the server speaks HTTPS (``args`` give it a certificate
    that CA signed) and the base URL is ``https://``."""
    port = free_port()
    env = dict(os.environ, GEO_SERVICE_STORE=str(folder / "live.gpkg"))
    env.update(env_extra)
    # The server's output goes to a file: a pipe nobody reads fills up with
    # access-log lines and then blocks the server (after ~700 requests).
    log_path = folder / f"server-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "geo_service.cli", "serve", "--port", str(port), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    base = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a busy shared machine starts workers slowly
    try:
        while True:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")
                raise RuntimeError(f"server exited early:\n{output}")
            try:
                verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
                answer = httpx.get(f"{base}/conformance", timeout=1, verify=verify)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("live")) as base:
        yield base


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def seeded_server(request, tmp_path_factory) -> Iterator[str]:
    """A real uvicorn server over each backend, seeded by itself, shared
    (read-only) by a module's client tests."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "geopackage":
        with running_server(folder, GEO_SERVICE_STORE=str(folder / "server.gpkg")) as base:
            yield base
        return
    location = _new_pg_location(_require_pg())
    try:
        with running_server(folder, GEO_SERVICE_STORE=location) as base:
            yield base
    finally:
        store = open_store(location, load_catalog())
        store.drop()
        store.close()


@pytest.fixture(params=["geopackage", "postgis"])
def server_store(request, tmp_path) -> Iterator[dict[str, str]]:
    """Where a real server keeps its store (its environment): its own
    GeoPackage file, or its own PostGIS schema, dropped afterwards."""
    if request.param == "geopackage":
        yield {"GEO_SERVICE_STORE": str(tmp_path / "server.gpkg")}
        return
    location = _new_pg_location(_require_pg())
    yield {"GEO_SERVICE_STORE": location}
    store = open_store(location, load_catalog())
    store.drop()
    store.close()


#: A host name the test browser resolves to 127.0.0.1 (see ``browser``).
PLAIN_HTTP_HOST = "zhangdian.test"

#: Debian's Chromium, driven through Playwright (never a downloaded browser).
CHROMIUM = os.environ.get("GEO_SERVICE_CHROMIUM") or shutil.which("chromium")


def missing(reason: str) -> None:
    """A test's dependency is absent: skip it here, fail it in CI (CI=true)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium for the browser tests, one per test process."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed")
    if not CHROMIUM:
        missing("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        # PLAIN_HTTP_HOST reaches the test servers by a name that is not
        # loopback: a page there is not a secure context, as on a real phone.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", f"--host-resolver-rules=MAP {PLAIN_HTTP_HOST} 127.0.0.1"],
        )
        yield launched
        launched.close()


# -- the resident web map in Chromium (test_webmap_*.py) ------------------------


@dataclass
class Watched:
    """A page of the web map, with every request to another host aborted and
    counted (``outside``) and every console error and page error kept."""

    page: object
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Every request made to the service, in order.
    local: list[str] = field(default_factory=list)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"file", "data", "blob"} or parsed.hostname in {
        "127.0.0.1",
        "localhost",
        PLAIN_HTTP_HOST,
    }


@pytest.fixture
def open_map(browser) -> Iterator:
    """Opens the map at a URL in a new browser context (its size, a position
    the browser gives, zh-CN) once the page says it is ready."""
    contexts = []

    def opener(url: str, width: int = 1280, height: int = 800, position=None) -> Watched:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            locale="zh-CN",
            geolocation=position and {"longitude": position[0], "latitude": position[1]},
            permissions=["geolocation"] if position else [],
        )
        contexts.append(context)
        watched = Watched(context.new_page())

        def route(request_route):
            if _is_local(request_route.request.url):
                watched.local.append(request_route.request.url)
                request_route.continue_()
            else:
                watched.outside.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        watched.page.on(
            "console", lambda m: watched.errors.append(m.text) if m.type == "error" else None
        )
        watched.page.on("pageerror", lambda e: watched.errors.append(str(e)))
        watched.page.goto(url)
        watched.page.wait_for_selector("body[data-gs-ready]", timeout=30_000)
        assert watched.page.get_attribute("body", "data-gs-ready") == "1", watched.errors
        return watched

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory) -> Iterator[str]:
    """A server whose first bank has a phone number (the sample data has none
    it could verify), so the popup's tel: link is tested for real."""
    from geo_service.sources.catalog import ValidFeature, load_catalog
    from geo_service.store import open_store
    from geo_service.store.seeding import seed_store

    folder = tmp_path_factory.mktemp("phone")
    store = open_store(folder / "live.gpkg", load_catalog())
    seed_store(store, store.catalog)
    bank = store.query("green_channels", filters={"kind": ["bank"]}, limit=1).features[0]
    props = dict(bank.properties, phone="0533-2180000")
    store.write("green_channels", [ValidFeature(bank.id, props, bank.geometry)], actor="test")
    store.close()
    with running_server(folder) as base:
        yield base
