"""Printed maps, checked as a reader would: every page rendered (pdftoppm) and
not blank, its text read back (pdftotext), the CJK font embedded (pdffonts)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html import unescape

import numpy as np
import pytest
import shapely
from fontTools.ttLib import TTFont
from PIL import Image

from geo_service.outputs.printing import (
    MIN_CONTINUATION_ROWS,
    _context,
    _paginate,
    _table_rows,
    _town_page,
)
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


def paginations(seeded_path, catalog, size="A4", orientation="portrait"):
    """Each town's rows and how its table splits into pages, as the atlas does."""
    from geo_service.store import open_store

    store = open_store(seeded_path, catalog)
    style = load_style(default_style_file(), catalog)
    ctx = _context(catalog, store, style, "http://x", size, orientation, None)
    look = _town_page(ctx)
    found = {}
    for town in ctx.towns:
        rows = _table_rows(ctx, town)
        found[town.id] = (rows, _paginate(ctx, rows, look.table, look.more))
    store.close()
    return found


def expected_pages(seeded_path, catalog) -> tuple[int, dict[str, list[str]]]:
    pages, names = 1, {}
    for code, (rows, split) in paginations(seeded_path, catalog).items():
        names[code] = [site.properties["name"] for site, _ in rows]
        pages += len(split.chunks)
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
    # The notice counts the examples among the printed sites: some are real.
    printed = [
        f["properties"]
        for layer in catalog.facility_layers
        for f in client.get(f"/collections/{layer.id}/items?limit=1000").json()["features"]
        if f["properties"].get("status") != "suspended"
    ]
    samples = sum(1 for p in printed if p.get("sample"))
    assert 0 < samples < len(printed)
    notice = f"所印{len(printed)}个地点中{samples}个为示例"
    assert notice in "".join(overview.split())  # pdftotext may break the line anywhere
    towns = client.get("/collections/towns/items").json()["features"]
    for town in towns:
        assert town["properties"]["name"] in overview
    joined = "\n".join(texts[1:])
    compact = joined.replace(" ", "").replace("\n", "")
    for town in towns:
        assert f"{town['properties']['name']}拥军服务资源分布图" in compact
        for name in names[town["id"]]:
            assert name.replace(" ", "")[:8] in compact, name
    assert "设施一览（续）" not in compact  # no town of the sample has 8 rows too many


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
    texts = pages_text(path)
    text = "\n".join(texts)
    assert "公园街道" in text and f"示例：窗口{count - 1}" in text
    assert len(texts) > 2 and "设施一览（续）" in texts[1]  # the table continues


def poppler_complaints(path) -> str:
    """What poppler says on stderr while rendering and reading every page."""
    said = ""
    for command in (
        ["pdftoppm", "-r", "20", "-png", str(path), str(path.with_suffix(""))],
        ["pdftotext", str(path), "-"],
        ["pdffonts", str(path)],
    ):
        said += subprocess.run(command, capture_output=True, text=True).stderr
    return said


def cjk_fonts(path) -> list[str]:
    lines = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    return lines.splitlines()[2:]


def test_every_printed_document_embeds_a_truetype_cjk_font_poppler_accepts(atlas, client, tmp_path):
    """Atlas (A4, A3 landscape), a town, the nearest sheet: no poppler warning
    (the CFF font in a TrueType slot made one per page), every font embedded
    as CID TrueType, the Chinese searchable."""
    documents = {"atlas": atlas}
    for name, url, params in (
        ("a3", "/print/atlas.pdf", {"size": "A3", "orientation": "landscape"}),
        ("town", "/print/towns/370303002.pdf", {}),
        ("nearest", "/print/nearest.pdf", {"lon": PARK[0], "lat": PARK[1]}),
    ):
        answer = client.get(url, params=params)
        assert answer.status_code == 200, name
        documents[name] = tmp_path / f"{name}.pdf"
        documents[name].write_bytes(answer.content)
    for name, path in documents.items():
        assert poppler_complaints(path) == "", name
        fonts = cjk_fonts(path)
        assert fonts, name
        for line in fonts:
            assert "NotoSansCJK" in line and "CID TrueType" in line, (name, line)
            assert line.split()[-5:-2] == ["yes", "yes", "yes"], (name, line)  # emb sub uni
        assert "拥军服务" in "".join(pages_text(path)).replace(" ", ""), name


