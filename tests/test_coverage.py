"""Coverage planning on hand-built cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
from shapely.geometry import Point, box

from geo_service.analysis import coverage as cv
from geo_service.errors import InvalidParameter
from geo_service.store import StoredFeature
from geo_service.web.markup import read_json_script

# A square town 6 km wide in Zibo (EPSG:4548 metres), and its WGS-84 outline.
TO_WGS = pyproj.Transformer.from_crs(4548, 4326, always_xy=True)
TO_METRIC = pyproj.Transformer.from_crs(4326, 4548, always_xy=True)
CENTRE = TO_METRIC.transform(118.05, 36.80)


def wgs_box(x0, y0, x1, y1):
    import shapely

    return shapely.transform(
        box(x0, y0, x1, y1).segmentize(100),
        lambda xy: np.column_stack(TO_WGS.transform(xy[:, 0], xy[:, 1])),
    )


def town(code, name, geometry, population):
    props = {"id": code, "name": name, "population": population, "kind": "subdistrict"}
    return StoredFeature("towns", code, props, geometry)


def site(
    site_id, x, y, kind="town_station", town_code="370303001", status="open", layer="stations"
):
    lon, lat = TO_WGS.transform(x, y)
    props = {"id": site_id, "kind": kind, "town_code": town_code, "status": status}
    return StoredFeature(layer, site_id, props, Point(lon, lat))


def test_a_station_at_the_centre_covers_a_disc():
    cx, cy = CENTRE
    square = town("370303001", "方镇", wgs_box(cx - 3000, cy - 3000, cx + 3000, cy + 3000), 36_000)
    grid = cv.demand_grid([square], cell_m=20)
    rows = cv.coverage_by_town([site("s", cx, cy)], grid, radius_m=1000, detour=1.0)
    expected = math.pi * 1000**2 / 6000**2
    assert rows[0].area_covered_share == pytest.approx(expected, rel=0.01)
    # people are spread evenly, so the covered share of people is the same
    assert rows[0].population_covered_share == pytest.approx(expected, rel=0.01)
    # with the 1.3 detour a 1,000 m walk reaches 769 m in a straight line
    rows = cv.coverage_by_town([site("s", cx, cy)], grid, radius_m=1000)
    assert rows[0].area_covered_share == pytest.approx(
        math.pi * (1000 / 1.3) ** 2 / 6000**2, rel=0.01
    )
    # the farthest resident is in a corner: 3,000·√2 m straight, × 1.3
    assert rows[0].max_distance_m == pytest.approx(3000 * math.sqrt(2) * 1.3, rel=0.01)


def test_two_towns_with_known_populations():
    cx, cy = CENTRE
    west = town("370303001", "西镇", wgs_box(cx - 4000, cy - 1000, cx, cy + 1000), 10_000)
    east = town("370303002", "东镇", wgs_box(cx, cy - 1000, cx + 4000, cy + 1000), 30_000)
    grid = cv.demand_grid([west, east], cell_m=50)
    assert grid.population[grid.town == "370303001"].sum() == pytest.approx(10_000)
    assert grid.population[grid.town == "370303002"].sum() == pytest.approx(30_000)
    # A station on the western edge of the west town reaching 2,000 m in a straight line
    # covers the west town's western half: 5,000 people, none in the east.
    rows = cv.coverage_by_town([site("s", cx - 4000, cy)], grid, radius_m=2000, detour=1.0)
    by_code = {r.town_code: r for r in rows}
    assert by_code["370303001"].population_covered_share == pytest.approx(
        (math.pi * 2000**2 / 2 - _segment(2000, 1000)) / 8e6, rel=0.02
    )
    assert by_code["370303002"].population_covered_share == 0
    assert by_code["370303001"].facilities == 1 and by_code["370303002"].facilities == 0
    assert by_code["370303002"].median_distance_m > 4000


def _segment(r, d):
    """Area of the circle segment beyond a chord at distance d from the centre."""
    return r * r * math.acos(d / r) - d * math.sqrt(r * r - d * d)


def test_a_town_without_a_figure_gets_a_flagged_placeholder():
    cx, cy = CENTRE
    known = town("370303001", "有数镇", wgs_box(cx - 2000, cy - 1000, cx, cy + 1000), 40_000)
    unknown = town("370303002", "无数镇", wgs_box(cx, cy - 1000, cx + 2000, cy + 1000), None)
    grid = cv.demand_grid([known, unknown], cell_m=50)
    assert grid.towns["370303002"]["estimated"] is True
    assert grid.towns["370303002"]["population"] == pytest.approx(40_000, rel=0.01)
    assert grid.towns["370303002"]["note"].startswith("无人口统计数：暂以")


def test_mclp_beats_greedy_where_greedy_is_myopic():
    # On a line, radius 1 km (no detour): C covers u2+u3+u5 = 11, A covers u1+u2 = 10,
    # B covers u3+u4 = 10. Greedy takes C then one of A/B: 16. The optimum is A+B: 20.
    demand = np.array([[0, 0], [1500, 0], [3500, 0], [5000, 0], [2500, 0]], dtype=float)
    weights = np.array([5, 5, 5, 5, 1], dtype=float)
    candidates = np.array([[750, 0], [4250, 0], [2500, 0]], dtype=float)
    result = cv.recommend_sites(
        demand, weights, np.zeros(5, dtype=bool), candidates, radius_m=1010, p=2, detour=1.0
    )
    assert sorted(s["x"] for s in result.sites) == [750, 4250]
    assert result.covered_after == 20
    assert result.greedy_covered_after == 16
    assert next(s["x"] for s in result.greedy_sites) == 2500
    assert [s["gain"] for s in result.sites] == [10, 10]
    assert result.solve_seconds >= 0


def test_existing_facilities_stay_and_count_as_covered():
    demand = np.array([[0, 0], [1500, 0], [3500, 0], [5000, 0], [2500, 0]], dtype=float)
    weights = np.array([5, 5, 5, 5, 1], dtype=float)
    covered = np.array([True, True, False, False, False])  # A's people already reached
    candidates = np.array([[750, 0], [4250, 0], [2500, 0]], dtype=float)
    result = cv.recommend_sites(demand, weights, covered, candidates, 1010, p=1, detour=1.0)
    assert result.covered_before == 10
    assert [s["x"] for s in result.sites] == [4250]  # B adds 10; C adds only 6 now
    assert result.covered_after == 20


def test_compliance_and_progress():
    towns = [
        town("370303001", "甲街道", box(0, 0, 1, 1), 1),
        town("370303002", "乙街道", box(1, 0, 2, 1), 1),
    ]
    facilities = [
        site("a", 0, 0, "town_station", "370303001"),
        site("b", 0, 0, "support_post", "370303001"),
        site("c", 0, 0, "health_station", "370303001", layer="medical"),
        site("d", 0, 0, "bank", "370303001", layer="green_channels"),
        site("e", 0, 0, "lecture_venue", "370303001", layer="education"),
        site("f", 0, 0, "town_station", "370303002", status="planned"),
    ]
    for f in facilities:
        f.properties["responsible_unit"] = "甲街道办事处" if f.id != "f" else "乙街道办事处"
    result = cv.compliance_by_town(facilities, towns)
    assert result["370303001"]["all_met"] is True
    assert result["370303002"]["meets"]["station"] is False  # planned is not open
    assert result["370303002"]["counts"]["station"] == 0
    progress = cv.progress_by_unit(facilities)
    assert progress["乙街道办事处"] == {"open": 0, "planned": 1, "suspended": 0}
    assert progress["甲街道办事处"]["open"] == 5


@pytest.mark.parametrize(
    ("raw", "metres"), [("5min", 300), ("10min", 500), ("15min", 1000), ("800", 800), ("750m", 750)]
)
def test_radius_presets_and_metres(raw, metres):
    assert cv.parse_radius(raw) == metres


@pytest.mark.parametrize("raw", ["0", "-5", "99999", "abc", "nan", "20min"])
def test_absurd_radii_are_refused(raw):
    with pytest.raises(InvalidParameter):
        cv.parse_radius(raw)


# -- the office's question, from the API, the CLI and the map ---------------------------

STATIONS = {"layers": "stations", "kinds": "town_station,support_post", "radius": "15min"}


def test_the_api_answers_per_town_with_compliance(client):
    body = client.get("/coverage", params=STATIONS).json()
    assert body["radius_m"] == 1000 and "1.3" in body["distance"]
    assert len(body["towns"]) == 13
    row = body["towns"][0]
    for key in (
        "town_code",
        "town_name",
        "facilities",
        "population",
        "population_covered_share",
        "area_covered_share",
        "median_distance_m",
        "p90_distance_m",
        "max_distance_m",
        "has_station",
        "has_support_post",
        "has_education_site",
        "has_health",
        "has_green_channel",
    ):
        assert key in row, key
    assert sum(t["facilities"] for t in body["towns"]) == body["facilities"]
    csv_text = client.get("/coverage", params={**STATIONS, "f": "csv"}).content.decode("utf-8-sig")
    lines = csv_text.strip().splitlines()
    assert len(lines) == 14 and "镇街代码 town_code" in lines[0]


def test_the_api_refuses_bad_questions(client):
    for params, parameter in (
        ({"radius": "0"}, "radius"),
        ({"radius": "fast"}, "radius"),
        ({"layers": "shops"}, "layers"),
        ({"layers": "stations", "kinds": "bank"}, "kinds"),
        ({"f": "pdf"}, "f"),
        ({"colour": "red"}, "colour"),
    ):
        answer = client.get("/coverage", params=params)
        assert answer.status_code == 400 and answer.json()["parameter"] == parameter, params
    for p in ("0", "11", "two"):
        answer = client.get("/coverage/sites", params={"p": p})
        assert answer.status_code == 400 and answer.json()["parameter"] == "p"


def test_cli_api_and_map_agree(client, seeded_path, tmp_path):
    import subprocess
    import sys

    from openpyxl import load_workbook

    from tests.conftest import ROOT

    api = client.get("/coverage", params=STATIONS).json()
    sites = client.get("/coverage/sites", params={**STATIONS, "p": 2}).json()
    assert sites["covered_after"] >= sites["greedy"]["covered_after"]
    assert sites["covered_after"] > sites["covered_before"]
    assert len(sites["sites"]) == 2 and all(s["gain"] > 0 for s in sites["sites"])
    workbook, page = tmp_path / "coverage.xlsx", tmp_path / "coverage.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geo_service.cli",
            "coverage",
            "--radius",
            "15min",
            "--layers",
            "stations",
            "--kinds",
            "town_station,support_post",
            "-p",
            "2",
            "--out",
            str(workbook),
            "--map",
            str(page),
            "--store",
            str(seeded_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    sheet = load_workbook(workbook)["镇街覆盖与达标"]
    header = [c.value for c in sheet[1]]
    share = header.index("覆盖人口比例")
    rows = {r[0]: r for r in sheet.iter_rows(min_row=2, max_row=14, values_only=True)}
    for town in api["towns"]:
        assert rows[town["town_code"]][share] == town["population_covered_share"]
    picks = load_workbook(workbook)["选址建议"]
    mclp = [r for r in picks.iter_rows(min_row=2, values_only=True) if r[1] == "最大覆盖（MCLP）"]
    assert [(r[2], r[3], r[5]) for r in mclp] == [
        (s["lon"], s["lat"], s["gain"]) for s in sites["sites"]
    ]
    html = page.read_text(encoding="utf-8")
    served = client.get("/coverage/map", params={**STATIONS, "p": 2}).text
    # The names travel as data (a JSON block the page's script draws from).
    for page_text in (html, served):
        towns = read_json_script(page_text, "cov-data")["towns"]
        tips = {t["code"]: t["tooltip"] for t in towns}
        for town in api["towns"]:
            tip = tips[town["town_code"]]
            assert tip["title"] == town["town_name"]
            assert tip["lines"][0].startswith(f"覆盖人口 {town['population_covered_share']:.0%}")
    assert "建议新址 1:" in html and "建议新址 2:" in served


def test_a_population_file_replaces_town_totals(tmp_path, catalog):
    cx, cy = CENTRE
    square = town("370303001", "方镇", wgs_box(cx - 2000, cy - 2000, cx + 2000, cy + 2000), 99_999)
    grid = cv.demand_grid([square], cell_m=100)
    # 1,000 people at the centre, 3,000 in a corner, one point far outside the district
    points = [(cx, cy, 1000), (cx + 1900, cy + 1900, 3000), (cx + 50_000, cy, 500)]
    path = tmp_path / "population.csv"
    lines = ["经度,纬度,常住人口"]
    for x, y, people in points:
        lon, lat = TO_WGS.transform(x, y)
        lines.append(f"{lon:.7f},{lat:.7f},{people}")
    path.write_text("\n".join(lines), encoding="utf-8")
    lon, lat, people = cv.read_points_file(path, catalog, "population")
    grid = cv.apply_population(grid, lon, lat, people, path.name)
    assert grid.population.sum() == pytest.approx(4000)
    assert grid.towns["370303001"]["population"] == 4000
    assert "区界外 1 个点未计入" in grid.towns["370303001"]["note"]
    assert (grid.population_source, grid.population_outside) == ("population.csv", 1)
    rows = cv.coverage_by_town([site("s", cx, cy)], grid, radius_m=500, detour=1.0)
    # people and area now differ: the centre's 1,000 of 4,000 are covered
    assert rows[0].population_covered_share == pytest.approx(0.25)
    assert rows[0].area_covered_share == pytest.approx(math.pi * 500**2 / 4000**2, rel=0.05)


def test_a_bad_population_file_is_refused_with_its_rows(tmp_path, catalog):
    path = tmp_path / "bad.csv"
    path.write_text(
        "经度,纬度,人口\n118.05,36.80,100\n118.05,36.80,-5\nabc,36.8,10\n", encoding="utf-8"
    )
    with pytest.raises(InvalidParameter, match=r"2 bad rows: line 3: .*line 4"):
        cv.read_points_file(path, catalog, "population")


def test_office_candidates_are_used_instead_of_grid_cells(tmp_path, store, catalog):
    from geo_service.runtime import Runtime
    from geo_service.services.planning import Question, recommend_sites
    from geo_service.settings import Settings
    from geo_service.sources.style import default_style_file, load_style

    path = tmp_path / "candidates.csv"
    path.write_text(
        "名称,经度,纬度\n候选甲,118.0300,36.8200\n候选乙,118.1000,36.7600\n", encoding="utf-8"
    )
    rt = Runtime(Settings(), catalog, store, load_style(default_style_file(), catalog))
    question = Question(("stations",), None, 1000.0, candidates_file=str(path))
    result = recommend_sites(rt, question, 1)
    assert result["candidates"] == 2
    assert (result["sites"][0]["lon"], result["sites"][0]["lat"]) in {
        (118.03, 36.82),
        (118.1, 36.76),
    }


def test_repeated_layers_count_once_and_no_facility_means_no_distance(client):
    once = client.get("/coverage", params={"layers": "stations"}).json()
    twice = client.get("/coverage", params={"layers": "stations,stations"}).json()
    assert twice["facilities"] == once["facilities"]
    none = client.get("/coverage", params={"layers": "stations", "kinds": "support_base"}).json()
    if none["facilities"] == 0:  # the sample's planned base is not open
        assert all(t["median_distance_m"] is None for t in none["towns"])


def test_small_radius_candidates_reach_their_own_blocks():
    # Every uncovered block's centre is a candidate, so even a 5-minute walk
    # finds people to cover.
    cx, cy = CENTRE
    square = town("370303001", "方镇", wgs_box(cx - 2000, cy - 2000, cx + 2000, cy + 2000), 16_000)
    grid = cv.demand_grid([square], cell_m=100)
    result = cv.recommend_for_district(grid, [], radius_m=300, p=3)
    assert result.covered_after > 0
    gains = [s["gain"] for s in result.sites]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
