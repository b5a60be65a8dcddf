"""History and supervision (督办), on both backends: a site's timeline from the
audit trail and restoring it to a version; each town's items of the 2022
opinion as of any date, progress per unit, what changed, the sample sites
counted, the workbook, and who may see what."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from geo_service.api import create_app
from geo_service.errors import InvalidParameter
from geo_service.runtime import Runtime
from geo_service.services.access import issue_token
from geo_service.services.supervision import end_of_day, supervision_report
from geo_service.settings import Settings
from geo_service.store import AuditQuery, Store

MASHANG = "370303009"  # 马尚街道: one town station, st-town-mashang
FANGZHEN = "370303107"  # 房镇镇
STATION = "st-town-mashang"
SITE_URL = f"/collections/stations/items/{STATION}"


class Office:
    """A TestClient on the store, a token per person, and the runtime the
    services run on (for questions asked at an exact instant)."""

    def __init__(self, client: TestClient, store: Store, rt: Runtime):
        self.client = client
        self.store = store
        self.rt = rt
        known = [town.id for town in store.all_features("towns")]
        self.tokens = {
            "office": issue_token(store, "office", "admin", [], known),
            "mashang": issue_token(store, "mashang", "editor", [MASHANG], known),
            "fangzhen": issue_token(store, "fangzhen", "editor", [FANGZHEN], known),
        }

    def headers(self, who: str | None, etag: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        if etag:
            headers["If-Match"] = etag
        return headers

    def patch(self, who: str, body: dict, feature_id: str = STATION) -> dict:
        """Change a site as ``who`` (read, then patch with its ETag); the audit record."""
        url = f"/collections/stations/items/{feature_id}"
        etag = self.client.get(url).headers["ETag"]
        response = self.client.patch(url, json=body, headers=self.headers(who, etag))
        assert response.status_code == 200, response.text
        # Apart by at least a millisecond (the audit's resolution), so that an
        # instant between two changes exists.
        time.sleep(0.005)
        return self.last_record(feature_id)

    def last_record(self, feature_id: str = STATION) -> dict:
        records, _ = self.store.audit_log(AuditQuery(feature_id=feature_id), newest_first=True)
        return records[0]

    def history(self, who: str | None, feature_id: str = STATION):
        return self.client.get(
            f"/collections/stations/items/{feature_id}/history", headers=self.headers(who)
        )

    def restore(self, who: str, version: int, etag: str | None, feature_id: str = STATION):
        return self.client.post(
            f"/collections/stations/items/{feature_id}/history/{version}/restore",
            headers=self.headers(who, etag),
        )


@pytest.fixture
def office(store: Store) -> Iterator[Office]:
    settings = Settings(store=store.location)
    with Runtime.open(settings, seed=False) as rt, TestClient(create_app(settings)) as client:
        yield Office(client, store, rt)


def just_before(at: str) -> str:
    """The audit instant one millisecond before ``at``."""
    moment = dt.datetime.fromisoformat(at) - dt.timedelta(milliseconds=1)
    return moment.isoformat(timespec="milliseconds")


def town_row(report: dict, code: str = MASHANG) -> dict:
    return next(row for row in report["towns"] if row["town_code"] == code)


def unit_row(report: dict, unit: str) -> dict:
    return next(row for row in report["units"] if row["responsible_unit"] == unit)


# -- history ---------------------------------------------------------------------------


def test_a_sites_history_says_who_changed_which_fields_when_newest_first(office: Office):
    station = office.store.get("stations", STATION)
    lon, lat = station.geometry.x, station.geometry.y
    phone = office.patch("mashang", {"properties": {"phone": "0533-2100001"}})
    moved = office.patch(
        "office", {"geometry": {"type": "Point", "coordinates": [lon, lat + 0.0005]}}
    )

    response = office.history("mashang")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["town_name"], body["deleted"]) == (
        "马尚街道退役军人服务站",
        "马尚街道",
        False,
    )
    assert body["etag"] == office.client.get(SITE_URL).headers["ETag"]
    versions = body["versions"]
    assert [v["version"] for v in versions] == sorted(
        (v["version"] for v in versions), reverse=True
    )
    assert [(v["actor"], v["action"]) for v in versions] == [
        ("office", "patch"),
        ("mashang", "patch"),
        ("seed:layers", "seed"),
    ]
    assert [versions[0]["version"], versions[1]["version"]] == [moved["seq"], phone["seq"]]
    assert versions[1]["at"] == phone["at"]
    phone_changes = {c["field"]: (c["before"], c["after"]) for c in versions[1]["changes"]}
    assert phone_changes["phone"] == (station.properties["phone"], "0533-2100001")
    assert versions[1]["moved_m"] is None
    # 0.0005° of latitude is about 55.5 m on the ground.
    assert 54 < versions[0]["moved_m"] < 57
    assert "geometry" in {c["field"] for c in versions[0]["changes"]}
    assert "phone" not in {c["field"] for c in versions[0]["changes"]}


def test_history_is_for_the_sites_own_town_and_a_token(office: Office):
    assert office.history(None).status_code == 401
    refused = office.history("fangzhen")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert office.history("office").status_code == 200
    assert office.history("mashang", "st-no-such-site").status_code == 404


# -- restore to a version --------------------------------------------------------------


def test_restoring_a_version_brings_it_back_exactly_and_is_audited(office: Office):
    seeded = office.store.get("stations", STATION)
    first = office.patch("mashang", {"properties": {"phone": "0533-2100001", "status": "planned"}})
    office.patch("office", {"properties": {"opening_hours": "Mo-Su 08:00-18:00"}})
    etag = office.client.get(SITE_URL).headers["ETag"]

    # Not without If-Match, not with a stale one, not from another town.
    assert office.restore("mashang", first["seq"], None).status_code == 428
    stale = office.restore("mashang", first["seq"], seeded.etag)
    assert stale.status_code == 412
    assert office.restore("fangzhen", first["seq"], etag).status_code == 403
    assert office.client.get(SITE_URL).headers["ETag"] == etag  # nothing written

    response = office.restore("mashang", first["seq"], etag)
    assert response.status_code == 200, response.text
    wanted = orjson.loads(first["after"])
    now = office.store.get("stations", STATION)
    assert now.properties == wanted["properties"]
    assert orjson.loads(orjson.dumps(now.geojson()["geometry"])) == wanted["geometry"]
    assert response.headers["ETag"] == now.etag
    record = office.last_record()
    assert (record["actor"], record["action"]) == ("mashang", "revert")
    assert orjson.loads(record["after"])["properties"] == wanted["properties"]

    # And back to the seeded version, everything the edits changed undone.
    seed_version = office.history("office").json()["versions"][-1]["version"]
    back = office.restore("office", seed_version, now.etag)
    assert back.status_code == 200, back.text
    assert office.store.get("stations", STATION).properties == seeded.properties


def test_a_deleted_site_comes_back_as_a_chosen_version(office: Office):
    changed = office.patch("mashang", {"properties": {"phone": "0533-2100009"}})
    etag = office.client.get(SITE_URL).headers["ETag"]
    gone = office.client.delete(SITE_URL, headers=office.headers("mashang", etag))
    assert gone.status_code == 204
    history = office.history("mashang").json()
    assert history["deleted"] is True and history["etag"] is None
    deletion = history["versions"][0]
    assert (deletion["action"], deletion["restorable"]) == ("delete", False)
    # The deletion itself is no version to go back to.
    assert office.restore("mashang", deletion["version"], "*").status_code == 409

    response = office.restore("mashang", changed["seq"], "*")
    assert response.status_code == 200, response.text
    assert office.store.get("stations", STATION).properties["phone"] == "0533-2100009"
    assert office.last_record()["action"] == "restore"


def test_a_version_of_another_site_is_not_found(office: Office):
    other = office.patch("mashang", {"properties": {"phone": "0533-2100003"}}, "st-post-04")
    etag = office.client.get(SITE_URL).headers["ETag"]
    assert office.restore("office", other["seq"], etag).status_code == 404


# -- supervision as of a date ----------------------------------------------------------


def test_a_towns_only_station_suspended_then_reopened_flips_its_item(office: Office):
    suspended = office.patch("mashang", {"properties": {"status": "suspended"}})
    reopened = office.patch("office", {"properties": {"status": "open"}})
    unit = office.store.get("stations", STATION).properties["responsible_unit"]

    def as_of(instant: str) -> dict:
        return supervision_report(office.rt, None, instant)

    before, during, after = (
        as_of(just_before(suspended["at"])),
        as_of(suspended["at"]),
        as_of(reopened["at"]),
    )
    assert town_row(before)["meets"]["station"] is True
    assert town_row(during)["counts"]["station"] == 0
    assert town_row(during)["meets"]["station"] is False
    assert town_row(during)["all_met"] is False
    assert town_row(during)["items_met"] == town_row(before)["items_met"] - 1
    assert town_row(after)["meets"]["station"] is True
    assert unit_row(during, unit)["suspended"] == unit_row(before, unit)["suspended"] + 1
    # Only Mashang's station item changed.
    for code in {row["town_code"] for row in before["towns"]} - {MASHANG}:
        assert town_row(during, code) == town_row(before, code)

    compared = supervision_report(office.rt, None, reopened["at"], suspended["at"])
    assert compared["since"]["date"] and compared["changes"]["towns"] == [
        {
            "town_code": MASHANG,
            "town_name": "马尚街道",
            "item": "station",
            "item_name": "镇街退役军人服务站",
            "count_before": 0,
            "count_after": 1,
            "met_before": False,
            "met_after": True,
        }
    ]
    statuses = {(c["status"], c["before"] - c["after"]) for c in compared["changes"]["units"]}
    assert statuses == {("suspended", 1), ("open", -1)}


def test_the_seeded_sites_count_from_the_start_and_new_ones_from_their_day(office: Office):
    site = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [117.9905, 36.8005]},
        "properties": {
            "name": "马尚拥军服务驿站（真实）",
            "kind": "support_post",
            "address": "马尚街道测试路1号",
            "eligible": ["veteran"],
            "status": "open",
            "position_quality": "surveyed",
        },
    }
    response = office.client.post(
        "/collections/stations/items", json=site, headers=office.headers("mashang")
    )
    assert response.status_code == 201, response.text
    long_ago = supervision_report(office.rt, None, "2001-01-01")
    today = supervision_report(office.rt, None, None)
    # Before the store existed, the shipped sites stand for what there was.
    assert town_row(long_ago)["counts"]["station"] == 1
    assert town_row(long_ago)["counts"]["support_post"] == 1
    assert town_row(today)["counts"]["support_post"] == 2
    assert long_ago["as_of"] == "2001-01-01"
    assert long_ago["as_of_utc"] == "2001-01-01T15:59:59.999+00:00"


def test_a_deleted_site_stops_counting_when_it_was_deleted(office: Office):
    etag = office.client.get(SITE_URL).headers["ETag"]
    time.sleep(0.005)
    assert office.client.delete(SITE_URL, headers=office.headers("office", etag)).status_code == 204
    deleted = office.last_record()
    assert town_row(supervision_report(office.rt, None, just_before(deleted["at"])))["meets"][
        "station"
    ]
    assert not town_row(supervision_report(office.rt, None, deleted["at"]))["meets"]["station"]


def test_the_state_as_of_now_is_what_the_store_holds(office: Office):
    office.patch("mashang", {"properties": {"phone": "0533-2100004"}})
    layers = list(office.store.catalog.layers)
    rebuilt = office.store.features_as_of(end_of_day(None)[1], layers)
    for layer_id in layers:
        live = office.store.all_features(layer_id)
        assert [f.id for f in rebuilt[layer_id]] == [f.id for f in live], layer_id
        for old, new in zip(rebuilt[layer_id], live, strict=True):
            assert old.properties == new.properties
            assert old.geometry.equals_exact(new.geometry, 1e-12)


def test_the_state_of_a_date_is_one_query_however_many_changes(office: Office, monkeypatch):
    for n in range(5):
        office.patch("mashang", {"properties": {"phone": f"0533-210000{n}"}})
    calls = []
    original = office.store._sql
    monkeypatch.setattr(
        office.store, "_sql", lambda *args, **kw: calls.append(args[1]) or original(*args, **kw)
    )
    state = office.store.features_as_of(end_of_day(None)[1], ["towns", "stations", "medical"])
    assert len(calls) == 1
    assert len(state["stations"]) == office.store.count("stations")


# -- sample sites ----------------------------------------------------------------------


def test_every_view_says_how_many_sample_sites_it_counts(office: Office):
    report = supervision_report(office.rt, None, None)
    row = town_row(report)
    # Every shipped site is a sample: Mashang's station and support post count, both samples.
    assert row["sample_counts"]["station"] == row["counts"]["station"] == 1
    assert row["sample_sites_counted"] == sum(row["counts"].values())
    assert report["samples"]["by_town"][MASHANG] == row["sample_sites_counted"]
    assert report["samples"]["sites"] == sum(
        1
        for layer in office.store.catalog.facility_layers
        for site in office.store.all_features(layer.id)
        if site.properties.get("sample") is True
    )
    assert "示例" in report["samples"]["note"]
    # A real site counts as itself, not as a sample.
    office.patch("mashang", {"properties": {"sample": False}})
    real = town_row(supervision_report(office.rt, None, None))
    assert real["counts"]["station"] == 1 and real["sample_counts"]["station"] == 0
    assert real["sample_sites_counted"] == row["sample_sites_counted"] - 1


# -- the API: who sees which towns; the workbook -----------------------------------------


def test_an_editor_sees_only_their_towns_and_the_office_all(office: Office):
    assert office.client.get("/supervision").status_code == 401
    mine = office.client.get("/supervision", headers=office.headers("mashang"))
    assert mine.status_code == 200, mine.text
    assert [row["town_code"] for row in mine.json()["towns"]] == [MASHANG]
    in_mashang = sum(
        1
        for layer in office.store.catalog.facility_layers
        for site in office.store.all_features(layer.id)
        if site.properties.get("town_code") == MASHANG
    )
    assert sum(unit["total"] for unit in mine.json()["units"]) == in_mashang
    everything = office.client.get("/supervision", headers=office.headers("office")).json()
    assert len(everything["towns"]) == office.store.count("towns")
    bad = office.client.get("/supervision?as_of=2026-02-30", headers=office.headers("office"))
    assert bad.status_code == 400


def test_the_workbook_holds_the_three_views_in_chinese(office: Office):
    suspended = office.patch("mashang", {"properties": {"status": "suspended"}})
    since = just_before(suspended["at"])
    response = office.client.get(
        "/supervision.xlsx", params={"since": since}, headers=office.headers("office")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["镇街达标", "责任单位进度", "变化"]
    towns = [[cell.value for cell in row] for row in book["镇街达标"].iter_rows()]
    header = towns[0]
    mashang = next(row for row in towns if row[0] == MASHANG)
    assert mashang[1] == "马尚街道"
    assert mashang[header.index("镇街退役军人服务站（个）")] == 0
    assert mashang[header.index("镇街退役军人服务站达标")] == "否"
    assert mashang[header.index("全部达标")] == "否"
    assert isinstance(mashang[header.index("计入的示例站点（个）")], int)
    assert any(row[0] == "示例站点" and "示例" in row[1] for row in towns)
    units = [[cell.value for cell in row] for row in book["责任单位进度"].iter_rows()]
    assert units[0] == ["责任单位", "正常开放", "筹建中", "暂停服务", "合计", "其中示例站点"]
    changes = [[cell.value for cell in row] for row in book["变化"].iter_rows()]
    assert ["镇街达标", MASHANG, "马尚街道", "镇街退役军人服务站", 1, 0, "是 → 否"] in changes


def test_the_workbook_keeps_a_unit_name_from_running_as_a_formula(office: Office):
    hostile = '=HYPERLINK("http://example.invalid","点我")'
    office.patch("mashang", {"properties": {"responsible_unit": hostile}})
    response = office.client.get("/supervision.xlsx", headers=office.headers("mashang"))
    book = load_workbook(io.BytesIO(response.content))
    cells = [row[0] for row in book["责任单位进度"].iter_rows(min_row=2)]
    unit = next(cell for cell in cells if cell.value and "HYPERLINK" in cell.value)
    assert unit.value == "'" + hostile and unit.data_type == "s"


# -- the date rule and the command line --------------------------------------------------


def test_a_date_ends_at_midnight_beijing_time():
    assert end_of_day("2026-12-04") == ("2026-12-04", "2026-12-04T15:59:59.999+00:00")
    # An instant without an offset is Beijing time too; with one, it is kept.
    assert end_of_day("2026-12-04T08:00:00")[1] == "2026-12-04T00:00:00.000+00:00"
    assert end_of_day("2026-12-04T08:00:00Z")[1] == "2026-12-04T08:00:00.000+00:00"
    # Past the calendar once in UTC: before (or after) every record, not an error.
    assert end_of_day("0001-01-01T00:00:00+14:00")[1] == "0001-01-01T00:00:00.000+00:00"
    with pytest.raises(InvalidParameter):
        end_of_day("2026-13-01")


def test_the_command_line_prints_history_and_writes_the_workbook(office: Office, tmp_path):
    office.patch("mashang", {"properties": {"phone": "0533-2100005"}})

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "geo_service.cli", *args, "--store", office.store.location],
            capture_output=True,
            text=True,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )

    shown = run("history", STATION)
    assert shown.returncode == 0, shown.stderr
    assert "0533-2100005" in shown.stdout and "mashang" in shown.stdout
    out = tmp_path / "督办.xlsx"
    written = run("supervision", "--since", "2001-01-01", "--xlsx", str(out))
    assert written.returncode == 0, written.stderr
    assert "马尚街道" in written.stdout
    assert load_workbook(out).sheetnames == ["镇街达标", "责任单位进度", "变化"]
    seed_version = office.history("office").json()["versions"][-1]["version"]
    restored = run("history", STATION, "--restore-to", str(seed_version))
    assert restored.returncode == 0, restored.stderr
    assert office.store.get("stations", STATION).properties["phone"] != "0533-2100005"
    assert office.last_record()["action"] == "revert"


def test_the_coverage_report_says_how_many_sample_sites_it_counts(office: Office, tmp_path):
    from geo_service.outputs.coverage_workbook import write_workbook
    from geo_service.services.planning import Question, coverage_report

    question = Question(("stations",), None, 1000.0)
    before = coverage_report(office.rt, question)
    # Every shipped station is a sample.
    assert before["sample_sites"]["coverage"] == before["facilities"] > 0
    assert str(before["sample_sites"]["coverage"]) in before["sample_note"]
    office.patch("mashang", {"properties": {"sample": False}})
    after = coverage_report(office.rt, question)
    assert after["sample_sites"]["coverage"] == before["sample_sites"]["coverage"] - 1
    assert town_row(after)["sample_sites"] == town_row(before)["sample_sites"] - 1
    assert town_row(after)["facilities"] == town_row(before)["facilities"]
    out = tmp_path / "coverage.xlsx"
    write_workbook(out, after, None)
    sheet = load_workbook(out)["镇街覆盖与达标"]
    header = [cell.value for cell in sheet[1]]
    mashang = next(row for row in sheet.iter_rows(values_only=True) if row[0] == MASHANG)
    assert mashang[header.index("其中示例站点")] == town_row(after)["sample_sites"]
    assert after["sample_notes"]["zh"] in [row[0] for row in sheet.iter_rows(values_only=True)]
