"""Printed QR codes point to the ``public_url`` setting, never to the
request's Host; a QR code for this computer only (127.0.0.1, localhost) is
printed by the CLI only when asked for with ``--allow-local-qr``.

The code is read back from the PDF: its image (``pdfimages``) sampled module
by module must be exactly the code segno makes for the expected address."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import segno
from fastapi.testclient import TestClient
from PIL import Image

from geo_service.api import create_app
from geo_service.services.printing import is_loopback
from geo_service.settings import Settings
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import ROOT, missing

PUBLIC = "https://map.zhangdian.example"
PARK_TOWN = "370303002"  # 公园街道


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, catalog) -> Path:
    if not shutil.which("pdfimages"):
        missing("poppler-utils (pdfimages) is not installed")
    path = tmp_path_factory.mktemp("qr") / "store.gpkg"
    store = open_store(path, catalog)
    seed_store(store, catalog)
    store.close()
    return path


def qr_targets(pdf: Path, candidates: list[str]) -> list[str]:
    """Which of ``candidates`` the QR codes on the PDF's first page encode."""
    folder = pdf.parent / f"{pdf.stem}-images"
    folder.mkdir()
    subprocess.run(
        ["pdfimages", "-png", "-f", "1", "-l", "1", str(pdf), str(folder / "img")], check=True
    )
    found = []
    for image in sorted(folder.glob("*.png")):
        pixels = np.array(Image.open(image).convert("L"))
        height, width = pixels.shape
        for url in candidates:
            want = np.array(list(segno.make(url, error="m").matrix_iter(border=2)), dtype=bool)
            n = len(want)
            if not 0.9 < width / height < 1.1 or width < n:
                continue
            got = np.array(
                [
                    [
                        pixels[int((r + 0.5) * height / n), int((c + 0.5) * width / n)] < 128
                        for c in range(n)
                    ]
                    for r in range(n)
                ]
            )
            if (got == want).all():
                found.append(url)
    return found


def print_town(seeded: Path, out: Path, *extra: str, public_url: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "GEO_SERVICE_PUBLIC_URL"}
    if public_url is not None:
        env["GEO_SERVICE_PUBLIC_URL"] = public_url
    command = ["print", "town", PARK_TOWN, "--out", str(out), *extra, "--store", str(seeded)]
    return subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )


def town_link(base: str) -> str:
    return f"{base}/map#town={PARK_TOWN}"


LOCAL = town_link("http://127.0.0.1:8000")  # the CLI's default host and port


@pytest.mark.parametrize("public_url", [None, "http://localhost:8000", "http://127.0.0.1:8000/"])
def test_the_cli_refuses_to_print_qr_codes_only_this_computer_opens(seeded, tmp_path, public_url):
    out = tmp_path / "town.pdf"
    done = print_town(seeded, out, public_url=public_url)
    assert done.returncode == 2, done.stdout
    message = " ".join(done.stderr.split())
    assert "只有本机能打开" in message and "GEO_SERVICE_PUBLIC_URL" in message
    assert "--allow-local-qr" in message
    assert not out.exists()


def test_an_office_prints_qr_codes_to_its_public_address(seeded, tmp_path):
    # First a test print for this computer, asked for; then the real one: the
    # job cache must not hand the test print's codes back.
    local = tmp_path / "local.pdf"
    done = print_town(seeded, local, "--allow-local-qr")
    assert done.returncode == 0, done.stderr
    assert "open on this computer only" in " ".join(done.stderr.split())
    assert qr_targets(local, [LOCAL, town_link(PUBLIC)]) == [LOCAL]
    public = tmp_path / "public.pdf"
    done = print_town(seeded, public, public_url=PUBLIC + "/")
    assert done.returncode == 0, done.stderr
    assert f"QR codes point to {PUBLIC}" in done.stdout and "warning" not in done.stderr
    assert qr_targets(public, [LOCAL, town_link(PUBLIC)]) == [town_link(PUBLIC)]


def test_the_api_prints_qr_codes_to_public_url_whatever_the_host_header(seeded, tmp_path):
    app = create_app(Settings(store=str(seeded), public_url=PUBLIC))
    with TestClient(app) as client:
        answer = client.get(f"/print/towns/{PARK_TOWN}.pdf", headers={"Host": "attacker.example"})
    assert answer.status_code == 200, answer.text
    pdf = tmp_path / "api.pdf"
    pdf.write_bytes(answer.content)
    candidates = [town_link(PUBLIC), town_link("http://attacker.example"), LOCAL]
    assert qr_targets(pdf, candidates) == [town_link(PUBLIC)]


@pytest.mark.parametrize("allowed", [False, True])
def test_the_server_prints_no_code_for_this_computer_unless_allowed(seeded, tmp_path, allowed):
    # A default install: no public_url, listening on 127.0.0.1. The office's
    # print says why it has no code, rather than a code no phone can open.
    app = create_app(Settings(store=str(seeded), allow_local_qr=allowed))
    with TestClient(app) as client:
        answer = client.get(f"/print/towns/{PARK_TOWN}.pdf")
    assert answer.status_code == 200, answer.text
    pdf = tmp_path / "default.pdf"
    pdf.write_bytes(answer.content)
    text = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True
    ).stdout
    if allowed:
        assert qr_targets(pdf, [LOCAL]) == [LOCAL]
        assert "扫码看在线地图" in text and "未设置公开网址" not in text
    else:
        assert qr_targets(pdf, [LOCAL]) == []
        assert "未设置公开网址" in text and "扫码看在线地图" not in text


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.0.1", True),
        ("http://[::1]:8000", True),
        ("http://LOCALHOST:8000", True),
        ("http://app.localhost", True),
        ("http://192.168.1.20:8000", False),
        ("https://map.zhangdian.example", False),
        ("http://localhost.example.com", False),
    ],
)
def test_loopback_addresses(url, local):
    assert is_loopback(url) is local
