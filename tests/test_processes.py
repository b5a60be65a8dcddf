"""The heavy work as OGC API - Processes, as a client meets it: the processes
listed and described, a town's PDF printed at once, an atlas followed as a job
from queued to done, a repeated request answered from the cache until the data
changes, a failed job that says why, a dismissed job whose worker stops, a full
queue that says when to come back, a restart that never leaves a job "running",
bad requests refused by name, and OWSLib driving a real server."""

from __future__ import annotations

import base64
import importlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient

from geo_service.api import create_app
from geo_service.services.access import issue_token
from geo_service.settings import Settings
from geo_service.sources.catalog import load_catalog
from geo_service.store import JobRecord, open_store
from geo_service.store.base import now
from tests.conftest import running_server

PROCESS_IDS = {
    "print-atlas",
    "print-town",
    "print-nearest",
    "coverage-report",
    "site-recommendation",
    "import",
}
EXECUTE_REL = "http://www.opengis.net/def/rel/ogc/1.0/execute"
FINISHED = {"successful", "failed", "dismissed"}
PARK = "370303002"  # 公园街道
MASHANG = "370303009"  # 马尚街道
NO_SUCH_TOWN = "370303999"  # nine digits, but no town of 张店区
ASYNC = {"Prefer": "respond-async"}
#: Two stations with the headers a town office's spreadsheet uses, in 马尚 and 公园.
STATIONS_CSV = (
    "编号,名称,类型,地址,经度,纬度\n"
    "proc-mashang-1,马尚流程测试驿站,拥军服务驿站,马尚街道流程路1号,117.9905,36.8005\n"
    "proc-park-1,公园流程测试驿站,拥军服务驿站,公园街道流程路2号,118.042742,36.810131\n"
)


# -- fixtures and helpers -------------------------------------------------------------


def _needed(tool: str) -> None:
    """A tool or package the story needs: with CI=true its absence fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing (CI=true: these tests must run)")
    pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def client(seeded_path, tmp_path_factory) -> Iterator[TestClient]:
    """The app on a seeded store (each backend in turn); uploads spool under tmp."""
    spool = tmp_path_factory.mktemp("spool")
    app = create_app(Settings(store=str(seeded_path), spool_dir=spool))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def office(seeded_path) -> dict[str, str]:
    """The district office's admin token, as Authorization headers."""
    catalog = load_catalog()
    store = open_store(seeded_path, catalog)
    try:
        known = [town.id for town in store.all_features("towns")]
        token = issue_token(store, "office", "admin", [], known)
    finally:
        store.close()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def pdf_text(tmp_path_factory) -> Callable[[bytes], str]:
    """A PDF's text as a reader sees it (pdftotext), spaces and line breaks removed."""
    if not shutil.which("pdftotext"):
        _needed("poppler-utils (pdftotext)")
    folder = tmp_path_factory.mktemp("pdf")

    def read(content: bytes) -> str:
        assert content.startswith(b"%PDF-"), content[:40]
        path = folder / f"{uuid.uuid4().hex}.pdf"
        path.write_bytes(content)
        text = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
        return text.replace(" ", "").replace("\n", "")

    return read


def execute(http, process_id: str, inputs: dict, *, headers=None, response=None):
    body: dict = {"inputs": inputs}
    if response is not None:
        body["response"] = response
    return http.post(f"/processes/{process_id}/execution", json=body, headers=headers or {})


def follow(
    http, job_url: str, *, until: Callable[[dict], bool] | None = None, timeout: float = 180
) -> list[dict]:
    """Poll a job's statusInfo until it is finished (or ``until`` says so);
    every answer seen, in order."""
    until = until or (lambda status: status["status"] in FINISHED)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get(job_url)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
        if until(seen[-1]):
            return seen
        assert time.monotonic() < deadline, f"job still {seen[-1]} after {timeout} s"
        time.sleep(0.1)


