"""Property-based tests of the whole OpenAPI document with Schemathesis.

Every operation of /openapi.json is fuzzed twice: in-process against the ASGI
app, and over HTTP against a real uvicorn server (``running_server``). Both
run on a throwaway copy of a seeded store, because the write operations
really write; the store holds three towns of the shipped layers and their
sites (``FUZZ_TOWNS``), so that a valid request to the planner or the
printer takes a second, not half a minute. Schemathesis generates valid and
invalid requests (its examples, coverage and fuzzing phases) and runs every
check it has on each response: no server error, status codes, content types,
headers and bodies as documented, invalid data refused, valid data accepted,
a missing required header refused, undeclared methods answered 405 with
``Allow``, and, for the operations that need a token, that they refuse to
work without one or with a wrong one.

Writes are sent with an admin token for three generated requests in four; the
fourth goes as generated (no token, or a generated one), so refusals are
fuzzed too. The choice is a hash of the request, so a run is reproducible.
Generated requests never hold a feature's current ETag, so one flow of
successful changes (create, read, patch, replace, delete) follows, held to
the same checks.

Nothing is excluded by path. Where the OpenAPI document cannot state a rule,
the check of valid data is switched off for that operation, with the reason
next to it (``_NOT_STATABLE``): e.g. which kinds a filter may name depends on
the collection in the path, so a schema-valid request may rightly get a 400.
Below the fuzz runs: nasty requests leak no internals, and every list
parameter is bounded.
"""

from __future__ import annotations

import collections
import copy
import json
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from geo_service.api import create_app
from geo_service.services.access import issue_token
from geo_service.services.queries import MAX_LIST_VALUES
from geo_service.settings import Settings
from geo_service.sources.catalog import default_layers_dir, load_catalog
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import running_server

#: Fixed, so that a failure found once is found again on every run.
SEED = 20_261_129
#: Generated requests per operation in the fuzzing phase (the examples and
#: coverage phases add their own deterministic cases on top).
MAX_EXAMPLES = 25
#: Operations that print a PDF or compute coverage take a second or more per
#: valid request (a location problem up to ten), so they get a few random
#: valid requests only; their invalid ones, answered before any work, are
#: still all sent (the coverage phase's negative cases).
_SLOW = {
    "^/print/": 2,
    "^/coverage/(sites|map)$": 2,
    "^/coverage$": 6,
    "^/processes/{process_id}/execution$": 4,
}
#: The fuzz store holds these towns of the shipped layers, and the sites in
#: them: every layer keeps records, and the planner's demand grid and the
#: atlas shrink to a tenth of the district's.
FUZZ_TOWNS = {"370303002", "370303004", "370303006"}

#: Rules the OpenAPI document cannot state, so that a schema-valid request may
#: rightly be refused: ``positive_data_acceptance`` is off for these only.
_NOT_STATABLE = {
    # Filters: the kinds and properties a layer has depend on the collection
    # in the path (``kind=hospital`` is a 400 on ``stations``).
    "^GET /collections/{collectionId}/items$": "values depend on the collection",
    # Writes: a feature's properties, kind and position must fit the layer in
    # the path and lie inside a town polygon.
    "^(POST|PUT|PATCH) /collections/{collectionId}/items": "the body depends on the layer",
    "^POST /collections/{collectionId}/import$": "the file's rows are checked against it",
    # lon/lat or address (not both); kinds of the chosen layers; open_now or open_at.
    "^GET /nearest$": "parameters depend on each other",
    "^GET /print/nearest.pdf$": "lon/lat or address, not both",
    "^GET /coverage": "kinds must belong to the chosen layers",
    # A tile's x and y run to 2^z - 1: bounds that depend on z.
    "^GET /collections/{collectionId}/tiles/": "x and y depend on the zoom",
    # A comparison date after the report's own date (as_of, default today).
    "^GET /supervision": "since must not be after as_of",
    # One site's state (id) needs exactly one layer.
    "^GET /open-state$": "id needs exactly one layer",
    # Each process takes its own inputs (GET /processes/{id} states them).
    "^POST /processes/{process_id}/execution$": "the inputs depend on the process",
}

