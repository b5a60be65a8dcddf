"""The coverage workbook an office forwards as it is: read back with openpyxl
as a reader opens it (percentages, 是/否, Chinese headers and notes, columns
wide enough for their text, the suggested sites' coordinate system)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from geo_service.api import create_app
from geo_service.outputs.cells import display_width
from geo_service.outputs.coverage_workbook import SHEETS, SHEETS_EN, write_workbook
from geo_service.runtime import Runtime
from geo_service.services.planning import Question, coverage_report, recommend_sites
from geo_service.settings import Settings
from geo_service.sources.style import default_style_file, load_style
from geo_service.store import open_store
from geo_service.store.seeding import seed_store
from tests.conftest import ROOT

STATIONS = Question(("stations",), None, 1000.0)


@pytest.fixture(scope="module")
def office(tmp_path_factory, catalog):
    """The shipped data in an embedded store (the workbook is a renderer: one backend does)."""
    path = tmp_path_factory.mktemp("wb") / "store.gpkg"
    store = open_store(path, catalog)
    seed_store(store, catalog)
    settings = Settings(store=str(path))
    yield Runtime(settings, catalog, store, load_style(default_style_file(), catalog))
    store.close()


def workbook(tmp_path: Path, report, recommendation=None, lang="zh"):
    path = tmp_path / f"coverage-{lang}.xlsx"
    write_workbook(path, report, recommendation, lang)
    return load_workbook(path)


def table(sheet):
    """Header, the rows under it up to the first empty row, and the notes below."""
    rows = list(sheet.iter_rows(values_only=True))
    end = next((i for i, row in enumerate(rows) if all(v is None for v in row)), len(rows))
    notes = [row[0] for row in rows[end + 1 :] if row[0]]
    return list(rows[0]), rows[1:end], notes


def column_of(sheet, header: str) -> str:
    return next(c.column_letter for c in sheet[1] if c.value == header)


def test_an_office_forwards_the_workbook_as_it_is(office, tmp_path):
    report = coverage_report(office, STATIONS)
    recommendation = recommend_sites(office, STATIONS, 1)
    book = workbook(tmp_path, report, recommendation)
    assert book.sheetnames == list(SHEETS)
    towns = book[SHEETS[0]]
    header, rows, notes = table(towns)
    assert len(rows) == len(report["towns"]) == 13
    # Shares are numbers a reader sees as percentages (0.3277 shows as 32.8%).
    for name in ("覆盖人口比例", "覆盖面积比例"):
        letter = column_of(towns, name)
        for cell in towns[letter][1 : len(rows) + 1]:
            assert isinstance(cell.value, float) and 0 <= cell.value <= 1
            assert cell.number_format == "0.0%"
    assert towns[f"{column_of(towns, '人口')}2"].number_format == "#,##0"
    # Yes and no in Chinese, never TRUE/FALSE, in every sheet.
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            assert all(cell.data_type != "b" for cell in row), sheet.title
    for name in ("人口为估计值", "镇街退役军人服务站", "全部达标"):
        assert {row[header.index(name)] for row in rows} <= {"是", "否"}
    # Columns as wide as what they show, a Chinese character counting two.
    for sheet in book.worksheets:
        end = len(table(sheet)[1]) + 1
        for column in sheet.iter_cols(min_row=1, max_row=end):
            width = sheet.column_dimensions[column[0].column_letter].width
            widest = max(display_width(c.value) for c in column if not isinstance(c.value, float))
            assert width >= min(widest, 38), (sheet.title, column[0].value, width)
    assert towns.column_dimensions[column_of(towns, "步行距离中位数(米)")].width >= 19
    # Notes in Chinese, the sample notice last.
    own = notes[:-1]
    assert len(notes) == 5 and notes[-1] == report["sample_notes"]["zh"]
    for note in notes:
        assert not re.search(r"\b(?!population\b)[a-z]{3,}\b", note), note
    assert any(n.startswith("覆盖范围：步行 1000 米以内。步行距离 = 直线距离 × 1.3") for n in own)
    # Town totals spread evenly: people and area agree, and the note says why.
    assert all(
        row[header.index("覆盖人口比例")] == row[header.index("覆盖面积比例")] for row in rows
    )
    assert any("“覆盖人口比例”等于“覆盖面积比例”" in n and "--population" in n for n in own)
    # The planned station is not counted, and the total's note says so.
    planned = [
        s for s in office.store.all_features("stations") if s.properties["status"] == "planned"
    ]
    assert report["not_open"] == {"planned": len(planned)} and planned
    layer_total = len(office.store.all_features("stations"))
    assert sum(row[header.index("设施数")] for row in rows) == layer_total - len(planned)
    assert any(
        f"共 {layer_total - len(planned)} 个" in n
        and f"另有筹建中 {len(planned)} 个未计入" in n
        and f"（{layer_total} 个）" in n
        for n in own
    )
    # A long note wraps inside the table's width instead of running off the page.
    merged = {str(r) for r in towns.merged_cells.ranges}
    assert any(r.startswith(f"A{len(rows) + 3}:") for r in merged)
    # Suggested sites say their coordinate system, in the header and a note.
    sites = book[SHEETS[2]]
    site_header, site_rows, site_notes = table(sites)
    assert site_header[2:4] == ["经度（WGS-84）", "纬度（WGS-84）"]
    mclp = [r for r in site_rows if r[1] == "最大覆盖（MCLP）"]
    assert [(r[2], r[3], r[5]) for r in mclp] == [
        (s["lon"], s["lat"], s["gain"]) for s in recommendation["sites"]
    ]
    assert site_notes[0].startswith("坐标系：WGS-84（EPSG:4326")
    share = f"{recommendation['covered_share_after']:.1%}"
    assert any(share in n for n in site_notes)
    for note in site_notes:
        assert not re.search(r"\b[a-z]{3,}\b", note), note


def test_the_workbook_in_english_for_the_english_console(office, tmp_path):
    report = coverage_report(office, STATIONS)
    recommendation = recommend_sites(office, STATIONS, 1)
    book = workbook(tmp_path, report, recommendation, "en")
    assert book.sheetnames == list(SHEETS_EN)
    towns = book[SHEETS_EN[0]]
    header, rows, notes = table(towns)
    assert header[:3] == ["Town code", "Town", "Facilities"]
    for cell in towns[column_of(towns, "People covered")][1 : len(rows) + 1]:
        assert isinstance(cell.value, float) and cell.number_format == "0.0%"
    assert {row[header.index("All met")] for row in rows} <= {"yes", "no"}
    cjk = re.compile(r"[\u4e00-\u9fff]")
    assert not any(cjk.search(h) for h in header)
    assert notes[-1] == report["sample_notes"]["en"]
    assert any("share of people covered equals the share of area" in n for n in notes)
    assert any("1 planned" in n for n in notes)
    _header, _rows, site_notes = table(book[SHEETS_EN[2]])
    assert _header[2:4] == ["Longitude (WGS-84)", "Latitude (WGS-84)"]
    for note in notes + site_notes:
        assert not cjk.search(note), note


def test_an_office_population_file_makes_people_and_area_differ(office, tmp_path):
    """Each town's people all at its heart: a town whose heart is reached has
    every resident covered while much of its area is not."""
    path = population_csv(office, tmp_path / "社区人口.csv")
    question = Question(("stations",), None, 1000.0, population_file=str(path))
    report = coverage_report(office, question)
    assert report["population_source"] == path.name and report["population_outside"] == 1
    header, rows, notes = table(workbook(tmp_path, report)[SHEETS[0]])
    people, area = header.index("覆盖人口比例"), header.index("覆盖面积比例")
    assert any(row[people] != row[area] for row in rows)
    assert {row[people] for row in rows} <= {0.0, 1.0}
    assert sum(row[header.index("人口")] for row in rows) == sum(1000 * (n + 1) for n in range(13))
    assert any(f"来自人口分布文件 {path.name}" in n and "1 个点在区界外" in n for n in notes)
    assert not any("等于" in n for n in notes)


def population_csv(office, path: Path) -> Path:
    """Each town's people at its heart (1,000, 2,000, … by town), one point outside."""
    lines = ["社区,经度,纬度,常住人口"]
    for n, town in enumerate(office.store.all_features("towns")):
        heart = town.geometry.representative_point()
        lines.append(f"社区{n},{heart.x:.6f},{heart.y:.6f},{1000 * (n + 1)}")
    lines.append("区外,119.5,37.5,500")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_the_api_takes_the_office_population_file_as_a_process_input(office, tmp_path):
    path = population_csv(office, tmp_path / "社区人口.csv")
    population = {
        "value": base64.b64encode(path.read_bytes()).decode(),
        "mediaType": "text/csv",
        "filename": path.name,
    }
    settings = Settings(store=str(office.settings.store), spool_dir=tmp_path / "spool")
    with TestClient(create_app(settings)) as client:
        inputs = {"layers": ["stations"], "radius": 1000, "population": population}
        answer = client.post("/processes/coverage-report/execution", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        # A bad row refuses the file before any work, the row named.
        bad = tmp_path / "bad.csv"
        bad.write_text("经度,纬度,人口\n118.05,36.80,100\n118.05,36.80,-5\n", encoding="utf-8")
        refused = client.post(
            "/processes/coverage-report/execution",
            json={
                "inputs": {
                    **inputs,
                    "population": {
                        "value": base64.b64encode(bad.read_bytes()).decode(),
                        "mediaType": "text/csv",
                    },
                }
            },
        )
    assert refused.status_code == 400 and refused.json()["parameter"] == "population"
    assert "line 3" in refused.json()["detail"]
    assert report["population_source"] == path.name and report["population_outside"] == 1
    towns = report["towns"]
    assert sum(t["population"] for t in towns) == sum(1000 * (n + 1) for n in range(13))
    assert any(t["population_covered_share"] != t["area_covered_share"] for t in towns)
    # The same question by the CLI, to the workbook: the same shares.
    out = tmp_path / "coverage.xlsx"
    command = ["coverage", "--layers", "stations", "--radius", "1000", "--population", str(path)]
    command += ["--out", str(out), "--store", str(office.settings.store)]
    done = subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    header, rows, notes = table(load_workbook(out)[SHEETS[0]])
    shares = {row[0]: row[header.index("覆盖人口比例")] for row in rows}
    assert shares == {t["town_code"]: t["population_covered_share"] for t in towns}
    assert any(f"来自人口分布文件 {path.name}" in n for n in notes)