def job_count(http, headers=None) -> int:
    return len(http.get("/jobs", params={"limit": 1000}, headers=headers or {}).json()["jobs"])


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(location, job_id: str) -> int:
    """The process running a job, as its record names it (host:pid:start)."""
    store = open_store(location, load_catalog())
    try:
        record = store.job(job_id)
    finally:
        store.close()
    assert record is not None and record.owner
    return int(record.owner.split(":")[1])


# -- finding what can be run ------------------------------------------------------------


def test_a_client_finds_the_six_processes_and_what_printing_a_town_takes(client):
    listed = client.get("/processes")
    assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
    processes = {p["id"]: p for p in listed.json()["processes"]}
    assert set(processes) == PROCESS_IDS
    for proc in processes.values():
        assert {"sync-execute", "async-execute", "dismiss"} <= set(proc["jobControlOptions"])
        links = {link["rel"]: link["href"] for link in proc["links"]}
        assert links["self"].endswith(f"/processes/{proc['id']}")
        assert links[EXECUTE_REL].endswith(f"/processes/{proc['id']}/execution")
        # Following the self link gives the same process, described.
        assert client.get(links["self"]).json()["id"] == proc["id"]

    town = client.get("/processes/print-town").json()
    assert town["inputs"]["code"]["minOccurs"] == 1  # the one input that must be given
    assert town["inputs"]["code"]["schema"]["pattern"] == "^[0-9]{9}$"
    for optional in ("size", "orientation", "layers"):
        assert town["inputs"][optional]["minOccurs"] == 0
    assert set(town["inputs"]["size"]["schema"]["enum"]) == {"A4", "A3"}
    assert town["outputs"]["result"]["schema"]["contentMediaType"] == "application/pdf"
    assert "base_url" not in town["inputs"]  # set by the service, not offered to clients
    imports = client.get("/processes/import").json()
    assert not {"spool", "who"} & set(imports["inputs"])

    for unknown in (
        client.get("/processes/print-moon"),
        execute(client, "print-moon", {}),
    ):
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        assert "print-moon" in unknown.json()["detail"]


# -- running at once ------------------------------------------------------------------