#: Statuses a valid request may get besides 2xx, where no schema can help:
#: 412 (the If-Match given is not the feature's current version).
_POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
#: RFC 6585: a change without If-Match is 428 Precondition Required.
_MISSING_HEADER_STATUSES = ["400", "401", "403", "406", "415", "422", "428"]

LEAK_MARKERS = ("Traceback", "/work/", "site-packages", '.py"')

# The import takes GeoPackage and XLSX files: sent as the bytes generated.
schemathesis.serializer.alias(
    [
        "application/geopackage+sqlite3",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ],
    "application/octet-stream",
)


def _config() -> SchemathesisConfig:
    operations: list[dict] = [
        {
            "include-path-regex": path,
            "generation": {"max-examples": n},
            "phases": {"coverage": {"generation": {"mode": "negative"}}},
        }
        for path, n in _SLOW.items()
    ]
    operations += [
        {
            # One key: separate include keys would match either, not both.
            "include-name-regex": label.replace("{", "\\{").replace("}", "\\}"),
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
        for label in _NOT_STATABLE
    ]
    # The shared pages take any parameter a link adds, with any value but NUL,
    # which the guard refuses in every URL (the free-form parameter cannot
    # say so); test_no_answer_leaks_internals sends NUL there.
    operations.append({"include-name-regex": "^GET /(map)?$", "generation": {"allow-x00": False}})
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
            },
            "checks": {
                "positive_data_acceptance": {"expected-statuses": _POSITIVE_STATUSES},
                "missing_required_header": {"expected-statuses": _MISSING_HEADER_STATUSES},
            },
            "operations": operations,
        }
    )


@dataclass
class Target:
    """One system under test: how to reach it, its token and what the run saw."""

    name: str
    call_kwargs: dict = field(default_factory=dict)
    token: str = ""
    cases: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    checks: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    def schema(self, app: object = None) -> schemathesis.BaseSchema:
        """The document under test, counting the checks run on each response."""
        schema = schemathesis.openapi.from_dict(copy.deepcopy(SPEC), config=_config())
        schema.app = app

        @schema.hook
        def after_validate(context, case, response, results) -> None:
            self.checks.update(r.name for r in results)
            self.failures += [
                f"{case.operation.label}: {r.name}" for r in results if r.failure is not None
            ]

        return schema

    def summary(self) -> str:
        fuzzed = {label: n for label, n in self.cases.items() if not label.endswith("(flow)")}
        flow = sum(self.cases.values()) - sum(fuzzed.values())
        return (
            f"{self.name}: {len(fuzzed)} operations, {sum(fuzzed.values())} generated test "
            f"cases (+{flow} flow steps), "
            f"{self.checks.total()} checks run, {len(self.failures)} failed; statuses "
            f"{dict(sorted(self.statuses.items()))}; checks {dict(sorted(self.checks.items()))}"
        )


#: The OpenAPI document, as the app serves it at /openapi.json (building it
#: opens no store). The live server's copy is compared with it.
SPEC = create_app(Settings(store="unused.gpkg")).openapi()
ASGI = Target("asgi")
LIVE = Target("live")


def _anonymous(case) -> bool:
    """One generated request in four is sent without our token (a stable choice)."""
    key = repr((case.method, case.path_parameters, case.query, case.body)).encode()
    return zlib.crc32(key) % 4 == 0


def _call_and_validate(case, target: Target) -> None:
    target.cases[case.operation.label] += 1
    headers = None
    if case.operation.definition.raw.get("security") and not _anonymous(case):
        headers = {"Authorization": f"Bearer {target.token}"}
    response = case.call(headers=headers, **target.call_kwargs)
    target.statuses[response.status_code] += 1
    if response.status_code >= 400:
        # A marker the request itself carried (a feature id "Traceback") may
        # come back in `instance` or `detail`; anything else is a leak.
        sent = unquote(str(response.request.url)) + str(response.request.body)
        leaked = [m for m in LEAK_MARKERS if m in response.text and m not in sent]
        assert not leaked, f"{case.operation.label} answered {response.text[:500]}"
    # The same server for the checks that send requests of their own (the
    # same request without a token, with a wrong one, other methods).
    case.validate_response(
        response, headers=headers, transport_kwargs=dict(target.call_kwargs) or None
    )


