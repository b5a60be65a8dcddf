"""/docs (Swagger UI) and /redoc work offline: their scripts, stylesheet and
icon come from the service itself (the installed ``fastapi-offline`` files),
never from a CDN.

The browser tests open both pages in Debian's headless Chromium against a real
uvicorn server; every request to another host is recorded and aborted. In CI
(``CI=true``) a missing Chromium or Playwright fails them; elsewhere they skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from geo_service.api.app import create_app
from geo_service.api.docs import ASSETS, STATIC
from geo_service.settings import Settings

TITLE = "Zhangdian support-resource map service"


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory) -> Iterator[TestClient]:
    """The app on a store of its own (the pages need no data, nor PostGIS)."""
    folder = tmp_path_factory.mktemp("docs")
    with TestClient(create_app(Settings(store=str(folder / "docs.gpkg")))) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_pages_link_only_the_services_own_files(docs_client, path):
    response = docs_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text and "https://" not in response.text
    assert f"{STATIC}/" in response.text
    assert "/openapi.json" in response.text


@pytest.mark.parametrize(("name", "media_type"), sorted(ASSETS.items()))
def test_the_asset_urls_answer_with_their_content_type(docs_client, name, media_type):
    response = docs_client.get(f"{STATIC}/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert len(response.content) > 1000
    assert response.headers["x-content-type-options"] == "nosniff"
    # ReDoc's menu logo would come from Redocly's CDN: the service serves it without.
    assert b"cdn.redoc.ly" not in response.content


def test_the_document_is_served_and_leaves_the_pages_out(docs_client):
    paths = docs_client.get("/openapi.json").json()["paths"]
    assert "/collections" in paths
    assert not any(p in {"/docs", "/redoc"} or p.startswith(STATIC) for p in paths)


def test_the_files_are_not_writable_through_http(docs_client):
    for method in ("PUT", "POST", "DELETE"):
        response = docs_client.request(method, f"{STATIC}/favicon.png", content=b"x")
        assert response.status_code == 405
    assert docs_client.get(f"{STATIC}/../docs.py").status_code == 404


def _open(browser, url: str, ready: str) -> tuple[object, list[str], list[str], list[str]]:
    """Open ``url`` and wait for ``ready``; the requests (all), those to other
    hosts (aborted), and the console errors and page errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    host = urlparse(url).netloc
    requests: list[str] = []
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(request_route):
        parsed = urlparse(request_route.request.url)
        if parsed.scheme in {"data", "blob"} or parsed.netloc == host:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    return page, requests, outside, errors


def _only_the_service(requests: list[str], base: str) -> list[str]:
    host = urlparse(base).netloc
    return [
        url
        for url in requests
        if urlparse(url).scheme not in {"data", "blob"} and urlparse(url).netloc != host
    ]


@pytest.mark.server
def test_swagger_ui_renders_offline(live_server, browser):
    page, requests, outside, errors = _open(browser, f"{live_server}/docs", ".opblock-summary-path")
    try:
        assert outside == [] and _only_the_service(requests, live_server) == []
        assert errors == []
        assert f"{live_server}{STATIC}/swagger-ui-bundle.js" in requests
        assert f"{live_server}{STATIC}/swagger-ui.css" in requests
        assert f"{live_server}/openapi.json" in requests
        assert TITLE in page.title()
        assert TITLE in page.locator(".info .title").inner_text()
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/collections" in [p.strip() for p in paths]
        # The stylesheet applied: the operation blocks are laid out, not bare text.
        assert page.locator(".opblock").first.evaluate(
            "e => getComputedStyle(e).borderRadius"
        ) not in {"", "0px"}
    finally:
        page.context.close()


@pytest.mark.server
def test_redoc_renders_offline(live_server, browser):
    page, requests, outside, errors = _open(browser, f"{live_server}/redoc", "h1")
    try:
        assert outside == [] and _only_the_service(requests, live_server) == []
        assert errors == []
        assert f"{live_server}{STATIC}/redoc.standalone.js" in requests
        assert TITLE in page.locator("h1").first.inner_text()
        assert page.get_by_text("/collections", exact=False).count() > 0
    finally:
        page.context.close()


@pytest.mark.server
def test_the_live_assets_answer(live_server):
    for name, media_type in ASSETS.items():
        response = httpx.get(f"{live_server}{STATIC}/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].split(";")[0] == media_type
