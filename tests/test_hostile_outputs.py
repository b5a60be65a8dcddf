"""Hostile text read back through every file the service writes.

Every string of the corpus (``tests/hostile.py``) is stored on both backends as
a site's name and address, in 公园街道, with and without its marker (a marked
string never starts like a formula, so the bare text is stored too); the
formula and TeX strings also become town names and population notes. Then, as
an office would: the printed maps show each one literally (the TeX is text,
not a formula, and a broken formula does not fail the print job); the CSV and
XLSX files neutralise text that starts like a formula and change nothing else;
numbers stay numbers.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from shapely.geometry import mapping
from typer.testing import CliRunner

from geo_service.api import create_app
from geo_service.outputs.cells import FORMULA_STARTS, safe_cell, save_workbook
from geo_service.settings import Settings
from geo_service.store import open_store
from tests.conftest import ROOT
from tests.hostile import STORED

PARK = (118.0427, 36.8101)
PARK_TOWN = "370303002"  # 公园街道
POPPLER = all(shutil.which(tool) for tool in ("pdftotext", "pdfinfo"))

#: TeX that matplotlib cannot parse: before the fix, any of these in the store
#: failed every print job that drew it (an unknown command; a missing superscript).
BROKEN_TEX = [r"示例驿站 $\notacommand{x}$", r"公园路 $x^$ 号"]
#: A real negative number in an extra column: written as a number, never as text.
FLOOR = -2


def bare(text: str) -> str:
    """A corpus string without its marker: the text as an attacker types it."""
    return text.split(" ", 1)[1]


def index_of(what: str) -> int:
    return next(n for n, (kind, _text) in enumerate(STORED) if kind == what)


TEX = STORED[index_of("TeX")][1]
#: Town names (all but 公园街道, whose page is printed): formulas bare, so they
#: start like one; TeX and the rest marked, to be found on the page.
TOWN_NAMES = [
    bare(STORED[index_of("formula =")][1]),
    bare(STORED[index_of("formula +")][1]),
    bare(STORED[index_of("formula -")][1]),
    bare(STORED[index_of("formula @")][1]),
    *(
        STORED[index_of(what)][1]
        for what in (
            "TeX",
            "lone dollar",
            "backslash",
            "quotes",
            "html element",
            "template literal",
            "RTL mark",
            "emoji and CJK",
        )
    ),
]


def site_texts() -> dict[str, str]:
    """Site id -> the text stored as its name and as its address."""
    texts = {f"hostile-{n}": text for n, (_what, text) in enumerate(STORED)}
    texts |= {f"hostile-bare-{n}": bare(text) for n, (_what, text) in enumerate(STORED)}
    texts |= {f"broken-tex-{n}": text for n, text in enumerate(BROKEN_TEX)}
    return texts


def _put_hostile_text(location, catalog) -> None:
    store = open_store(location, catalog)
    try:
        towns = {t.id: t for t in store.all_features("towns")}
        park = towns[PARK_TOWN].geometry
        features = []
        for number, (site_id, text) in enumerate(site_texts().items()):
            lon = PARK[0] + 0.0004 * (number % 8 - 4)
            lat = PARK[1] + 0.0004 * (number // 8 - 3)
            assert park.contains(shapely.Point(lon, lat)), (lon, lat)
            feature = {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {
                    "id": site_id,
                    "name": text,
                    "address": text,
                    "kind": "support_post",
                    "town_code": PARK_TOWN,
                    "status": "open",
                    "eligible": ["veteran"],
                    "updated_at": "2026-11-30",
                    "sample": True,
                    "source": "tests/hostile.py",
                    "position_quality": "approximate",
                    "floor": FLOOR,
                },
            }
            features.append(catalog.validate_feature("stations", feature))
        store.write("stations", features, actor="test:hostile")
        others = sorted(code for code in towns if code != PARK_TOWN)
        renamed = []
        for code, name in zip(others, TOWN_NAMES, strict=True):
            town = towns[code]
            feature = {
                "type": "Feature",
                "geometry": mapping(town.geometry),
                "properties": {**town.properties, "name": name, "population_note": name},
            }
            renamed.append(catalog.validate_feature("towns", feature))
        store.write("towns", renamed, actor="test:hostile")
    finally:
        store.close()


@pytest.fixture(scope="module")
def hostile_path(seeded_path, catalog):
    """The module's seeded store (GeoPackage, then PostGIS), with the corpus in it."""
    _put_hostile_text(seeded_path, catalog)
    return seeded_path


