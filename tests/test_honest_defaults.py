"""Honest defaults and notices (issue 17): an import says every default it
fills in, a new site named like a sample site is flagged as probably the same
place, and the collections and the coverage outputs say how many sample sites
they count. On both backends."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from geo_service.api import create_app
from geo_service.outputs.coverage_workbook import write_workbook
from geo_service.services.access import issue_token
from geo_service.services.importing import plan_import
from geo_service.settings import Settings
from geo_service.sources.crs import GEOD
from geo_service.sources.importing import RowStatus
from geo_service.sources.samples import sample_name_key
from geo_service.web.markup import read_json_script
from tests.conftest import ROOT

TODAY = dt.date(2026, 12, 1)
MASHANG_SAMPLE = "st-town-mashang"  # 马尚街道退役军人服务站, sample: true
PARK_POST_SAMPLE = "st-post-02"  # 示例：拥军服务驿站（人民公园）
PARK = (118.042742, 36.810131)  # 淄博人民公园, 公园街道


def shipped(layer_file: str) -> list[dict]:
    text = (ROOT / "layers" / layer_file).read_text(encoding="utf-8")
    return json.loads(text)["features"]


def position_of(feature_id: str, layer_file: str = "stations.geojson") -> tuple[float, float]:
    feature = next(f for f in shipped(layer_file) if f["id"] == feature_id)
    lon, lat = feature["geometry"]["coordinates"]
    return lon, lat


def east_of(point, metres):
    lon, lat, _ = GEOD.fwd(point[0], point[1], 90, metres)
    return round(lon, 6), round(lat, 6)


def write_csv(path, header, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def plan(path, store, catalog, layer="stations"):
    return plan_import(path, layer, catalog, store, today=TODAY, actor="test")


# -- import defaults ------------------------------------------------------------------


def test_a_file_without_quality_eligibility_or_status_says_what_it_assumed(
    tmp_path, store, catalog
):
    # A town office's list of support posts: names, kinds and places, nothing more.
    path = write_csv(
        tmp_path / "驿站.csv",
        ["名称", "类型", "地址", "经度", "纬度"],
        [
            ["公园街道拥军驿站甲", "拥军服务驿站", "人民西路1号", *east_of(PARK, 100)],
            ["公园街道拥军驿站乙", "拥军服务驿站", "人民西路9号", *east_of(PARK, 300)],
            ["", "拥军服务驿站", "没有名称的一行", *east_of(PARK, 500)],  # an error row
        ],
    )
    result = plan(path, store, catalog)
    first, second = result.features[2], result.features[3]
    for feature in (first, second):
        # Nobody said the point was measured on site: not 实测.
        assert feature.properties["position_quality"] == "approximate"
        assert feature.properties["eligible"] == list(catalog.values["eligible"])
        assert feature.properties["status"] == "open"
    for row in result.rows[:2]:
        assert row.status == RowStatus.ok  # a default is said, not a fault
        assert sorted(row.defaults) == ["eligible", "position_quality", "status"]
        said = " ".join(row.reasons)
        assert "未填位置精度，记为“示意位置”（approximate），不是“实测”" in said
        assert "no position quality given: recorded as approximate" in said
        assert "未填服务对象，记为全部五类优抚对象" in said
        assert "未填状态，记为“正常开放”" in said
    # The row that cannot be written names its error, not the defaults.
    assert result.rows[2].status == RowStatus.error
    assert not any("未填状态" in reason for reason in result.rows[2].reasons)
    assert result.default_counts() == {"position_quality": 2, "eligible": 2, "status": 2}
    summary = result.summary()
    assert "2 行未填位置精度，记为“示意位置”（approximate），不是“实测”" in summary[0]
    assert summary[0].startswith("2 行") and "(2 rows without position quality" in summary[0]


def test_values_the_file_gives_are_kept_and_no_default_is_claimed(tmp_path, store, catalog):
    path = write_csv(
        tmp_path / "驿站.csv",
        ["名称", "类型", "地址", "经度", "纬度", "位置精度", "服务对象", "状态"],
        [
            ["公园街道拥军驿站丙", "拥军服务驿站", "人民西路3号", *east_of(PARK, 150),
             "实测", "退役军人", "筹建中"],
            ["公园街道拥军驿站丁", "拥军服务驿站", "人民西路5号", *east_of(PARK, 250),
             "", "退役军人", ""],
        ],
    )  # fmt: skip
    result = plan(path, store, catalog)
    given = result.features[2].properties
    assert (given["position_quality"], given["eligible"], given["status"]) == (
        "surveyed",
        ["veteran"],
        "planned",
    )
    assert result.rows[0].defaults == [] and result.rows[0].reasons == []
    # An empty cell in a column the file has is a default like a missing column.
    assert sorted(result.rows[1].defaults) == ["position_quality", "status"]
    assert result.default_counts() == {"position_quality": 1, "eligible": 0, "status": 1}


def test_the_cli_dry_run_prints_the_defaults_and_the_probable_sample(tmp_path, store, catalog):
    mashang = position_of(MASHANG_SAMPLE)
    path = write_csv(
        tmp_path / "马尚.csv",
        ["名称", "类型", "地址", "经度", "纬度"],
        [["马尚街道退役军人服务站", "镇街退役军人服务站", "马尚大街1号", *east_of(mashang, 900)]],
    )
    before = store.count("stations")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "geo_service.cli", "import", str(path)),
            *("--layer", "stations", "--dry-run", "--store", store.location),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="250"),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1 行未填位置精度，记为“示意位置”（approximate），不是“实测”" in out
    assert "1 行未填服务对象" in out and "1 行未填状态" in out
    assert "1 行可能与示例站点是同一地点" in out
    assert f"可能与示例站点 {MASHANG_SAMPLE}" in out
    assert store.count("stations") == before  # a dry run writes nothing


# -- probably the same place as a sample ------------------------------------------------


def test_a_real_station_far_from_its_sample_is_flagged_as_probably_the_same_place(
    tmp_path, store, catalog
):
    mashang = position_of(MASHANG_SAMPLE)
    park_post = position_of(PARK_POST_SAMPLE)
    path = write_csv(
        tmp_path / "台账.csv",
        ["名称", "类型", "地址", "经度", "纬度"],
        [
            # Far beyond the 50 m of a probable duplicate; full-width letters and a space.
            [
                "马尚街道 退役军人服务站",
                "镇街退役军人服务站",
                "马尚大街1号",
                *east_of(mashang, 900),
            ],
            # The sample's 示例： marker and full-width brackets do not count.
            ["拥军服务驿站(人民公园)", "拥军服务驿站", "人民公园北门", *east_of(park_post, 400)],
            # Another name: nothing to say.
            ["马尚街道拥军驿站", "拥军服务驿站", "马尚大街3号", *east_of(mashang, 600)],
        ],
    )
    result = plan(path, store, catalog)
    assert result.errors == [], [r.reasons for r in result.rows]
    station, post, other = result.rows
    assert station.same_as_samples == [MASHANG_SAMPLE]
    assert any(
        reason.startswith(f"可能与示例站点 {MASHANG_SAMPLE}（马尚街道退役军人服务站）是同一地点")
        and f"probably the same place as sample {MASHANG_SAMPLE}" in reason
        for reason in station.reasons
    )
    assert station.status == RowStatus.warning  # a warning, never a refusal
    assert not any("probable duplicate" in reason for reason in station.reasons)  # 900 m
    assert post.same_as_samples == [PARK_POST_SAMPLE]
    assert other.same_as_samples == []
    assert not any("示例站点" in reason for reason in other.reasons)
    assert "2 行可能与示例站点是同一地点" in result.summary()[-1]
    # The rows are written beside the samples: deleting a sample is the office's call.
    assert {r.action for r in result.rows} == {"insert"}


def test_a_site_named_like_a_real_site_is_not_flagged(tmp_path, store, catalog):
    # 黑铁山抗日武装起义纪念馆 is a real site (sample: false) of the memorials layer.
    path = write_csv(
        tmp_path / "纪念设施.csv",
        ["名称", "类型", "地址", "经度", "纬度"],
        [["黑铁山抗日武装起义纪念馆", "纪念馆", "太平村", *east_of(PARK, 3000)]],
    )
    result = plan(path, store, catalog, layer="memorials")
    assert result.rows[0].same_as_samples == []


def test_sample_markers_width_and_spaces_do_not_change_a_name():
    assert sample_name_key("示例：拥军服务驿站（人民公园）") == sample_name_key(
        "拥军服务驿站 (人民公园)"
    )
    assert sample_name_key("Sample: ＡＢＣ 驿站") == sample_name_key("abc驿站")
    assert sample_name_key("马尚街道退役军人服务站") != sample_name_key("马尚街道拥军驿站")


# -- the API: a single create, the collections -------------------------------------------


@pytest.fixture
def office(store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    known = [town.id for town in store.all_features("towns")]
    token = issue_token(store, "office", "admin", [], known)
    with TestClient(create_app(Settings(store=store.location))) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def new_station(name: str, point: tuple[float, float]) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": list(point)},
        "properties": {
            "name": name,
            "kind": "town_station",
            "address": "马尚大街1号",
            "eligible": ["veteran"],
            "status": "open",
            "position_quality": "address",
        },
    }


def test_creating_the_real_station_names_the_sample_it_probably_replaces(office):
    client, headers = office
    point = east_of(position_of(MASHANG_SAMPLE), 700)
    created = client.post(
        "/collections/stations/items",
        json=new_station("马尚街道退役军人服务站", point),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    warnings = created.json()["warnings"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"可能与示例站点 {MASHANG_SAMPLE}（马尚街道退役军人服务站）")
    # The sample is still there: the office decides.
    assert client.get(f"/collections/stations/items/{MASHANG_SAMPLE}").status_code == 200
    other = client.post(
        "/collections/stations/items",
        json=new_station("马尚街道第二服务站", east_of(point, 200)),
        headers=headers,
    )
    assert other.status_code == 201, other.text
    assert "warnings" not in other.json()


def test_collections_say_how_many_features_are_samples(office):
    client, headers = office
    expected = {
        layer: sum(f["properties"]["sample"] for f in shipped(f"{layer}.geojson"))
        for layer in ("stations", "green_channels", "medical", "memorials", "education")
    }
    listed = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    for layer, samples in expected.items():
        body = listed[layer]
        assert body["sampleFeatures"] == samples, layer
        assert body["sampleNote"]["zh"].startswith(
            f"{body['numberOfFeatures']} 个要素中有 {samples} 个为示例数据"
        )
        assert (
            f"{samples} of {body['numberOfFeatures']} features are sample data"
            in (body["sampleNote"]["en"])
        )
    assert "sampleFeatures" not in listed["towns"]  # boundaries are not sites
    # Delete the two sample memorials: the count follows and the note goes.
    for feature in shipped("memorials.geojson"):
        if feature["properties"]["sample"]:
            url = f"/collections/memorials/items/{feature['id']}"
            etag = client.get(url).headers["ETag"]
            deleted = client.delete(url, headers={**headers, "If-Match": etag})
            assert deleted.status_code in (200, 204), deleted.text
    one = client.get("/collections/memorials").json()
    assert one["sampleFeatures"] == 0 and "sampleNote" not in one
    assert one["numberOfFeatures"] == expected["memorials"]  # 4 shipped, 2 samples, 2 left


# -- coverage outputs -------------------------------------------------------------------


STATIONS = {"layers": "stations", "kinds": "town_station,support_post", "radius": "15min"}


def test_the_coverage_outputs_say_that_sample_sites_are_counted(office, tmp_path):
    client, _ = office
    stations = shipped("stations.geojson")
    counted = [f for f in stations if f["properties"]["kind"] in {"town_station", "support_post"}]
    in_coverage = sum(f["properties"]["sample"] for f in counted)
    every_open = [
        f
        for layer in ("stations", "green_channels", "medical", "memorials", "education")
        for f in shipped(f"{layer}.geojson")
        if f["properties"]["status"] == "open"
    ]
    in_compliance = sum(f["properties"]["sample"] for f in every_open)
    report = client.get("/coverage", params=STATIONS).json()
    assert report["sample_sites"] == {"coverage": in_coverage, "compliance": in_compliance}
    note = report["sample_note"]
    assert note.startswith("注意：本报告计入了示例站点")  # Chinese first
    assert f"覆盖分析的 {len(counted)} 个站点中有 {in_coverage} 个" in note
    assert f"达标检查的 {len(every_open)} 个开放站点中有 {in_compliance} 个" in note
    assert "Sample sites are counted" in note
    # The workbook shows it under the per-town table...
    path = tmp_path / "coverage.xlsx"
    write_workbook(path, report, None)
    cells = [c.value for row in load_workbook(path)["镇街覆盖与达标"].iter_rows() for c in row]
    zh, en = report["sample_notes"]["zh"], report["sample_notes"]["en"]
    assert note == f"{zh} ({en})"
    assert zh in cells  # the workbook is in Chinese
    # ...and the coverage page in its legend, in the page's language, drawn in
    # the sample notice's style.
    page = client.get("/coverage/map", params=STATIONS)
    assert page.status_code == 200
    assert read_json_script(page.text, "cov-data")["legend"]["sample"] == zh
    assert "cov-sample" in page.text
    english = client.get("/coverage/map", params={**STATIONS, "lang": "en"})
    assert read_json_script(english.text, "cov-data")["legend"]["sample"] == en