def test_a_town_office_prints_its_town_at_once_and_a_planner_gets_sites_as_json(client, pdf_text):
    printed = execute(client, "print-town", {"code": PARK})
    assert printed.status_code == 200, printed.text
    assert printed.headers["content-type"] == "application/pdf"
    assert "公园街道" in pdf_text(printed.content)
    # The answer names the job that made it; its results are the same PDF.
    again = client.get(printed.headers["Location"] + "/results")
    assert again.status_code == 200 and again.content == printed.content

    answer = execute(
        client,
        "site-recommendation",
        {"p": 1, "layers": ["stations"]},
        response="document",
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    result = answer.json()["result"]
    assert result["p"] == 1 and len(result["sites"]) == 1
    (site,) = result["sites"]
    assert site["town_name"] and 117.8 < site["lon"] < 118.3 and 36.6 < site["lat"] < 37.0
    assert result["covered_after"] >= result["covered_before"]


# -- running as a job -----------------------------------------------------------------


def test_the_atlas_runs_as_a_job_the_client_follows_to_the_pdf(client, pdf_text):
    started = execute(client, "print-atlas", {"size": "A4"}, headers=ASYNC)
    assert started.status_code == 201, started.text
    info = started.json()
    job_url = started.headers["Location"]
    assert job_url.endswith(f"/jobs/{info['jobID']}")
    assert started.headers["Preference-Applied"] == "respond-async"
    assert info["processID"] == "print-atlas" and info["status"] in {"accepted", "running"}
    assert info["progress"] == 0

    # Too early for the result: a 404 that says the job is still going.
    early = client.get(f"{job_url}/results")
    assert early.status_code == 404 and info["jobID"] in early.json()["detail"]
    # A second resident asking for the same atlas meanwhile shares the running job.
    joined = execute(client, "print-atlas", {"size": "A4"}, headers=ASYNC)
    assert joined.status_code == 201 and joined.json()["jobID"] == info["jobID"]

    seen = follow(client, job_url)
    statuses = [s["status"] for s in seen]
    progress = [s["progress"] for s in seen]
    assert statuses[-1] == "successful", seen[-1]
    assert set(statuses) <= {"accepted", "running", "successful"}
    assert progress == sorted(progress)  # never goes backwards
    assert progress[-1] == 100
    # The atlas reports town by town: the client saw it part-way.
    assert [p for p in progress if 0 < p < 100], progress
    done = seen[-1]
    assert done["started"] and done["finished"] and done["started"] <= done["finished"]
    result_link = next(link for link in done["links"] if link["rel"].endswith("/results"))
    assert result_link["type"] == "application/pdf"

    pdf = client.get(result_link["href"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert "张店区拥军服务资源分布图" in text and "公园街道" in text and "马尚街道" in text

    listed = {job["jobID"]: job for job in client.get("/jobs").json()["jobs"]}
    assert listed[info["jobID"]]["status"] == "successful"


def test_the_same_request_on_unchanged_data_comes_from_the_cache_until_a_site_is_added(
    client, office, pdf_text
):
    inputs = {"code": MASHANG, "size": "A3"}
    first = execute(client, "print-town", inputs, headers=ASYNC)
    assert first.status_code == 201, first.text
    assert follow(client, first.headers["Location"])[-1]["status"] == "successful"
    before = job_count(client)

    repeat = execute(client, "print-town", inputs, headers=ASYNC)
    assert repeat.status_code == 201
    assert repeat.headers["Location"] == first.headers["Location"]  # the same job answers
    assert repeat.json()["status"] == "successful"  # done already: nothing to wait for
    at_once = execute(client, "print-town", inputs)
    assert at_once.headers["Location"] == first.headers["Location"]
    assert job_count(client) == before  # no new job was run

    name = "马尚缓存测试驿站"
    created = client.post(
        "/collections/stations/items",
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [117.9905, 36.8005]},
            "properties": {
                "name": name,
                "kind": "support_post",
                "address": "马尚街道缓存路1号",
                "eligible": ["veteran"],
                "status": "open",
                "position_quality": "surveyed",
            },
        },
        headers=office,
    )
    assert created.status_code == 201, created.text
    assert name not in pdf_text(at_once.content)

    after_edit = execute(client, "print-town", inputs, headers=ASYNC)
    assert after_edit.status_code == 201
    assert after_edit.headers["Location"] != first.headers["Location"]  # a new job runs
    assert follow(client, after_edit.headers["Location"])[-1]["status"] == "successful"
    assert job_count(client) == before + 1
    fresh = client.get(after_edit.headers["Location"] + "/results")
    assert name in pdf_text(fresh.content)  # and its map lists the new site


def test_a_town_that_does_not_exist_fails_with_a_reason_at_once_and_as_a_job(client):
    at_once = execute(client, "print-town", {"code": NO_SUCH_TOWN})
    assert at_once.status_code == 404
    assert at_once.headers["content-type"] == "application/problem+json"
    assert NO_SUCH_TOWN in at_once.json()["detail"]

    started = execute(client, "print-town", {"code": NO_SUCH_TOWN, "size": "A3"}, headers=ASYNC)
    assert started.status_code == 201, started.text
    failed = follow(client, started.headers["Location"])[-1]
    assert failed["status"] == "failed"
    assert NO_SUCH_TOWN in failed["message"]  # the job says why
    assert not [link for link in failed["links"] if link["rel"].endswith("/results")]
    result = client.get(started.headers["Location"] + "/results")
    assert result.status_code == 404
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json()["detail"] == at_once.json()["detail"]


def test_a_dismissed_atlas_stops_its_worker_and_never_has_a_result(client, seeded_path):
    started = execute(client, "print-atlas", {"size": "A3"}, headers=ASYNC)
    assert started.status_code == 201, started.text
    job_url = started.headers["Location"]
    # Dismissed once it is drawing towns, with most of the atlas still to draw.
    drawing = follow(client, job_url, until=lambda s: s["progress"] > 0 or s["status"] in FINISHED)
    assert drawing[-1]["status"] == "running" and drawing[-1]["progress"] < 50, drawing[-1]
    worker = worker_pid(seeded_path, started.json()["jobID"])
    at_dismissal = cpu_seconds(worker)

    dismissed = client.delete(job_url)
    assert dismissed.status_code == 200
    assert dismissed.json()["status"] == "dismissed"
    gone = client.get(job_url + "/results")
    assert gone.status_code == 404 and "dismissed" in gone.json()["detail"]

    # The worker stops at its next town report and goes idle; all the while,
    # and after, the job stays dismissed: it never turns successful.
    deadline = time.monotonic() + 120
    while True:
        assert client.get(job_url).json()["status"] == "dismissed"
        before = cpu_seconds(worker)
        time.sleep(1.0)
        if cpu_seconds(worker) - before < 0.02:
            break
        assert time.monotonic() < deadline, "the worker never went idle"
    print(
        f"dismissed at {drawing[-1]['progress']}%: the worker used "
        f"{cpu_seconds(worker) - at_dismissal:.2f} s CPU more before going idle"
    )
    for _ in range(3):
        time.sleep(0.5)
        assert client.get(job_url).json()["status"] == "dismissed"
    assert client.get(job_url + "/results").status_code == 404


# -- a server with one worker and room for one job --------------------------------------


@pytest.fixture(scope="module")
def small_server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("small")
    with running_server(
        folder,
        GEO_SERVICE_JOB_WORKERS="1",
        GEO_SERVICE_JOB_QUEUE="1",
        GEO_SERVICE_JOB_RETRY_AFTER="7",
        GEO_SERVICE_SPOOL_DIR=str(folder / "spool"),
    ) as base:
        yield base


@pytest.mark.server
def test_a_full_queue_asks_the_second_atlas_to_come_back_later(small_server):
    with httpx.Client(base_url=small_server, timeout=60) as http:
        first = execute(http, "print-atlas", {"size": "A4"}, headers=ASYNC)
        assert first.status_code == 201, first.text
        try:
            second = execute(http, "print-atlas", {"size": "A3"}, headers=ASYNC)
            assert second.status_code == 503
            assert second.headers["Retry-After"] == "7"
            assert second.headers["content-type"] == "application/problem+json"
            detail = second.json()["detail"]
            assert "服务繁忙" in detail and "queue is full" in detail
            # The printed-map address is refused the same way, not queued without end.
            direct = http.get("/print/atlas.pdf", params={"size": "A3"})
            assert direct.status_code == 503 and direct.headers["Retry-After"] == "7"
            # The same atlas as the one running joins it instead.
            same = execute(http, "print-atlas", {"size": "A4"}, headers=ASYNC)
            assert same.status_code == 201
            assert same.headers["Location"] == first.headers["Location"]
        finally:
            http.delete(first.headers["Location"])
        # Once the running job is dismissed its worker frees, and work is taken again.
        deadline = time.monotonic() + 60
        while True:
            later = execute(http, "coverage-report", {"radius": 450})
            if later.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert later.status_code == 200, later.text
        assert later.json()["radius_m"] == 450


@pytest.mark.server
def test_owslib_lists_describes_and_runs_processes_on_a_real_server(small_server, monkeypatch):
    try:
        ogcapi = importlib.import_module("owslib.ogcapi")
        from owslib.ogcapi.processes import Processes
    except ImportError:
        _needed("owslib")
    # OWSLib keeps its request headers (Prefer too) in one module-wide dict.
    monkeypatch.setattr(ogcapi, "REQUEST_HEADERS", dict(ogcapi.REQUEST_HEADERS))
    service = Processes(small_server)
    assert {p["id"] for p in service.processes()} == PROCESS_IDS
    described = service.process("site-recommendation")
    assert {"p", "radius", "layers", "kinds"} <= set(described["inputs"])

    document = service.execute("site-recommendation", inputs={"p": 1, "radius": 800})
    result = document["result"]
    assert result["p"] == 1 and result["radius_m"] == 800 and len(result["sites"]) == 1

    status = service.execute("print-atlas", inputs={"layers": ["stations"]}, async_=True)
    assert status["status"] in {"accepted", "running"} and status["processID"] == "print-atlas"
    job_url = f"{small_server}/jobs/{status['jobID']}"
    assert urljoin(small_server + "/", service.response_headers["Location"]) == job_url
    with httpx.Client(timeout=60) as http:
        assert follow(http, job_url)[-1]["status"] == "successful"
        pdf = http.get(f"{job_url}/results")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


# -- a restart in the middle of a job ------------------------------------------------------


def _server_family(port: int) -> list[int]:
    """``geo-service serve --port PORT`` and every process under it (its job workers)."""
    parents: dict[int, int] = {}
    servers = []
    wanted = [b"serve", b"--port", str(port).encode()]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(b")", 1)[1].split()[1])
        if any(command[i : i + 3] == wanted for i in range(len(command))):
            servers.append(pid)
    assert len(servers) == 1, servers
    family = set(servers)
    while True:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        if not children:
            return sorted(family)
        family |= children