@pytest.fixture(scope="module")
def hostile_client(hostile_path) -> Iterator[TestClient]:
    app = create_app(Settings(store=str(hostile_path)))
    with TestClient(app) as client:
        yield client


# -- PDFs: every stored text drawn literally --------------------------------------------


@pytest.fixture(scope="module")
def needs_poppler():
    if not POPPLER:
        if os.environ.get("CI") == "true":
            pytest.fail("poppler-utils is missing (CI=true: the PDF tests must run)")
        pytest.skip("poppler-utils is not installed")


def pdf_text(content: bytes, folder: Path) -> str:
    """The PDF's text in drawing order (``pdftotext -raw``): a wrapped table cell
    comes out as its lines one after another, as a reader reads them."""
    path = folder / "read.pdf"
    path.write_bytes(content)
    return subprocess.run(
        ["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@functools.cache
def _drawable() -> set[int]:
    from matplotlib.ft2font import FT2Font

    from geo_service.outputs.printing import FONT_FILES

    return set(FT2Font(next(p for p in FONT_FILES if Path(p).exists())).get_charmap())


def _compact(text: str) -> str:
    """Without spaces, line breaks and bidi controls: the table wraps text at any
    character, and pdftotext adds and moves bidi marks around right-to-left text."""
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")


def printed(text: str, pdf: str) -> bool:
    """Whether ``text`` reads in ``pdf`` as written: every character the font can
    draw, in order; a character it lacks (the emoji) prints as a box, so any
    short run stands in for it."""
    drawable = _drawable()
    pieces, piece = [], ""
    for ch in _compact(text):
        if ord(ch) in drawable:
            piece += ch
        else:
            if piece:
                pieces.append(piece)
            piece = ""
    if piece:
        pieces.append(piece)
    pattern = ".{0,4}?".join(re.escape(p) for p in pieces)
    return re.search(pattern, _compact(pdf)) is not None


def test_every_hostile_text_prints_literally_in_the_atlas(hostile_client, needs_poppler, tmp_path):
    """The whole atlas: each site's name and address in the index tables, each
    town name in the overview (labels, summary table) and its page's title."""
    answer = hostile_client.get("/print/atlas.pdf")
    assert answer.status_code == 200, answer.text
    text = pdf_text(answer.content, tmp_path)
    assert TEX in text  # a town's name, whole on its label and in its page's title
    for site_id, stored in site_texts().items():
        assert printed(stored, text), (site_id, stored)
    overview = text.split("\f")[0]
    for name in TOWN_NAMES:
        assert printed(name, overview), name
        assert printed(f"{name} 拥军服务资源分布图", text), name


def test_the_town_page_prints_each_name_and_address_as_stored(
    hostile_client, needs_poppler, tmp_path
):
    answer = hostile_client.get(f"/print/towns/{PARK_TOWN}.pdf")
    assert answer.status_code == 200, answer.text
    text = pdf_text(answer.content, tmp_path)
    assert "公园街道 拥军服务资源分布图" in text
    for site_id, stored in site_texts().items():
        assert printed(stored, text), (site_id, stored)


def test_the_nearest_sheet_at_a_tex_address_prints_it_literally(
    hostile_client, needs_poppler, tmp_path
):
    """A resident's sheet for the address ``$\\frac{1}{0}$ and $x^2$`` (a stored
    site's, in 公园街道): the address heads the page as typed, and the nearest
    sites, hostile names among them, are printed as stored."""
    address = bare(TEX)
    assert "$x^2$" in address
    answer = hostile_client.get("/print/nearest.pdf", params={"address": address})
    assert answer.status_code == 200, answer.text
    text = pdf_text(answer.content, tmp_path)
    assert address in text  # the heading: dollars and backslashes as typed
    (found,) = hostile_client.get("/geocode", params={"q": address, "limit": 1}).json()["features"]
    lon, lat = found["geometry"]["coordinates"]
    names = []
    for layer in ("stations", "green_channels", "medical", "memorials", "education"):
        params = {"lon": lon, "lat": lat, "k": 2, "layers": layer}
        names += [
            f["properties"]["name"]
            for f in hostile_client.get("/nearest", params=params).json()["features"]
        ]
    assert any(name in site_texts().values() for name in names)
    for name in names:
        assert printed(name, text), name


def test_broken_tex_in_a_name_or_an_address_no_longer_fails_the_print_job(
    hostile_client, needs_poppler, tmp_path
):
    """Finding: ``$...$`` was read as a formula; one matplotlib cannot parse made
    the atlas, the town pages and the nearest sheet answer 500 (a failed job)."""
    for path, params in (
        ("/print/atlas.pdf", {}),
        (f"/print/towns/{PARK_TOWN}.pdf", {}),
        ("/print/nearest.pdf", {"address": BROKEN_TEX[1]}),
    ):
        answer = hostile_client.get(path, params=params)
        assert answer.status_code == 200, (path, answer.text)
        text = pdf_text(answer.content, tmp_path)
        assert r"$x^$" in text, path
        if path != "/print/nearest.pdf":
            assert printed(BROKEN_TEX[0], text), path


def test_every_text_of_a_page_is_literal_whatever_made_it(needs_poppler, tmp_path):
    """The guard, not the call sites: a text made with mathtext on (as a new
    label might be), a table cell (which ``findobj`` does not reach) and a
    label moved by adjustText are all written as typed."""
    import matplotlib.pyplot as plt
    from adjustText import adjust_text

    from geo_service.outputs.printing import _write, use_cjk_font

    use_cjk_font()

    def page(pdf):
        with plt.rc_context({"text.parse_math": True}):
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.suptitle(r"标题 $\alpha$", parse_math=True)
            ax = fig.add_axes([0.1, 0.5, 0.8, 0.4])
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            labels = [ax.text(0.5, 0.5, f"标签{n} $x^{n}$") for n in range(3)]
            adjust_text(labels, ax=ax)
            table = fig.add_axes([0.1, 0.1, 0.8, 0.3]).table(
                cellText=[[r"单元格 $\frac{1}{2}$", r"$\notacommand$"]],
                colLabels=["名称 $a_b$", "地址"],
            )
            assert table is not None
        pdf.savefig(fig)
        plt.close(fig)

    text = pdf_text(_write(page), tmp_path)
    for literal in (
        r"标题 $\alpha$",
        "标签0 $x^0$",
        "标签2 $x^2$",
        r"单元格 $\frac{1}{2}$",
        r"$\notacommand$",
        "名称 $a_b$",
    ):
        assert literal in text, literal


# -- CSV and XLSX: formulas neutralised, nothing else changed --------------------------


def expected_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cli(*args: str) -> None:
    from geo_service.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)


def test_the_csv_export_neutralises_formulas_and_keeps_the_rest(hostile_path, tmp_path):
    """Finding: ``geo-service export --format csv`` wrote ``=HYPERLINK(...)`` raw."""
    out = tmp_path / "stations.csv"
    _cli("export", "stations", "--format", "csv", "--out", str(out), "--store", str(hostile_path))
    rows = {r["id"]: r for r in csv.DictReader(out.open(encoding="utf-8-sig"))}
    texts = site_texts()
    assert set(texts) <= set(rows)
    for site_id, stored in texts.items():
        row = rows[site_id]
        assert row["name"] == expected_cell(stored), site_id
        assert row["address"] == expected_cell(stored), site_id
        assert float(row["floor"]) == FLOOR  # a number, not text: no quote
        assert 118.0 < float(row["lon"]) < 118.1 and 36.7 < float(row["lat"]) < 36.9
    assert rows["hostile-bare-10"]["name"].startswith("'=HYPERLINK(")
    assert rows["hostile-bare-12"]["name"] == "'-2+3"
    towns = tmp_path / "towns.csv"
    _cli("export", "towns", "--format", "csv", "--out", str(towns), "--store", str(hostile_path))
    names = {r["id"]: r for r in csv.DictReader(towns.open(encoding="utf-8-sig"))}
    assert {r["name"] for r in names.values()} >= {expected_cell(n) for n in TOWN_NAMES}
    assert all(r["population"] == "" or int(r["population"]) > 0 for r in names.values())


def test_the_coverage_csv_neutralises_town_names(hostile_client):
    """Finding: ``/coverage?f=csv`` wrote a town named ``=HYPERLINK(...)`` raw."""
    answer = hostile_client.get("/coverage", params={"f": "csv"})
    assert answer.status_code == 200
    header, *rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    name, population = header.index("镇街 town_name"), header.index("人口 population")
    share = header.index("覆盖人口比例 population_covered_share")
    report = {t["town_code"]: t for t in hostile_client.get("/coverage").json()["towns"]}
    assert len(rows) == len(report)
    for row in rows:
        town = report[row[0]]
        assert row[name] == expected_cell(town["town_name"])
        assert int(row[population]) == town["population"]  # numbers as numbers
        assert float(row[share]) == town["population_covered_share"]
    assert {r[name] for r in rows} >= {expected_cell(n) for n in TOWN_NAMES}
    assert '\'=HYPERLINK("http://example.invalid","点我")' in {r[name] for r in rows}


def _import_file(path: Path) -> Path:
    """A town office's sheet with the corpus as names and addresses, bare and marked."""
    texts = [text for _what, text in STORED] + [bare(text) for _what, text in STORED]
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["名称", "类型", "地址", "经度", "纬度"])
        for n, text in enumerate(texts):
            lon = PARK[0] + 0.0004 * (n % 8 - 4)
            writer.writerow([text, "拥军服务驿站", text, lon, PARK[1] + 0.003])
    return path


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_import_report_neutralises_every_cell(tmp_path, store, catalog, suffix):
    """Finding: the CSV report wrote names like ``=HYPERLINK(...)`` raw (the XLSX
    was sanitised, by a copy of the rule only it used)."""
    from geo_service.outputs.import_report import COLUMNS, write_report
    from geo_service.services.importing import plan_import

    plan = plan_import(_import_file(tmp_path / "hostile.csv"), "stations", catalog, store)
    path = tmp_path / f"report{suffix}"
    write_report(plan, path)
    if suffix == ".csv":
        header, *rows = list(csv.reader(path.open(encoding="utf-8-sig")))
        lines = [int(r[0]) for r in rows]
    else:
        sheet = load_workbook(path).active
        assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
        header, *rows = [[c.value for c in row] for row in sheet.iter_rows()]
        lines = [r[0] for r in rows]
        assert all(isinstance(line, int) for line in lines)  # numeric cells
    assert header == COLUMNS
    assert lines == [r.line for r in plan.rows]
    by_line = {r.line: r for r in plan.rows}
    names = []
    for line, row in zip(lines, rows, strict=True):
        stored = by_line[line].name or ""
        assert row[3] == (expected_cell(stored) or (None if suffix == ".xlsx" else "")), line
        assert row[5] == (
            expected_cell("; ".join(by_line[line].reasons)) or (None if suffix == ".xlsx" else "")
        )
        names.append(row[3])
    for _what, text in STORED:
        assert text in names
        assert expected_cell(bare(text)) in names
    assert "'@SUM(A1:A2)" in names and "'+1+1" in names


