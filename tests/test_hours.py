"""Opening hours as town offices write them: read into OSM ``opening_hours``
(``sources.hours``), stored in that form by every write path (the catalog's
validation, an import of a GBK CSV, the edit API), and refused in Chinese
when they cannot be read whole."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator

import opening_hours
import pytest
from fastapi.testclient import TestClient

from geo_service.api import create_app
from geo_service.errors import InvalidFeature, InvalidParameter, OpeningHoursNotUnderstood
from geo_service.services.access import issue_token
from geo_service.services.importing import apply_import, plan_import
from geo_service.settings import Settings
from geo_service.sources.hours import ACCEPTED_FORMS, hours_text, to_opening_hours
from geo_service.sources.importing import RowStatus
from geo_service.store import Store

#: What offices write (from real notices, site boards and spreadsheets) -> what is stored.
WRITTEN = [
    # one rule
    ("周一至周五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周一至周五9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周一到周五 9:00到17:00", "Mo-Fr 09:00-17:00"),
    ("周一至周五：9:00—17:00", "Mo-Fr 09:00-17:00"),
    ("每周一至周五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周一至周日 8:00-20:00", "Mo-Su 08:00-20:00"),
    ("每天 8:00-17:30", "Mo-Su 08:00-17:30"),
    ("每日 8:00-17:30", "Mo-Su 08:00-17:30"),
    ("每天8:00～17:30", "Mo-Su 08:00-17:30"),
    ("全年无休 9:00-21:00", "Mo-Su 09:00-21:00"),
    ("工作日 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周末 10:00-16:00", "Sa,Su 10:00-16:00"),
    ("周六、周日 9:00-16:00", "Sa,Su 09:00-16:00"),
    ("周一至周五、周日 9:00-17:00", "Mo-Fr,Su 09:00-17:00"),
    ("9:00-17:00", "09:00-17:00"),
    # all day
    ("24小时", "24/7"),
    ("全天", "24/7"),
    ("24小时营业", "24/7"),
    ("全天24小时开放", "24/7"),
    ("每天24小时", "24/7"),
    ("周一至周五 24小时", "Mo-Fr 00:00-24:00"),
    # two ranges a day, every separator offices use
    ("周一至周五 8:30-12:00,14:00-17:30", "Mo-Fr 08:30-12:00,14:00-17:30"),
    ("周一至周五 8:30-12:00，14:00-17:30", "Mo-Fr 08:30-12:00,14:00-17:30"),
    ("8:30-12:00 14:00-17:30", "08:30-12:00,14:00-17:30"),
    ("8:30-12:00、14:00-17:30", "08:30-12:00,14:00-17:30"),
    ("8:30-12:00；14:00-17:30", "08:30-12:00,14:00-17:30"),
    ("8：30－12：00，14：00－17：30", "08:30-12:00,14:00-17:30"),
    ("８：３０—１２：００　１４：００—１７：３０", "08:30-12:00,14:00-17:30"),
    ("8:30～12:00 14:00～17:30", "08:30-12:00,14:00-17:30"),
    ("8:30至12:00，14:00至17:30", "08:30-12:00,14:00-17:30"),
    ("8:30到12:00 和 14:00到17:30", "08:30-12:00,14:00-17:30"),
    # several rules
    ("周一至周五 9:00-17:00；周六 9:00-12:00", "Mo-Fr 09:00-17:00; Sa 09:00-12:00"),
    ("周一至周五 9:00-17:00 周六、周日 9:00-16:00", "Mo-Fr 09:00-17:00; Sa,Su 09:00-16:00"),
    ("周二至周日 9:00-17:00，周一闭馆", "Tu-Su 09:00-17:00; Mo off"),
    ("周一至周六 8:00-18:00，周日休息", "Mo-Sa 08:00-18:00; Su off"),
    ("9:00-17:00，周一休息", "09:00-17:00; Mo off"),
    # public holidays
    ("周一至周五 9:00-17:00，节假日休息", "Mo-Fr 09:00-17:00; PH off"),
    ("周一至周五 9:00-17:00（法定节假日除外）", "Mo-Fr 09:00-17:00; PH off"),
    ("每天 8:00-17:30，法定节假日休息", "Mo-Su 08:00-17:30; PH off"),
    ("24小时，节假日除外", "24/7; PH off"),
    ("周一至周五 9:00-17:00，节假日照常开放", "Mo-Fr 09:00-17:00"),
    # other names of the days
    ("星期一至星期五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("礼拜一到礼拜五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("星期六、星期天 9:00-16:00", "Sa,Su 09:00-16:00"),
    ("礼拜日 9:00-12:00", "Su 09:00-12:00"),
    # 上午/下午, 点 and 点半
    ("上午9:00-下午5:00", "09:00-17:00"),
    ("周一至周五 上午9:00-下午5:30", "Mo-Fr 09:00-17:30"),
    ("周一至周五 上午8:30-12:00 下午2:00-5:30", "Mo-Fr 08:30-12:00,14:00-17:30"),
    ("早8:00-晚6:00", "08:00-18:00"),
    ("每天9点-17点半", "Mo-Su 09:00-17:30"),
    ("每天上午9点到下午5点", "Mo-Su 09:00-17:00"),
    ("晚上8点-次日8点", "20:00-08:00"),
    # labels and words that say nothing about when
    ("开放时间：周一至周五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周一至周五 9:00-17:00 对外开放", "Mo-Fr 09:00-17:00"),
]

#: Already OSM: kept exactly as written.
OSM = [
    "Mo-Fr 09:00-17:00",
    "Mo-Fr 08:30-12:00,14:00-17:30; PH off",
    "Tu-Su 09:00-17:00",
    "Mo-Fr 09:00-17:00; Sa,Su 09:00-16:00",
    "24/7",
    "Mo-Su 00:00-24:00",
]

#: Refused, each with the reason shown to the office.
REFUSED = [
    ("看心情", "看不懂"),
    ("周一到周五", "没写几点到几点"),
    ("工作时间", ""),
    ("whenever", ""),
    ("8:30-5:30", "结束早于开始"),  # OSM would read it as overnight: an office means 17:30
    ("8:00-12:00, 2:00-5:30", "先后顺序不对"),  # 2:00 meant 14:00
    ("9:00-17:00 9:00-12:00", "先后顺序不对"),
    ("24:30-25:00", "没有 24:30"),
    ("9:60-17:00", "没有 9:60"),
    ("上午13:00-14:00", "前后矛盾"),
    ("24小时 9:00-17:00", "不能同时写"),
    ("休息", ""),
    ("周一至周五 9:00-17:00 休息", "前要写明哪几天"),
    ("周一至周五 9:00-17:00 约满为止", "看不懂“约满为止”"),
    ("9-17", ""),
    ("周一至周五 9:00-17:00" * 20, "超过 200 个字"),
]


@pytest.mark.parametrize(("written", "stored"), WRITTEN)
def test_what_offices_write_is_stored_as_osm(written, stored):
    assert to_opening_hours(written) == stored
    assert opening_hours.validate(stored)


@pytest.mark.parametrize("value", OSM)
def test_osm_hours_pass_through_unchanged(value):
    assert to_opening_hours(value) == value


@pytest.mark.parametrize(("written", "reason"), REFUSED)
def test_what_cannot_be_read_is_refused_in_chinese_never_guessed(written, reason):
    with pytest.raises(OpeningHoursNotUnderstood) as caught:
        to_opening_hours(written)
    message = caught.value.message
    assert message.startswith("无法识别的开放时间：")
    assert message.endswith("请写成“周一至周五 9:00-17:00”或 OSM 格式")
    assert reason in message
    # A domain error the API answers with 400, naming the field.
    assert isinstance(caught.value, InvalidParameter)
    assert caught.value.parameter == "opening_hours"


@pytest.mark.parametrize(("written", "stored"), ACCEPTED_FORMS)
def test_every_form_shown_to_offices_reads_as_shown(written, stored):
    """The forms listed in the template's 说明 sheet and the README are the truth."""
    assert to_opening_hours(written.split("（")[0]) == stored