@pytest.mark.server
def test_a_job_cut_off_by_a_killed_server_is_reported_failed_after_the_restart(
    tmp_path, server_store
):
    env = {**server_store, "GEO_SERVICE_SPOOL_DIR": str(tmp_path / "spool")}
    with running_server(tmp_path, **env) as base, httpx.Client(base_url=base, timeout=60) as http:
        started = execute(http, "print-atlas", {"size": "A4"}, headers=ASYNC)
        assert started.status_code == 201, started.text
        job_id = started.json()["jobID"]
        drawing = follow(
            http,
            f"/jobs/{job_id}",
            until=lambda s: s["progress"] > 0 or s["status"] in FINISHED,
        )
        assert drawing[-1]["status"] == "running", drawing[-1]
        family = _server_family(int(base.rsplit(":", 1)[1]))
        assert worker_pid(server_store["GEO_SERVICE_STORE"], job_id) in family
        for pid in family:  # the power cut: the server and its workers, no goodbye
            os.kill(pid, signal.SIGKILL)
    # A restart comes after the old processes are gone (reaped), as after a
    # reboot; one killed but not yet reaped is the next test's story.
    deadline = time.monotonic() + 60
    while [pid for pid in family if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, "the killed processes were never reaped"
        time.sleep(0.1)
    with running_server(tmp_path, **env) as base, httpx.Client(base_url=base, timeout=60) as http:
        after = http.get(f"/jobs/{job_id}")
        assert after.status_code == 200
        status = after.json()
        assert status["status"] == "failed", status
        assert "服务重启" in status["message"] and "restarted" in status["message"]
        assert status["finished"]
        listed = {job["jobID"]: job["status"] for job in http.get("/jobs").json()["jobs"]}
        assert listed[job_id] == "failed"
        result = http.get(f"/jobs/{job_id}/results")
        assert result.status_code != 200 and "restarted" in result.json()["detail"]
        # Asking again runs a new job rather than answering with the failed one.
        again = execute(http, "print-atlas", {"size": "A4"}, headers=ASYNC)
        assert again.status_code == 201 and again.json()["jobID"] != job_id
        assert again.json()["status"] in {"accepted", "running"}
        http.delete(again.headers["Location"])


def test_a_job_whose_worker_died_but_is_not_yet_reaped_is_reported_failed(client, seeded_path):
    corpse = subprocess.Popen(["true"])  # exits at once; never waited for, it is a zombie
    try:
        stat = Path(f"/proc/{corpse.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ticks = stat.read_bytes().rsplit(b")", 1)[1].split()[19].decode()
        moment = now()
        record = JobRecord(
            id=uuid.uuid4().hex,
            process="print-atlas",
            status="running",
            progress=35,
            inputs="{}",
            owner=f"{socket.gethostname()}:{corpse.pid}:{ticks}",
            created=moment,
            started=moment,
            updated=moment,
        )
        store = open_store(seeded_path, load_catalog())
        try:
            store.create_job(record)
        finally:
            store.close()
        status = client.get(f"/jobs/{record.id}").json()
    finally:
        corpse.wait()
    assert status["status"] == "failed", status
    assert "restarted" in status["message"]


# -- bad requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("process_id", "inputs", "named"),
    [
        ("print-town", {"code": PARK, "colour": "red"}, "colour"),
        ("print-atlas", {"base_url": "http://evil.example"}, "base_url"),
        ("import", {"collection": "stations", "spool": "/etc/passwd"}, "spool"),
        ("import", {"collection": "stations", "who": {"name": "x", "role": "admin"}}, "who"),
    ],
)
def test_an_input_the_process_does_not_take_is_refused_by_name(
    client, office, process_id, inputs, named
):
    jobs = job_count(client, office)
    answer = execute(client, process_id, inputs, headers=office)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["parameter"] == named and named in answer.json()["detail"]
    assert job_count(client, office) == jobs  # refused before anything was queued