def test_the_coverage_workbook_has_no_formula_and_numbers_as_numbers(hostile_path, tmp_path):
    """Finding: the coverage workbook wrote town names (and notes) raw; openpyxl
    stored ``=HYPERLINK(...)`` as a live formula cell."""
    out = tmp_path / "coverage.xlsx"
    _cli(
        "coverage", "--layers", "stations", "-p", "1", "--out", str(out), "--store",
        str(hostile_path),
    )  # fmt: skip
    book = load_workbook(out)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(FORMULA_STARTS), cell.coordinate
    towns = book["镇街覆盖与达标"]
    header = [c.value for c in towns[1]]
    name, note = header.index("镇街"), header.index("人口说明")
    population, share = header.index("人口"), header.index("覆盖人口比例")
    rows = [r for r in towns.iter_rows(min_row=2, max_row=14, values_only=True)]
    assert {r[name] for r in rows} >= {expected_cell(n) for n in TOWN_NAMES}
    for row in rows:  # a town's note is its name, unless a placeholder replaced the figure
        if row[name] != "公园街道":
            assert row[note] == row[name] or row[note].startswith("无人口统计数："), row
    assert sum(row[note] in {expected_cell(n) for n in TOWN_NAMES} for row in rows) >= 4
    for row in rows:
        assert isinstance(row[population], int) and isinstance(row[share], float), row
    picks = book["选址建议"]
    for row in picks.iter_rows(min_row=2, max_row=3, values_only=True):
        assert isinstance(row[2], float) and isinstance(row[3], float)  # 经度, 纬度


