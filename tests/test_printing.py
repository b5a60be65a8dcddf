"""Printed maps, checked as a reader would: every page rendered (pdftoppm) and
not blank, its text read back (pdftotext), the CJK font embedded (pdffonts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import shapely
from PIL import Image

from geo_service.outputs.printing import _context, _fitting, _table_rows
from geo_service.sources.style import default_style_file, load_style
from tests.conftest import ROOT

POPPLER = all(shutil.which(tool) for tool in ("pdftoppm", "pdftotext", "pdffonts", "pdfinfo"))
PARK = (118.042742, 36.810131)


@pytest.fixture(scope="module", autouse=True)
def _needs_poppler():
    if not POPPLER:
        if os.environ.get("CI") == "true":
            pytest.fail("poppler-utils is missing (CI=true: the PDF tests must run)")
        pytest.skip("poppler-utils is not installed")


@pytest.fixture(scope="module")
def atlas(client, tmp_path_factory):
    answer = client.get("/print/atlas.pdf")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    path = tmp_path_factory.mktemp("print") / "atlas.pdf"
    path.write_bytes(answer.content)
    return path


def pages_text(path) -> list[str]:
    count = int(
        next(
            line.split()[1]
            for line in subprocess.run(
                ["pdfinfo", str(path)], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Pages:")
        )
    )
    return [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(path), "-"],
            capture_output=True,
            text=True,
        ).stdout
        for n in range(1, count + 1)
    ]


def expected_pages(seeded_path, catalog) -> tuple[int, dict[str, list[str]]]:
    from geo_service.store import open_store

    store = open_store(seeded_path, catalog)
    style = load_style(default_style_file(), catalog)
    ctx = _context(catalog, store, style, "http://x", "A4", "portrait", None)
    pages, names = 1, {}
    for town in ctx.towns:
        rows = _table_rows(ctx, town)
        names[town.id] = [site.properties["name"] for site, _ in rows]
        left, start, town_pages = rows, 1, 0
        height = 0.36
        while left or town_pages == 0:
            fit = _fitting(ctx, left, start, height) if left else 0
            left, start, town_pages = left[fit:], start + fit, town_pages + 1
            height = 0.88
        pages += town_pages
    store.close()
    return pages, names


def test_every_page_renders_and_is_not_blank(atlas, tmp_path):
    subprocess.run(
        ["pdftoppm", "-r", "30", "-png", str(atlas), str(tmp_path / "p")],
        check=True,
        capture_output=True,
    )
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == len(pages_text(atlas))
    for image in images:
        pixels = np.asarray(Image.open(image).convert("L"), dtype=float)
        assert pixels.std() > 5, image.name  # not a blank page
        assert (pixels < 128).mean() > 0.002, image.name  # ink on it


def test_the_atlas_has_an_overview_then_every_town_with_its_sites(
    atlas, seeded_path, catalog, client
):
    texts = pages_text(atlas)
    count, names = expected_pages(seeded_path, catalog)
    assert len(texts) == count
    overview = texts[0]
    assert "张店区拥军服务资源分布图" in overview
    assert "示例数据" in overview and "制图日期" in overview
    towns = client.get("/collections/towns/items").json()["features"]
    for town in towns:
        assert town["properties"]["name"] in overview
    joined = "\n".join(texts[1:])
    compact = joined.replace(" ", "").replace("\n", "")
    for town in towns:
        assert f"{town['properties']['name']}拥军服务资源分布图" in compact
        for name in names[town["id"]]:
            assert name.replace(" ", "")[:8] in compact, name
    assert "设施一览（续）" in compact  # a long table continues on a following page


def test_the_cjk_font_is_embedded(atlas):
    fonts = subprocess.run(["pdffonts", str(atlas)], capture_output=True, text=True).stdout
    cjk = [line for line in fonts.splitlines() if "NotoSansCJK" in line]
    assert cjk and all(" yes " in line for line in cjk)  # emb column


def test_the_nearest_sheet_lists_what_the_api_answers(client, tmp_path):
    answer = client.get("/print/nearest.pdf", params={"lon": PARK[0], "lat": PARK[1]})
    assert answer.status_code == 200
    a3 = client.get("/print/nearest.pdf", params={"lon": PARK[0], "lat": PARK[1], "size": "A3"})
    assert a3.status_code == 200 and a3.content != answer.content
    path = tmp_path / "nearest.pdf"
    path.write_bytes(answer.content)
    (text,) = pages_text(path)
    compact = text.replace(" ", "")
    assert "离您最近的拥军服务点" in compact
    for layer in ("stations", "green_channels", "medical", "memorials", "education"):
        body = client.get(
            "/nearest", params={"lon": PARK[0], "lat": PARK[1], "k": 2, "layers": layer}
        ).json()
        for feature in body["features"]:
            assert feature["properties"]["name"].replace(" ", "") in compact
            assert f"{feature['properties']['distance_m']:,.0f}米" in compact


def test_print_endpoints_refuse_bad_options(client):
    for path, params, parameter in (
        ("/print/atlas.pdf", {"size": "B5"}, "size"),
        ("/print/atlas.pdf", {"orientation": "sideways"}, "orientation"),
        ("/print/atlas.pdf", {"layers": "shops"}, "layers"),
        ("/print/nearest.pdf", {"lat": "36.8"}, "lon"),
        ("/print/nearest.pdf", {"address": "火星基地"}, "address"),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code == 400 and answer.json()["parameter"] == parameter, path
    assert client.get("/print/towns/370303999.pdf").status_code == 404


def test_the_cli_prints_a_town_and_a_landscape_a3_atlas(seeded_path, tmp_path):
    town = tmp_path / "town.pdf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "print",
            "town",
            "370303002",
            "--out",
            str(town),
            "--allow-local-qr",  # a test print: no public_url here
            "--store",
            str(seeded_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "公园街道" in pages_text(town)[0]
    info = subprocess.run(["pdfinfo", str(town)], capture_output=True, text=True).stdout
    assert "(A4)" in info and "595.44 x 841.68" in info  # A4 portrait, in points
    big = tmp_path / "a3.pdf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "print",
            "atlas",
            "--size",
            "A3",
            "--orientation",
            "landscape",
            "--layers",
            "stations",
            "--out",
            str(big),
            "--allow-local-qr",
            "--store",
            str(seeded_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    info = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", "1", str(big)], capture_output=True, text=True
    ).stdout
    assert "(A3)" in info and "1190.88 x 841.68" in info  # A3 landscape


def test_no_cjk_font_is_a_clear_error(monkeypatch, catalog, store):
    from geo_service.errors import PrintError
    from geo_service.outputs import printing

    monkeypatch.setattr(printing, "FONT_FILES", ["/nonexistent/font.ttc"])
    with pytest.raises(PrintError, match="fonts-noto-cjk"):
        printing.town_pdf(
            catalog,
            store,
            load_style(default_style_file(), catalog),
            "370303002",
            base_url="http://x",
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_site_numbers_keep_off_each_other_and_the_markers(seed):
    import matplotlib.pyplot as plt

    from geo_service.outputs.printing import _place_numbers, use_cjk_font

    use_cjk_font()
    rng = np.random.default_rng(seed)
    points = np.vstack([rng.normal(0, 30, (12, 2)), [[0, 0], [0, 0]]])  # crowded, two co-located
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(points[:, 0], points[:, 1], s=60)
    ax.set_xlim(-400, 400)
    ax.set_ylim(-400, 400)
    texts = _place_numbers(ax, points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] == [str(n) for n in range(1, len(points) + 1)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
        for x, y in ax.transData.transform(points):
            assert not a.contains(x, y)
    plt.close(fig)


def test_a_town_with_hundreds_of_sites_still_prints(tmp_path, catalog):
    """An office that imported every green-channel window of a town gets its
    pages, not a crash: past a page's worth of numbers they stay at their
    markers instead of being spread (which cost 143 GiB at 20,000 sites)."""
    from geo_service.outputs.printing import MAX_PLACED_NUMBERS, town_pdf
    from geo_service.sources.catalog import ValidFeature
    from geo_service.store import open_store
    from geo_service.store.seeding import seed_store

    store = open_store(tmp_path / "many.gpkg", catalog)
    seed_store(store, catalog)
    count = MAX_PLACED_NUMBERS + 50
    rng = np.random.default_rng(7)
    sites = [
        ValidFeature(
            f"gc-many-{n}",
            {
                "id": f"gc-many-{n}",
                "name": f"示例：窗口{n}",
                "kind": "bank",
                "town_code": "370303002",
                "status": "open",
                "sample": True,
                "source": "test",
                "position_quality": "approximate",
            },
            shapely.Point(
                PARK[0] + rng.uniform(-0.004, 0.004), PARK[1] + rng.uniform(-0.003, 0.003)
            ),
        )
        for n in range(count)
    ]
    store.write("green_channels", sites, actor="test")
    style = load_style(default_style_file(), catalog)
    content = town_pdf(
        catalog, store, style, "370303002", base_url="http://x", layers=["green_channels"]
    )
    store.close()
    path = tmp_path / "many.pdf"
    path.write_bytes(content)
    text = "\n".join(pages_text(path))
    assert "公园街道" in text and f"示例：窗口{count - 1}" in text
