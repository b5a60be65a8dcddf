"""``geo-service serve --ssl-certfile --ssl-keyfile``: the service over HTTPS,
so that a phone's browser gives 定位我 the resident's position.

A throwaway CA and certificate (``trustme``) for the test browser's
non-loopback name; a real uvicorn server; a real Chromium.
"""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest

from tests.conftest import PLAIN_HTTP_HOST, ROOT, running_server
from tests.test_webmap_browser import PARK

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert(PLAIN_HTTP_HOST, "127.0.0.1")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with running_server(
        folder, "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file), ca_file=ca_file
    ) as base:
        yield base, ca_file


def test_serve_speaks_https_with_the_given_certificate(https_server):
    base, ca_file = https_server
    assert base.startswith("https://")
    trusted = ssl.create_default_context(cafile=ca_file)
    answer = httpx.get(base + "/", headers={"Accept": "text/html"}, verify=trusted)
    assert answer.status_code == 200 and "gs-config" in answer.text
    # A client that does not trust that CA refuses the certificate: it is the one served.
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/conformance")
    # Plain HTTP on the same port is not served.
    with pytest.raises(httpx.HTTPError):
        httpx.get(base.replace("https://", "http://") + "/conformance", timeout=5)


def test_locate_me_works_over_https_at_a_non_loopback_name(https_server, browser):
    base, _ = https_server
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        locale="zh-CN",
        ignore_https_errors=True,  # the browser does not know the test's CA
        geolocation={"longitude": PARK[0], "latitude": PARK[1]},
        permissions=["geolocation"],
    )
    try:
        page = context.new_page()
        page.goto(base.replace("127.0.0.1", PLAIN_HTTP_HOST) + "/")
        page.wait_for_selector("body[data-gs-ready='1']")
        assert page.evaluate("window.isSecureContext") is True
        page.click("#gs-locate")
        page.wait_for_selector("#gs-nearest li")
        assert page.evaluate("[gsApp.point.lng, gsApp.point.lat]") == pytest.approx(list(PARK))
        assert not page.locator("#gs-notice").is_visible()
    finally:
        context.close()


def test_serve_wants_both_certificate_and_key(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    done = subprocess.run(
        [sys.executable, "-m", "geo_service.cli", "serve", "--ssl-certfile", str(cert)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"GEO_SERVICE_STORE": str(tmp_path / "s.gpkg"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 2
    assert "--ssl-keyfile" in done.stderr