# -- the one rule, and no writer around it --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+86 533", "'+86 533"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "'=1"),  # already neutral: not quoted twice
        ("a=1", "a=1"),
        ("", ""),
        ("公园街道", "公园街道"),
        (-2.5, -2.5),
        (-3, -3),
        (0, 0),
        (True, True),
        (None, None),
    ],
)
def test_one_rule_for_every_cell(value, cell):
    assert safe_cell(value) == cell
    assert safe_cell(safe_cell(value)) == cell


def test_a_workbook_saved_through_the_guard_holds_no_formula(tmp_path):
    """Even a cell written around ``xlsx_row``: ``save_workbook`` sweeps them all."""
    book = Workbook()
    sheet = book.active
    sheet.append(['=HYPERLINK("http://example.invalid")', -2.5, "#N/A", "-", 7])
    sheet["A2"] = "+1+1"
    save_workbook(book, tmp_path / "x.xlsx")
    cells = list(load_workbook(tmp_path / "x.xlsx").active.iter_rows())
    assert all(c.data_type != "f" for row in cells for c in row)
    first = cells[0]
    assert first[0].value == '\'=HYPERLINK("http://example.invalid")'
    assert (first[1].value, first[1].data_type) == (-2.5, "n")
    assert (first[2].value, first[2].data_type) == ("#N/A", "s")  # text, not an error cell
    assert first[3].value == "'-" and first[4].value == 7
    assert cells[1][0].value == "'+1+1"