def test_the_opening_state_of_a_chinese_form_is_computed_from_its_osm_form():
    hours = opening_hours.OpeningHours(to_opening_hours("周一至周五 8:30-12:00，14:00-17:30"))
    monday = dt.datetime(2026, 11, 30)
    assert hours.state(monday.replace(hour=9))[0] == opening_hours.State.OPEN
    assert hours.state(monday.replace(hour=13))[0] == opening_hours.State.CLOSED
    assert hours.state(dt.datetime(2026, 12, 5, 10))[0] == opening_hours.State.CLOSED  # Saturday


# -- every write path stores the OSM form -------------------------------------------


def _feature(**props):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [118.042742, 36.810131]},
        "properties": {
            "id": "st-hours-test",
            "name": "示例驿站",
            "kind": "support_post",
            "address": "张店区人民西路1号",
            "town_code": "370303002",
            "eligible": ["veteran"],
            "status": "open",
            "source": "test",
            "updated_at": "2026-11-30",
            "sample": True,
            "position_quality": "surveyed",
            **props,
        },
    }


def test_the_catalog_stores_the_osm_form_and_names_the_field_when_refused(catalog):
    valid = catalog.validate_feature("stations", _feature(opening_hours="每天 8:00-17:30"))
    assert valid.properties["opening_hours"] == "Mo-Su 08:00-17:30"
    with pytest.raises(InvalidFeature) as caught:
        catalog.validate_feature("stations", _feature(opening_hours="周一到周五"))
    [problem] = caught.value.problems
    assert problem.field == "opening_hours"
    assert problem.message.startswith("无法识别的开放时间：周一到周五")