# -- stores ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def layers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped layers folder, cut to ``FUZZ_TOWNS`` and their sites."""
    folder = tmp_path_factory.mktemp("fuzz-layers")
    shutil.copytree(default_layers_dir(), folder, dirs_exist_ok=True)
    for path in folder.glob("*.geojson"):
        if path.stem in {"district", "context"}:  # one outline; context is empty as shipped
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        key = "id" if path.stem == "towns" else "town_code"
        data["features"] = [f for f in data["features"] if f["properties"][key] in FUZZ_TOWNS]
        assert data["features"], path.stem
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def seeded_file(tmp_path_factory: pytest.TempPathFactory, layers_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("fuzz-seed") / "seeded.gpkg"
    catalog = load_catalog(layers_dir)
    store = open_store(path, catalog)
    seed_store(store, catalog)
    store.close()
    return path


def _throwaway_store(seeded: Path, path: Path, layers: Path) -> str:
    """A copy of the seeded store with a fresh admin token in it; the token."""
    shutil.copyfile(seeded, path)
    catalog = load_catalog(layers)
    store = open_store(path, catalog)
    try:
        towns = [town.id for town in store.all_features("towns")]
        return issue_token(store, "fuzz-admin", "admin", [], towns)
    finally:
        store.close()


# -- in-process: the ASGI app ---------------------------------------------------


@pytest.fixture(scope="module")
def asgi_target(
    tmp_path_factory: pytest.TempPathFactory, seeded_file: Path, layers_dir: Path
) -> Iterator[Target]:
    path = tmp_path_factory.mktemp("fuzz-asgi") / "fuzz.gpkg"
    ASGI.token = _throwaway_store(seeded_file, path, layers_dir)
    # Thousands of requests from one client: no rate limit (it would answer 429).
    APP.app = create_app(Settings(store=str(path), layers_dir=layers_dir, rate_heavy_per_minute=0))
    yield ASGI
    print(ASGI.summary())
    # Schemathesis keeps an app's lifespan running for the process; end it
    # so the store is closed now.
    asgi.shutdown_lifespans()


class _AppSlot:
    """The ASGI app Schemathesis sends to, decided when the fixture has made
    the store (the schema, and so its app, exist from collection on)."""

    app: object = None

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


APP = _AppSlot()
in_process = ASGI.schema(APP)


@in_process.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_asgi_app_answers_as_its_openapi_says(case, asgi_target: Target) -> None:
    _call_and_validate(case, asgi_target)


def _etag(response) -> str:
    return response.headers["etag"][0]  # Schemathesis keeps header values as lists


def test_a_write_flow_answers_as_documented(asgi_target: Target) -> None:
    """The successful changes, which generated requests cannot reach (they
    never hold a feature's current ETag): create, read, patch, replace and
    delete one feature as the OpenAPI links describe, every answer held to
    every check as above."""
    schema = in_process
    collection = {"collectionId": "stations"}
    body = SPEC["paths"]["/collections/{collectionId}/items"]["post"]["requestBody"]
    example = body["content"]["application/geo+json"]["example"]
    # Named apart from the example, which the fuzz run may have created already.
    feature = {**example, "properties": {**example["properties"], "name": "示例：写入流程驿站"}}

    def step(path: str, method: str, expected: int, **case_kwargs):
        case = schema[path][method].Case(**case_kwargs)
        headers = {"Authorization": f"Bearer {ASGI.token}"} | case_kwargs.get("headers", {})
        response = case.call(headers=headers)
        ASGI.cases[f"{case.operation.label} (flow)"] += 1
        ASGI.statuses[response.status_code] += 1
        assert response.status_code == expected, response.text
        case.validate_response(response, headers=headers)
        return response

    item = "/collections/{collectionId}/items/{featureId}"
    created = step(
        "/collections/{collectionId}/items",
        "POST",
        201,
        path_parameters=collection,
        body=feature,
        media_type="application/geo+json",
    )
    where = {**collection, "featureId": created.json()["id"]}
    read = step(item, "GET", 200, path_parameters=where)
    patched = step(
        item,
        "PATCH",
        200,
        path_parameters=where,
        headers={"If-Match": _etag(read)},
        body={"properties": {"phone": "0533-2181234"}},
        media_type="application/merge-patch+json",
    )
    stale = {"If-Match": _etag(read)}
    geojson = "application/geo+json"
    step(item, "PUT", 412, path_parameters=where, headers=stale, body=feature, media_type=geojson)
    replaced = step(
        item,
        "PUT",
        200,
        path_parameters=where,
        headers={"If-Match": _etag(patched)},
        body=feature,
        media_type="application/geo+json",
    )
    step(item, "DELETE", 204, path_parameters=where, headers={"If-Match": _etag(replaced)})
    step(item, "GET", 404, path_parameters=where)


# -- over HTTP: a real uvicorn server -------------------------------------------


@pytest.fixture(scope="module")
def live_target(
    tmp_path_factory: pytest.TempPathFactory, seeded_file: Path, layers_dir: Path
) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzz-live")
    # The server opens the store it finds there (seeded, with our token).
    LIVE.token = _throwaway_store(seeded_file, folder / "live.gpkg", layers_dir)
    with running_server(
        folder, GEO_SERVICE_LAYERS_DIR=str(layers_dir), GEO_SERVICE_RATE_HEAVY_PER_MINUTE="0"
    ) as base:
        # The document fuzzed is the one this server serves.
        assert httpx.get(f"{base}/openapi.json", timeout=30).json() == SPEC
        LIVE.call_kwargs = {"base_url": base}
        yield LIVE
        print(LIVE.summary())


over_http = LIVE.schema()


@pytest.mark.server
@over_http.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_live_server_answers_as_its_openapi_says(case, live_target: Target) -> None:
    _call_and_validate(case, live_target)


# -- what a nasty request gets back ---------------------------------------------

NASTY = [
    "/map?from=singlemessage%00",
    "/?f=json&%00=1",
    "/collections/stations/items/%00",
    "/collections/stations/items?name=%00",
    "/collections/stations/items/%F0%9F%92%A5%E2%80%AE../../etc/passwd",
    "/collections/stations/items?limit=99999999999999999999999999",
    "/collections/stations/items?bbox=1e999,-1e999,1e999,1e999",
    "/nearest?lon=118&lat=36.8&k=" + "9" * 400,
    "/nearest?lon=118&lat=36.8&open_at=0001-01-01T00:00%2B14:00",
    "/nearest?lon=118&lat=36.8&layers=" + ",".join(["stations"] * 51),
    "/audit?since=0001-01-01T00:00:00%2B05:00",
    "/print/towns/%C3%A9.pdf",
    "/collections/stations/tiles/1/99999999999999999999/0.mvt",
    "/coverage?radius=nan",
    "/geocode?q=" + "%E5%BC%A0" * 500,
]


def test_no_answer_leaks_internals(tmp_path: Path, seeded_file: Path, layers_dir: Path) -> None:
    """Nasty requests get a 4xx problem, and no error body, 4xx or 5xx, shows
    a stack trace, a file path or a module name."""
    path = tmp_path / "fuzz.gpkg"
    token = _throwaway_store(seeded_file, path, layers_dir)
    with TestClient(create_app(Settings(store=str(path), layers_dir=layers_dir))) as client:
        answers = [client.get(url) for url in NASTY]
        answers.append(
            client.post(
                "/collections/stations/items",
                content=b'{"type": "Feature", "properties": {"name": "\\u0000"}, "geometry": 1}',
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        )
        answers.append(
            client.post(
                "/collections/stations/import",
                content=b"\xff\xfe garbage \x00",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
            )
        )
    for response in answers:
        where = f"{response.request.method} {response.request.url}: {response.text[:300]}"
        assert 400 <= response.status_code < 500, where
        assert response.headers["content-type"] == "application/problem+json", where
        for marker in LEAK_MARKERS:
            assert marker not in response.text, where


#: A bad parameter each handler reads after its lists.
_STOPPERS = {"/nearest": "max_distance=-1", "/coverage": "radius=x", "/collections/": "zz=1"}


def test_every_list_parameter_is_bounded(
    tmp_path: Path, seeded_file: Path, layers_dir: Path
) -> None:
    """More than ``MAX_LIST_VALUES`` values in any comma-separated or repeated
    list parameter is a 400 naming it, before any work is done."""
    path = tmp_path / "fuzz.gpkg"
    _throwaway_store(seeded_file, path, layers_dir)
    many = MAX_LIST_VALUES + 1
    lists = [
        ("/nearest?lon=118.05&lat=36.8", "layers", "stations"),
        ("/nearest?lon=118.05&lat=36.8", "kind", "bank"),
        ("/nearest?lon=118.05&lat=36.8", "services", "discount"),
        ("/nearest?lon=118.05&lat=36.8", "status", "open"),
        ("/coverage?", "layers", "stations"),
        ("/coverage?", "kinds", "town_station"),
        ("/coverage/sites?", "layers", "stations"),
        ("/coverage/sites?", "kinds", "town_station"),
        ("/coverage/map?", "layers", "stations"),
        ("/coverage/map?", "kinds", "town_station"),
        ("/print/atlas.pdf?", "layers", "stations"),
        ("/print/towns/370303002.pdf?", "layers", "stations"),
        ("/collections/stations/items?", "kind", "town_station"),
        ("/collections/stations/items?", "town_code", "370303002"),
        ("/collections/stations/items?", "status", "open"),
        ("/collections/stations/items?", "services", "discount"),
        ("/collections/towns/items?", "id", "370303002"),
        ("/open-state?", "layers", "stations"),
    ]
    with TestClient(create_app(Settings(store=str(path), layers_dir=layers_dir))) as client:
        for base, name, value in lists:
            separator = "" if base.endswith("?") else "&"
            for query in (
                f"{name}=" + ",".join([value] * many),
                "&".join([f"{name}={value}"] * many),
            ):
                response = client.get(f"{base}{separator}{query}")
                assert response.status_code == 400, (base, name, response.text[:200])
                assert response.json()["parameter"] == name, (base, name, response.text[:200])
            # At the limit the same list passes (the bound is not off by one);
            # a bad parameter read after it then stops the request before any
            # work (printing reads its lists last, so it is left out here).
            stopper = next((v for k, v in _STOPPERS.items() if base.startswith(k)), None)
            if stopper:
                at_limit = ",".join([value] * MAX_LIST_VALUES)
                response = client.get(f"{base}{separator}{name}={at_limit}&{stopper}")
                assert response.status_code == 400, (base, name, response.text)
                assert response.json()["parameter"] == stopper.split("=")[0], response.text


def test_no_server_error_over_http_for_nasty_bytes(
    tmp_path: Path, seeded_file: Path, layers_dir: Path
) -> None:
    """What a client library would not send: raw bytes and odd methods, on the wire."""
    _throwaway_store(seeded_file, tmp_path / "live.gpkg", layers_dir)
    with (
        running_server(tmp_path, GEO_SERVICE_LAYERS_DIR=str(layers_dir)) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        for method, url in [
            ("GET", "/collections/stations/items/%00%ff"),
            ("TRACE", "/collections"),
            ("DELETE", "/collections"),
            ("GET", "/nearest?lon=%ff&lat=%fe"),
        ]:
            response = client.request(method, url)
            assert 400 <= response.status_code < 500, (method, url, response.text)
            if response.status_code == 405:
                # Every method of the path (GET /collections is its only one).
                assert response.headers["allow"] == "GET, HEAD", (method, url)
            for marker in LEAK_MARKERS:
                assert marker not in response.text, (method, url, response.text)
