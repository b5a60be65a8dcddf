"""HTTP done properly, on both backends: HEAD wherever GET, Vary on negotiated
resources, 304 for a current ETag, Connection: close after a 500, deep JSON
refused by name, links and QR codes never taken from the Host header, a
BD-09 world box that holds the world, pg_dump without the password on its
command line, and per-client rate limits (issue 15)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from geo_service.api import create_app
from geo_service.api.guard import TokenBuckets, client_key
from geo_service.api.params import MAX_JSON_DEPTH, load_json_body
from geo_service.errors import InvalidParameter
from geo_service.services import printing
from geo_service.services.access import issue_token
from geo_service.settings import Settings
from geo_service.store import open_store
from geo_service.store.postgis import PostGISStore
from tests.conftest import _new_pg_location, _require_pg, free_port
from tests.hostile import DEEP_JSON

SITE = "st-town-mashang"  # 马尚街道 service station, in the shipped sample
ITEM = f"/collections/stations/items/{SITE}"
PARK = "370303002"  # 公园街道
PUBLIC = "https://map.zhangdian.example.gov.cn"
EVIL = "evil.example"
NEGOTIATED = [
    "/",
    "/conformance",
    "/collections",
    "/collections/stations",
    "/collections/stations/items?limit=3",
    ITEM,
]


def _vary(response) -> list[str]:
    return [v.strip() for v in response.headers.get("vary", "").split(",")]


def _hrefs(value) -> list[str]:
    """Every ``href`` anywhere in a JSON document."""
    if isinstance(value, dict):
        found = [value["href"]] if isinstance(value.get("href"), str) else []
        return found + [h for v in value.values() for h in _hrefs(v)]
    if isinstance(value, list):
        return [h for v in value for h in _hrefs(v)]
    return []


def _token(client: TestClient, name: str = "office") -> dict[str, str]:
    store = client.app.state.runtime.store
    known = [town.id for town in store.all_features("towns")]
    token = issue_token(store, f"{name}-{time.monotonic_ns()}", "admin", [], known)
    return {"Authorization": f"Bearer {token}"}


# -- HEAD -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/collections", ITEM, "/collections/stations/items"])
def test_curl_dash_capital_i_gets_the_headers_of_get_without_the_body(client, path):
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200, head.text
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "vary", "x-content-type-options"):
        assert head.headers.get(name) == got.headers.get(name), name
    if path == ITEM:
        assert head.headers["ETag"] == got.headers["ETag"]  # the README's recipe


def test_head_where_there_is_no_get_is_a_405_naming_what_is_allowed(client):
    head = client.head("/processes/print-atlas/execution")
    assert head.status_code == 405 and head.content == b""
    assert head.headers["Allow"] == "POST"
    assert "HEAD" in client.delete("/collections").headers["Allow"].split(", ")


# -- Vary -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", NEGOTIATED)
@pytest.mark.parametrize("accept", ["application/json", "text/html", "*/*"])
def test_every_resource_answering_json_or_html_by_accept_says_vary_accept(client, path, accept):
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert "Accept" in _vary(response)


def test_an_html_view_asked_by_name_says_vary_accept_too(client):
    for path in ("/?f=html", "/collections?f=html", f"{ITEM}?f=html"):
        response = client.get(path)
        assert response.status_code == 200 and "Accept" in _vary(response), path


# -- If-None-Match --------------------------------------------------------------------


def test_a_client_with_the_current_copy_gets_304_and_with_an_old_one_the_new_copy(client):
    first = client.get(ITEM)
    etag = first.headers["ETag"]
    for header in (etag, f"W/{etag}", f'"older", {etag}', "*"):
        same = client.get(ITEM, headers={"If-None-Match": header})
        assert same.status_code == 304, header
        assert same.content == b"" and same.headers["ETag"] == etag
        assert "Accept" in _vary(same)
    # The HTML view carries no ETag: the condition does not apply to it.
    page = client.get(f"{ITEM}?f=html", headers={"If-None-Match": etag})
    assert page.status_code == 200 and "<html" in page.text.lower()

    # Someone edits the site: the copy the client holds is stale.
    changed = client.patch(
        ITEM,
        json={"properties": {"phone": f"0533-{time.monotonic_ns() % 10_000_000:07d}"}},
        headers={**_token(client), "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    fresh = client.get(ITEM, headers={"If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == changed.headers["ETag"] != etag
    assert fresh.json()["properties"]["phone"] == changed.json()["properties"]["phone"]
    assert client.get(ITEM, headers={"If-None-Match": '"nothing-like-it"'}).status_code == 200


# -- a 500 closes the connection, and says so -----------------------------------------


@pytest.fixture(scope="module")
def real_server(seeded_path: Path | str) -> Iterator[int]:
    """The app under a real uvicorn on loopback, with one route that fails."""
    app = create_app(Settings(store=str(seeded_path), job_workers=1))

    def broken() -> None:
        raise RuntimeError("a bug nobody has found yet")

    app.add_api_route("/test-broken", broken)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def _exchange(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send one request; read its head, and its body by Content-Length."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"connection closed mid-answer: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        part = sock.recv(65536)
        assert part
        body += part
    return head, body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_after_an_unexpected_error_the_server_says_connection_close_and_closes(real_server):
    with socket.create_connection(("127.0.0.1", real_server), timeout=30) as sock:
        # A healthy answer keeps the connection open for the next request.
        head, _ = _exchange(sock, b"GET /conformance HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        head, body = _exchange(sock, b"GET /test-broken HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500")
        assert b"connection: close" in head.lower()
        problem = orjson.loads(body)
        assert problem["status"] == 500 and "bug" not in problem["detail"]  # nothing leaks
        assert _closed(sock)


def test_head_on_a_real_server_sends_the_headers_only(real_server):
    with socket.create_connection(("127.0.0.1", real_server), timeout=30) as sock:
        sock.sendall(f"HEAD {ITEM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and b"etag:" in head.lower()
        assert head.endswith(b"\r\n\r\n")  # nothing after the headers
        # The same connection answers the next request: no body was left in between.
        head, _ = _exchange(sock, b"GET /conformance HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")


# -- deep JSON ------------------------------------------------------------------------


def test_json_nesting_is_bounded_and_brackets_inside_text_do_not_count():
    def nested(depth: int) -> bytes:
        return b"[" * depth + b"]" * depth

    assert load_json_body(nested(MAX_JSON_DEPTH)) is not None
    for depth in (MAX_JSON_DEPTH + 1, 400, 1000, 1025, 5000):
        with pytest.raises(InvalidParameter) as refused:
            load_json_body(nested(depth))
        assert refused.value.parameter == "body" and "nested" in refused.value.message
    text = orjson.dumps({"name": '[{"\\' + "[" * 100, "list": [[1, 2]] * 50})
    assert load_json_body(text)["list"][0] == [1, 2]
    with pytest.raises(InvalidParameter, match="not valid JSON"):
        load_json_body(b'{"name": ')


def _deep_feature() -> bytes:
    inner = "[" * 500 + "]" * 500
    return (
        '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [118.04, 36.81]},'
        f' "properties": {{"name": "深", "services": {inner}}}}}'
    ).encode()


def test_a_deeply_nested_body_to_the_editing_routes_is_a_400_naming_the_body(client):
    office = _token(client)
    count = client.get("/collections/stations").json()["numberOfFeatures"]
    etag = client.get(ITEM).headers["ETag"]
    attempts = [
        ("POST", "/collections/stations/items", DEEP_JSON, "application/geo+json", {}),
        ("POST", "/collections/stations/items", _deep_feature(), "application/geo+json", {}),
        ("PUT", ITEM, _deep_feature(), "application/geo+json", {"If-Match": etag}),
        ("PATCH", ITEM, DEEP_JSON, "application/merge-patch+json", {"If-Match": etag}),
    ]
    for method, path, body, media, extra in attempts:
        answer = client.request(
            method, path, content=body, headers={**office, **extra, "Content-Type": media}
        )
        assert answer.status_code == 400, (method, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["parameter"] == "body"
    assert client.get("/collections/stations").json()["numberOfFeatures"] == count
    assert client.get(ITEM).headers["ETag"] == etag  # nothing was written


@pytest.mark.parametrize(
    "body",
    [
        DEEP_JSON,
        '{"inputs": {"size": ' + DEEP_JSON + "}}",
        '{"inputs": {"layers": ["stations"]}, "outputs": ' + '{"a": ' * 600 + "1" + "}" * 601,
    ],
)
def test_a_deeply_nested_execute_request_is_a_400_naming_the_body(client, body):
    answer = client.post(
        "/processes/print-atlas/execution",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["parameter"] == "body"


# -- links and QR codes never come from Host -------------------------------------------


@pytest.fixture(scope="module")
def public(seeded_path: Path | str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(store=str(seeded_path), public_url=PUBLIC))) as client:
        yield client


LINKED = ["/", "/collections", "/collections/stations", "/collections/stations/items?limit=5"]
LINKED += [ITEM, "/processes", "/processes/print-town"]


@pytest.mark.parametrize("path", LINKED)
def test_a_forged_host_header_never_reaches_a_link(client, public, path):
    forged = {"Host": EVIL, "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "gopher"}
    relative = client.get(path, headers=forged)
    assert relative.status_code == 200, relative.text
    assert EVIL not in relative.text and "gopher" not in relative.text
    hrefs = _hrefs(relative.json())
    assert hrefs and all(h.startswith("/") for h in hrefs), hrefs
    absolute = public.get(path, headers=forged)
    assert EVIL not in absolute.text
    assert all(h.startswith(f"{PUBLIC}/") for h in _hrefs(absolute.json()))


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost:8123", "http://localhost:8123"),
        ("LOCALHOST", "http://LOCALHOST"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("localhost.evil.example:8000", ""),
        ("127.0.0.1.evil.example", ""),
        ("127.0.0.1:80@evil.example", ""),
        ("[::1]evil", ""),
        ("192.168.1.20:8000", ""),
    ],
)
def test_links_are_absolute_for_a_client_on_this_machine_only(client, host, base):
    """A loopback Host can only point links back at this machine, so a local
    client (QGIS 3.22 needs absolute links) gets them; any other Host gets
    links relative to itself."""
    hrefs = _hrefs(client.get("/collections", headers={"Host": host}).json())
    assert hrefs
    if base:
        assert all(h.startswith(f"{base}/") for h in hrefs), hrefs
    else:
        assert all(h.startswith("/") for h in hrefs), hrefs


def test_the_printed_qr_codes_point_at_the_public_url_whatever_the_host(public, client):
    forged = {"Host": EVIL}
    started = public.post(
        "/processes/print-atlas/execution",
        json={"inputs": {"layers": ["stations"]}},
        headers={**forged, "Prefer": "respond-async"},
    )
    assert started.status_code == 201, started.text
    assert started.headers["Location"].startswith(f"{PUBLIC}/jobs/")
    printed = public.get(f"/print/towns/{PARK}.pdf", params={"layers": "stations"}, headers=forged)
    assert printed.status_code == 200 and printed.content.startswith(b"%PDF-")
    public.delete(started.headers["Location"].removeprefix(PUBLIC))

    # Printed QR codes come from the settings alone: no job records the
    # request's Host, and the base the workers print with is the public URL.
    jobs = public.app.state.runtime.store.jobs(1000)
    assert jobs and not any(EVIL in (job.inputs or "") for job in jobs)
    assert printing.base_url(public.app.state.runtime) == PUBLIC

    # Without public_url: the configured address, never the client's Host.
    rt = client.app.state.runtime
    settings = rt.settings
    assert printing.base_url(rt) == f"http://{settings.host}:{settings.port}"


# -- a BD-09 world box ------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["stations", "green_channels", "towns"])
@pytest.mark.parametrize("bbox_crs", ["bd09", "gcj02", "wgs84"])
def test_a_whole_world_box_in_any_coordinate_system_holds_every_feature(client, layer, bbox_crs):
    total = client.get(f"/collections/{layer}").json()["numberOfFeatures"]
    assert total > 0
    for bbox in ("-180,-90,180,90", "-180,-90,0,180,90,100"):
        answer = client.get(
            f"/collections/{layer}/items",
            params={"bbox": bbox, "bbox-crs": bbox_crs, "limit": 10_000},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["numberMatched"] == total, (bbox, bbox_crs)


def test_a_small_baidu_box_around_a_site_still_finds_it(client):
    site = client.get(ITEM, params={"crs": "bd09"}).json()
    lon, lat = site["geometry"]["coordinates"]
    box = f"{lon - 0.0005},{lat - 0.0005},{lon + 0.0005},{lat + 0.0005}"
    found = client.get(
        "/collections/stations/items", params={"bbox": box, "bbox-crs": "bd09"}
    ).json()
    assert SITE in {f["id"] for f in found["features"]}
    # The same box read as WGS-84 misses it: Baidu's offset is hundreds of metres.
    missed = client.get("/collections/stations/items", params={"bbox": box}).json()
    assert SITE not in {f["id"] for f in missed["features"]}


# -- pg_dump and the password -----------------------------------------------------------


SECRET = "s3cr:et\\pw"


def _fake_pg_store(url: str) -> PostGISStore:
    store = PostGISStore.__new__(PostGISStore)  # no connection needed to build the command
    store.dsn, store.schema = url, "t_backup"
    return store


def test_pg_dump_never_sees_the_password_on_its_command_line(tmp_path, monkeypatch):
    seen: dict = {}

    def fake_run(argv, **kwargs):
        env = kwargs["env"]
        seen["argv"], seen["env"] = argv, env
        passfile = Path(env["PGPASSFILE"])
        seen["mode"] = passfile.stat().st_mode & 0o777
        seen["passfile"] = passfile.read_text()
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")
    url = "postgresql://geo:s3cr%3Aet%5Cpw@db.example:5432/geo?application_name=x"
    _fake_pg_store(url).backup(tmp_path / "out.dump")

    assert not any("s3cr" in part for part in seen["argv"])
    assert seen["argv"][0] == "pg_dump" and "--schema=t_backup" in seen["argv"]
    dbname = seen["argv"][seen["argv"].index("--dbname") + 1]
    assert "password" not in dbname and "host=db.example" in dbname and "user=geo" in dbname
    assert seen["mode"] == 0o600
    assert seen["passfile"] == "*:*:*:*:s3cr\\:et\\\\pw\n"  # ':' and '\' escaped
    assert "PGPASSWORD" not in seen["env"]  # it would win over the URL's password
    assert not Path(seen["env"]["PGPASSFILE"]).exists()  # gone after the run


def test_a_real_postgis_backup_works_with_the_password_kept_off_the_command_line(
    catalog, tmp_path, monkeypatch
):
    # pg_dump backs up PostGIS only (the GeoPackage copies itself): no store
    # parameter, a PostGIS schema of its own.
    store = open_store(_new_pg_location(_require_pg()), catalog)
    try:
        password = conninfo_to_dict(store.dsn).get("password")
        assert password, (
            "the test database URL must carry a password for this test to mean anything"
        )
        commands: list[list[str]] = []
        real_run = subprocess.run

        def recording_run(argv, **kwargs):
            commands.append(list(argv))
            return real_run(argv, **kwargs)

        monkeypatch.setattr(subprocess, "run", recording_run)
        monkeypatch.delenv("PGPASSWORD", raising=False)
        target = tmp_path / "backup.dump"
        store.backup(target)
        assert target.stat().st_size > 0
        (argv,) = commands
        dbname = argv[argv.index("--dbname") + 1]
        assert f":{password}@" not in " ".join(argv) and "password" not in dbname
        listing = real_run(["pg_restore", "--list", str(target)], capture_output=True, text=True)
        assert listing.returncode == 0 and "stations" in listing.stdout
    finally:
        store.drop()
        store.close()


# -- rate limits ------------------------------------------------------------------------


def _limited(seeded_path, **settings) -> TestClient:
    # No lifespan: refused requests never reach a route, and the rest here need no store.
    return TestClient(create_app(Settings(store=str(seeded_path), **settings)))


def _heavy(client: TestClient, forwarded: str | None = None):
    headers = {"Content-Type": "application/json"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    # An unknown process: refused at once (404), yet it is a heavy request all the same.
    return client.post("/processes/print-moon/execution", content=b"{}", headers=headers)


def test_a_client_past_its_heavy_rate_waits_and_others_are_not_held_up(seeded_path):
    proxied = _limited(
        seeded_path,
        rate_heavy_per_minute=3,
        rate_heavy_burst=3,
        forwarded_allow_ips=["testclient"],  # the test client plays the proxy
    )
    for _ in range(3):
        assert _heavy(proxied, "203.0.113.5").status_code == 404
    refused = _heavy(proxied, "203.0.113.5")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.json()["status"] == 429 and "try again" in refused.json()["detail"]
    assert refused.headers["x-content-type-options"] == "nosniff"  # the wall's headers too
    for path in ("/print/atlas.pdf", "/coverage", "/collections/stations/import"):
        method = "POST" if path.endswith("import") else "GET"
        answer = proxied.request(method, path, headers={"X-Forwarded-For": "203.0.113.5"})
        assert answer.status_code == 429, path
    # Light requests are not heavy ones; another client has its own bucket.
    assert proxied.get("/conformance", headers={"X-Forwarded-For": "203.0.113.5"}).is_success
    assert _heavy(proxied, "203.0.113.6").status_code == 404
    # A proxy's own chain: the client is the last address the trusted proxy did not add.
    assert _heavy(proxied, "198.51.100.1, 203.0.113.7").status_code == 404


def test_without_a_trusted_proxy_x_forwarded_for_changes_nothing(seeded_path):
    direct = _limited(seeded_path, rate_heavy_per_minute=2, rate_heavy_burst=2)
    assert _heavy(direct, "203.0.113.5").status_code == 404
    assert _heavy(direct, "203.0.113.6").status_code == 404
    # A new X-Forwarded-For each time is still the same client.
    assert _heavy(direct, "203.0.113.7").status_code == 429
    other = TestClient(direct.app, client=("192.0.2.10", 40000))
    assert _heavy(other).status_code == 404  # another address: its own bucket


def test_the_looser_limit_on_everything_and_head_answers_alike(seeded_path):
    busy = _limited(seeded_path, rate_per_minute=2, rate_burst=2, rate_heavy_per_minute=0)
    assert busy.get("/conformance").status_code == 200
    assert busy.head("/conformance").status_code == 200
    refused = busy.head("/conformance")
    assert refused.status_code == 429 and refused.content == b""
    assert "Retry-After" in refused.headers
    # A CORS preflight is not counted, and costs the client nothing.
    assert busy.options("/conformance").status_code != 429
    unlimited = _limited(seeded_path, rate_heavy_per_minute=0)
    assert all(_heavy(unlimited).status_code == 404 for _ in range(40))


def test_the_heavy_limit_is_on_by_default_and_the_looser_one_off(seeded_path):
    settings = Settings(store=str(seeded_path))
    assert settings.rate_heavy_per_minute > 0 and settings.rate_per_minute == 0
    default = _limited(seeded_path)
    answers = [_heavy(default).status_code for _ in range(settings.rate_heavy_burst + 1)]
    assert answers[:-1] == [404] * settings.rate_heavy_burst and answers[-1] == 429
    assert all(default.get("/conformance").status_code == 200 for _ in range(50))


def test_a_bucket_refills_with_time_and_the_table_of_clients_stays_bounded():
    now = [0.0]
    buckets = TokenBuckets(per_minute=6, burst=2, max_clients=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)  # 6 a minute: one every 10 s
    now[0] = 10.0
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    for client in ("b", "c", "d", "e"):
        buckets.take(client)
    assert len(buckets) == 3  # "a" and "b", the least recent, were forgotten
    assert buckets.take("a") == 0.0  # forgotten is a full bucket again


def test_an_ipv6_subscriber_counts_as_its_64_and_a_mapped_ipv4_as_the_ipv4():
    def key(host: str) -> str:
        return client_key({"client": (host, 1)})

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") != key("2001:db8:1:3::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1") == "192.0.2.1"
    assert key("testclient") == "testclient"