#: A town office's GBK CSV: Chinese headers, hours as written on the door.
_IMPORT_HEADER = ["名称", "类型", "地址", "经度", "纬度", "开放时间"]
_IMPORT_ROWS = [
    ["公园街道拥军驿站（测试）", "拥军服务驿站", "人民西路1号", 118.042742, 36.810131,
     "周一至周五 8:30-12:00，14:00-17:30"],
    ["车站街道拥军驿站（测试）", "拥军服务驿站", "华光路2号", 118.0515, 36.7905,
     "每天 8:00-17:30，节假日休息"],
    ["看心情的驿站（测试）", "拥军服务驿站", "华光路3号", 118.0525, 36.7905, "看心情"],
]  # fmt: skip


def test_an_import_stores_the_chinese_hours_of_a_gbk_csv_in_osm_form(tmp_path, store, catalog):
    buffer = io.StringIO()
    csv.writer(buffer).writerows([_IMPORT_HEADER, *_IMPORT_ROWS])
    path = tmp_path / "驿站.csv"
    path.write_bytes(buffer.getvalue().encode("gbk"))
    plan = plan_import(path, "stations", catalog, store, actor="test")
    by_name = {row.name: row for row in plan.rows}
    refused = by_name["看心情的驿站（测试）"]
    assert refused.status == RowStatus.error
    assert any(r.startswith("opening_hours: 无法识别的开放时间：看心情") for r in refused.reasons)
    apply_import(plan, store, skip_invalid=True, actor="test")
    stored = {
        f.properties["name"]: f.properties["opening_hours"]
        for f in store.all_features("stations")
        if f.properties["name"].endswith("（测试）")
    }
    assert stored == {
        "公园街道拥军驿站（测试）": "Mo-Fr 08:30-12:00,14:00-17:30",
        "车站街道拥军驿站（测试）": "Mo-Su 08:00-17:30; PH off",
    }
    # The file still says 周一至周五…; the store says Mo-Fr…: the same hours, nothing to change.
    again = plan_import(path, "stations", catalog, store, actor="test")
    assert [row.action for row in again.rows if row.status != RowStatus.error] == ["unchanged"] * 2