WRITERS = {
    "csv.writer / DictWriter": re.compile(r"\bcsv\.(writer|DictWriter)\("),
    "pandas to_csv / to_excel": re.compile(r"\.to_(csv|excel)\("),
    "PdfPages": re.compile(r"\bPdfPages\("),
    "a figure saved outside a page": re.compile(r"\bfig(ure)?\.savefig\("),
}
#: In a module that uses openpyxl, any ``.save(`` is a workbook written around the guard.
WORKBOOK_SAVE = re.compile(r"\.save\(")


def test_no_spreadsheet_or_pdf_writer_bypasses_the_guards():
    """A new CSV/XLSX writer goes through ``outputs/cells.py``; a new PDF page
    through ``printing._LiteralPages``. Anything else appears here."""
    found = []
    for path in sorted((ROOT / "geo_service").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "geo_service/outputs/cells.py":
            continue
        source = path.read_text(encoding="utf-8")
        writers = dict(WRITERS)
        if "openpyxl" in source:
            writers["openpyxl save"] = WORKBOOK_SAVE
        for number, line in enumerate(source.splitlines(), 1):
            for what, pattern in writers.items():
                if pattern.search(line):
                    found.append(f"{relative}:{number}: {what}: {line.strip()}")
    assert found == []
    printing = (ROOT / "geo_service/outputs/printing.py").read_text(encoding="utf-8")
    assert "with _LiteralPages(" in printing and "class _LiteralPages(PdfPages)" in printing


def test_numbers_of_a_numeric_frame_stay_numbers(tmp_path):
    import pandas as pd

    from geo_service.outputs.cells import write_frame_csv

    frame = pd.DataFrame(
        {"name": ["=1+1", "公园", None], "floor": [-2, 3, None], "share": [-0.5, 0.25, np.nan]}
    )
    frame["floor"] = frame["floor"].astype("Int64")
    write_frame_csv(frame, tmp_path / "f.csv")
    rows = list(csv.reader((tmp_path / "f.csv").open(encoding="utf-8-sig")))
    assert rows == [
        ["name", "floor", "share"],
        ["'=1+1", "-2", "-0.5"],
        ["公园", "3", "0.25"],
        ["", "", ""],
    ]