@pytest.mark.parametrize(("size", "orientation"), [("A4", "portrait"), ("A3", "landscape")])
def test_no_town_has_a_continuation_page_for_a_handful_of_rows(
    seeded_path, catalog, size, orientation
):
    for code, (rows, split) in paginations(seeded_path, catalog, size, orientation).items():
        assert sum(len(chunk) for chunk in split.chunks) == len(rows), code
        for chunk in split.chunks[1:]:
            assert len(chunk) >= MIN_CONTINUATION_ROWS, (code, [len(c) for c in split.chunks])
        assert split.layout.font_size >= 6, code


def test_a_long_table_continues_only_with_a_page_worth_of_rows(tmp_path, catalog):
    """From the map page's capacity to well past it: never a continuation
    page of fewer than MIN_CONTINUATION_ROWS rows, nothing lost, 6 pt at least."""
    from geo_service.sources.catalog import ValidFeature
    from geo_service.store import open_store
    from geo_service.store.seeding import seed_store

    store = open_store(tmp_path / "long.gpkg", catalog)
    seed_store(store, catalog)
    style = load_style(default_style_file(), catalog)
    extra = []
    for count in range(0, 40, 3):
        extra += [
            ValidFeature(
                f"gc-long-{n}",
                {
                    "id": f"gc-long-{n}",
                    "name": f"示例：拥军优先窗口{n}号（公园街道人民路营业部）",
                    "kind": "bank",
                    "town_code": "370303002",
                    "status": "open",
                    "sample": True,
                    "source": "test",
                    "opening_hours": "Mo-Fr 09:00-12:00,13:00-17:00; Sa,Su 09:00-16:00",
                    "position_quality": "approximate",
                },
                shapely.Point(PARK[0] + n * 1e-4, PARK[1]),
            )
            for n in range(len(extra), count)
        ]
        store.write("green_channels", extra[-3:] if count else [], actor="test")
        ctx = _context(catalog, store, style, "http://x", "A4", "portrait", None)
        town = next(t for t in ctx.towns if t.id == "370303002")
        rows = _table_rows(ctx, town)
        look = _town_page(ctx)
        split = _paginate(ctx, rows, look.table, look.more)
        assert [n for chunk in split.chunks for n in chunk] == list(range(len(rows)))
        for chunk in split.chunks[1:]:
            assert len(chunk) >= MIN_CONTINUATION_ROWS, (len(rows), [len(c) for c in split.chunks])
        assert split.layout.font_size >= 6
    store.close()


def test_town_tables_print_hours_in_chinese_whole_and_drop_the_empty_phone_column(atlas):
    texts = pages_text(atlas)
    for page in texts[1:]:
        assert "Mo-" not in page and "Sa,Su" not in page and "24/7" not in page
        assert "电话" not in page  # no site of the sample has a phone
    joined = "\n".join(texts)
    assert "每天 06:00–22:00" in joined or "每天 08:00–17:30" in joined
    raw = subprocess.run(["pdftotext", "-raw", str(atlas), "-"], capture_output=True, text=True)
    for line in raw.stdout.splitlines():
        line = line.strip()
        # A time is never cut: no line ends inside "09:00–17:00" nor starts in one.
        assert not re.search(r"(\d:|\d\d:\d|–)$", line), line
        assert not re.match(r"^(:|–|\d:\d\d\b)", line), line


def test_the_a3_landscape_overview_keeps_its_table(client, tmp_path):
    answer = client.get("/print/atlas.pdf", params={"size": "A3", "orientation": "landscape"})
    path = tmp_path / "a3.pdf"
    path.write_bytes(answer.content)
    overview = pages_text(path)[0]
    assert "合计" in overview and "镇街" in overview
    towns = client.get("/collections/towns/items").json()["features"]
    for town in towns:
        assert town["properties"]["name"] in overview


def words(path) -> list[tuple[float, float, float, float, str]]:
    """Every word of a one-page PDF with its box (points, top-left origin)."""
    html = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True
    ).stdout
    return [
        (float(x0), float(y0), float(x1), float(y1), unescape(text))
        for x0, y0, x1, y1, text in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
            html,
        )
    ]


def sheet(client, tmp_path, **params):
    answer = client.get("/print/nearest.pdf", params=params)
    assert answer.status_code == 200, answer.text
    path = tmp_path / "sheet.pdf"
    path.write_bytes(answer.content)
    return path