@pytest.fixture
def office(store: Store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    token = issue_token(store, "office", "admin", [], [t.id for t in store.all_features("towns")])
    with TestClient(create_app(Settings(store=store.location))) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_the_edit_api_stores_the_osm_form_and_refuses_with_a_400(office):
    client, auth = office
    url = "/collections/stations/items/st-town-mashang"
    etag = client.get(url).headers["ETag"]
    patched = client.patch(
        url,
        json={"properties": {"opening_hours": "周一至周五 上午9:00-下午5:00，周六 9:00-12:00"}},
        headers={**auth, "If-Match": etag},
    )
    assert patched.status_code == 200, patched.text
    assert client.get(url).json()["properties"]["opening_hours"] == (
        "Mo-Fr 09:00-17:00; Sa 09:00-12:00"
    )
    refused = client.patch(
        url,
        json={"properties": {"opening_hours": "8:30-5:30"}},
        headers={**auth, "If-Match": patched.headers["ETag"]},
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert "无法识别的开放时间：8:30-5:30" in refused.json()["detail"]


# -- the other way: the hours a resident reads on the web map -----------------------

#: Stored OSM form -> (Chinese, English) as the web map shows them.
SHOWN = [
    ("Mo-Su 08:00-17:30", "每天 08:00–17:30", "Daily 08:00–17:30"),
    (
        "Mo-Fr 09:00-17:00; Sa 09:00-12:00",
        "周一至周五 09:00–17:00；周六 09:00–12:00",
        "Mon–Fri 09:00–17:00; Sat 09:00–12:00",
    ),
    ("24/7", "全天24小时", "Open 24 hours, every day"),
    (
        "Mo-Fr 09:00-17:00; PH off",
        "周一至周五 09:00–17:00；法定节假日休息",
        "Mon–Fri 09:00–17:00; closed on public holidays",
    ),
    (
        "Mo-Fr 08:30-12:00,14:00-17:30",
        "周一至周五 08:30–12:00，14:00–17:30",
        "Mon–Fri 08:30–12:00, 14:00–17:30",
    ),
    ("Sa,Su 09:00-16:00", "周六、周日 09:00–16:00", "Sat, Sun 09:00–16:00"),
    (
        "Tu-Su 09:00-17:00; Mo off",
        "周二至周日 09:00–17:00；周一休息",
        "Tue–Sun 09:00–17:00; Mon closed",
    ),
    ("08:30-12:00,14:00-17:30", "08:30–12:00，14:00–17:30", "08:30–12:00, 14:00–17:30"),
    ("Mo-Su 22:00-02:00", "每天 22:00–次日02:00", "Daily 22:00–02:00 (next day)"),
    ("Sa 00:00-24:00", "周六 00:00–24:00", "Sat 00:00–24:00"),
]


@pytest.mark.parametrize(("stored", "zh", "en"), SHOWN)
def test_stored_hours_are_shown_in_chinese_and_english(stored, zh, en):
    assert hours_text(stored) == {"zh": zh, "en": en}


def _shipped_hours() -> set[str]:
    from tests.conftest import ROOT

    values = set()
    for path in (ROOT / "layers").glob("*.geojson"):
        for feature in json.loads(path.read_text(encoding="utf-8"))["features"]:
            if value := feature["properties"].get("opening_hours"):
                values.add(value)
    return values


@pytest.mark.parametrize(
    "stored",
    sorted({s for s, _, _ in SHOWN} | {s for _, s in WRITTEN} | {s for _, s in ACCEPTED_FORMS})
    + sorted(_shipped_hours()),
)
def test_the_chinese_shown_reads_back_to_the_stored_hours(stored):
    """What the map shows in Chinese is itself a form offices may write."""
    shown = hours_text(stored)
    assert shown is not None, stored
    assert to_opening_hours(shown["zh"]) == stored
    assert not re.search(r"\b(?:Mo|Tu|We|Th|Fr|Sa|Su|PH)\b", shown["zh"] + shown["en"])


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "开放时间",
        'Mo-Fr 09:00-17:00 || "by appointment"',
        "Mo-Fr 25:00-26:00",
        "Mo-Fr 09:00-09:00",
        "Jan-Mar Mo-Fr 09:00-17:00",
        "sunrise-sunset",
        "PH 09:00-12:00",
    ],
)
def test_hours_the_map_cannot_word_are_left_as_written(stored):
    assert hours_text(stored) is None