def test_a_body_that_is_not_json_or_not_sent_as_json_is_refused(client):
    url = "/processes/print-town/execution"
    not_json = client.post(
        url, content=b"code=370303002", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["parameter"] == "body"
    no_inputs = client.post(url, json={"inputs": ["370303002"]})
    assert no_inputs.status_code == 400 and no_inputs.json()["parameter"] == "inputs"
    as_form = client.post(url, data={"code": PARK})
    assert as_form.status_code == 415
    as_text = client.post(
        url, content=b'{"inputs": {"code": "370303002"}}', headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    assert as_text.headers["content-type"] == "application/problem+json"


def test_an_import_through_processes_needs_a_token_and_then_reports_row_by_row(client, office):
    file = {"value": base64.b64encode(STATIONS_CSV.encode()).decode(), "mediaType": "text/csv"}
    inputs = {"collection": "stations", "file": file, "filename": "马尚台账.csv"}
    anonymous = execute(client, "import", inputs, response="document")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/collections/stations/items/proc-mashang-1").status_code == 404

    done = execute(client, "import", inputs, headers=office, response="document")
    assert done.status_code == 200, done.text
    report = done.json()["result"]
    assert report["collection"] == "stations"
    assert report["counts"]["OK"] == 2 and report["counts"]["error"] == 0
    assert [row["status"] for row in report["rows"]] == ["OK", "OK"]
    assert report["written"]["stations"]["inserted"] == 2
    site = client.get("/collections/stations/items/proc-mashang-1")
    assert site.status_code == 200 and site.json()["properties"]["name"] == "马尚流程测试驿站"
    # The import job is the office's: others cannot follow it or read its report.
    job_url = done.headers["Location"]
    assert client.get(job_url, headers=office).json()["status"] == "successful"
    assert client.get(job_url).status_code == 404
    assert client.get(job_url + "/results").status_code == 404


def test_a_spreadsheet_too_big_for_a_feature_body_is_still_importable_through_processes(
    client, office
):
    lines = ["编号,名称,类型,地址,经度,纬度"]
    for i in range(9_000):
        lon, lat = 118.0417 + (i % 90) * 0.00002, 36.8096 + (i // 90) * 0.00001
        lines.append(
            f"big-{i:05d},公园大批驿站{i},拥军服务驿站,公园街道测试路{i}号,{lon:.6f},{lat:.6f}"
        )
    content = ("\n".join(lines) + "\n").encode()
    assert 750_000 < len(content) < 1_000_000  # base64 makes it a little over 1 MB
    file = {"value": base64.b64encode(content).decode(), "mediaType": "text/csv"}
    inputs = {"collection": "stations", "file": file, "dry_run": True}
    direct = client.post(
        "/collections/stations/import",
        content=content,
        params={"dry_run": "true"},
        headers={**office, "Content-Type": "text/csv"},
    )
    assert direct.status_code == 200, direct.text
    through_processes = execute(client, "import", inputs, headers=office, response="document")
    assert through_processes.status_code == 200, through_processes.text[:300]
    assert through_processes.json()["result"]["counts"] == direct.json()["counts"]