def test_the_nearest_sheet_numbers_its_map_as_its_list(client, catalog, tmp_path):
    """The numbers drawn on the map are those of the list, and number n in the
    list is the n-th site the nearest-service API answers, layer by layer."""
    path = sheet(client, tmp_path, lon=PARK[0], lat=PARK[1])
    found = words(path)
    width, height = 595.44, 841.68
    on_map, listed = [], []
    for i, (x0, y0, _x1, _y1, text) in enumerate(found):
        if not text.isdigit():
            continue
        following = found[i + 1][4] if i + 1 < len(found) else ""
        if 0.25 * width <= x0 <= 0.75 * width and 0.12 * height <= y0 <= 0.31 * height:
            if following not in ("公里", "米"):  # the scale bar's length
                on_map.append(int(text))
        elif x0 < 0.08 * width and y0 > 0.31 * height:
            listed.append((y0, int(text), i))
    numbers = [n for _, n, _ in sorted(listed)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 5
    assert sorted(on_map) == numbers
    expected = []
    for layer in catalog.facility_layers:
        body = client.get(
            "/nearest", params={"lon": PARK[0], "lat": PARK[1], "k": 2, "layers": layer.id}
        ).json()
        expected += [f["properties"]["name"].replace(" ", "") for f in body["features"]]
    for _, number, i in sorted(listed):
        line_y = found[i][1]
        line = "".join(w[4] for w in found if abs(w[1] - line_y) < 3 and w[0] > found[i][0])
        assert line.startswith(expected[number - 1]), (number, line)


def test_the_nearest_sheet_keeps_inside_its_margins_with_hours_in_chinese(client, tmp_path):
    path = sheet(client, tmp_path, lon=PARK[0], lat=PARK[1])
    found = words(path)
    assert max(x1 for _, _, x1, _, _ in found) <= 595.44 * 0.96
    text = "".join(pages_text(path))
    assert "开放时间" in text and "每天" in text and "Mo-" not in text
    assert "大致位置" not in text  # a position given as such is exact


def test_an_approximate_address_is_said_so_and_its_distances_rounded(client, tmp_path):
    """An address the gazetteer finds only as a town (confidence 0.2): the
    sheet says the position is approximate, never prints metres."""
    found = client.get("/geocode", params={"q": "傅家镇政府"}).json()["features"][0]
    assert found["properties"]["confidence"] <= 0.3
    path = sheet(client, tmp_path, address="傅家镇政府")
    text = "".join(pages_text(path)).replace(" ", "")
    assert "只定位到大致位置" in text and "按500米取整" in text
    distances = re.findall(r"([\d,]+)米（步行", text)
    assert distances
    for distance in distances:
        assert int(distance.replace(",", "")) % 500 == 0, distance
    assert all(f"约{d}米" in text or f"{d}米以内" in text for d in distances)


@pytest.mark.parametrize(
    "text",
    [
        "周一至周五 09:00–12:00，13:00–17:00；周六、周日 09:00–16:00",
        "张店区共青团西路54号（北门）HOSTILE $x^2$ =SUM(A1) http://example.invalid/a/b",
        "a" * 80,
        "每天 06:00–22:00",
        "  leading and\ttabs\nand a newline  ",
    ],
)
@pytest.mark.parametrize("width", [4.0, 9.0, 16.0])
def test_wrapping_keeps_every_character_and_every_time_whole(text, width):
    from geo_service.outputs.printing import _em, _wrap

    wrapped = _wrap(text, width)
    assert "".join(wrapped.split()) == "".join(text.split())  # only spaces become breaks
    for line in wrapped.split("\n"):
        assert _em(line) <= width or len(line) == 1, line
    times = re.findall(r"\d\d:\d\d–\d\d:\d\d", text)
    if width >= 9:  # a column at least as wide as one time holds it whole
        assert re.findall(r"\d\d:\d\d–\d\d:\d\d", wrapped) == times


def test_the_printed_font_keeps_the_original_widths():
    """The TrueType copy lays text out exactly as Noto Sans CJK SC does."""
    from fontTools.ttLib import TTCollection

    from geo_service.outputs.print_fonts import truetype_font
    from geo_service.outputs.printing import FONT_FILES

    source = FONT_FILES[0]
    copy = TTFont(truetype_font(source, "Regular"))
    original = next(
        f
        for f in TTCollection(source, lazy=True).fonts
        if f["name"].getDebugName(1).endswith(" SC")
    )
    assert "glyf" in copy and "CFF " not in copy
    assert copy["name"].getDebugName(1) == "Noto Sans CJK SC Print"
    for ch in "张店区拥军服务 09:00–17:30，（）ABCxyz":
        ours, theirs = copy.getBestCmap()[ord(ch)], original.getBestCmap()[ord(ch)]
        assert copy["hmtx"][ours][0] == original["hmtx"][theirs][0], ch
