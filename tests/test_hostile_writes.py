"""Hostile writes, on both backends (issue 15): control characters refused on
every write path, the position deciding a site's town, deleted ids kept for
their restore, authorization before preconditions, and bounded extra properties.

The stories: a spreadsheet with a bell or a NUL in a cell is refused row by
row, naming the field, and nothing is written; a town's editor cannot move a
site of theirs five kilometres into the next town with a PATCH of the
geometry alone, nor file a site in Beijing under their own town; another
town's editor cannot take a deleted site's id; a foreign editor holding a
stale ETag hears 403, not 412; and nobody stores a megabyte on a map marker.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook
from openpyxl.utils.exceptions import IllegalCharacterError
from shapely.geometry import box, mapping

from geo_service.api import create_app
from geo_service.errors import Conflict, InvalidFeature
from geo_service.services.access import issue_token
from geo_service.settings import Settings
from geo_service.sources.catalog import ValidFeature, WriteLimits, load_catalog
from geo_service.sources.importing import town_of_position
from geo_service.sources.towns import TownIndex
from geo_service.store import Store
from tests.hostile import DEEP_JSON, REFUSED, STORED
from tests.test_editing import (
    FANGZHEN,
    FANGZHEN_SITE,
    MASHANG,
    MASHANG_SITE,
    Staff,
    new_site,
)

# Positions around 马尚街道's service station (st-town-mashang, 117.9906, 36.8007),
# checked against the store's towns by ``test_the_test_positions_are_where_they_say``.
#: In 房镇镇, about 290 m north of 马尚街道's approximate boundary.
NEAR_FANGZHEN = (117.9906, 36.82409)
#: In 房镇镇, about 5 km north of 马尚街道.
DEEP_FANGZHEN = (117.9906, 36.86824)
#: Outside every town, about 360 m west of 马尚街道.
JUST_OUTSIDE = (117.96926, 36.79074)
#: 天安门 and Null Island: far from the district.
BEIJING = (116.3975, 39.9087)
NULL_ISLAND = (0.0, 0.0)
TOLERANCE_M = WriteLimits().town_tolerance_m
STATIONS = "/collections/stations/items"


@pytest.fixture
def staff(store: Store) -> Iterator[Staff]:
    app = create_app(Settings(store=store.location))
    with TestClient(app) as client:
        yield Staff(client, store)


def point(position: tuple[float, float]) -> dict:
    return {"type": "Point", "coordinates": list(position)}


def snapshot(store: Store) -> tuple[int, int]:
    """What a refused write must leave as it was: the sites and the audit trail."""
    return store.count("stations"), len(store.audit_records())


def refusal(response, field: str, text: str) -> None:
    """A 400 whose problem names ``field`` and the control character in ``text``."""
    assert response.status_code == 400, response.text
    body = response.json()
    if "\x00" in text and body["detail"].startswith("body:"):
        # The API's own NUL check (api/editing.py) answers before the catalog's.
        assert "NUL" in body["detail"]
        return
    code = next(f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)
    fields = {(e["field"], e["message"]) for e in body.get("errors", [])}
    assert (field, f"不能包含控制字符 (control character {code})") in fields, body


def plant(store: Store, feature_id: str, **props) -> ValidFeature:
    """A site written straight to the store, past every check (as an older
    version of the service, or a hand-edited database, may have left it)."""
    site = store.get("stations", MASHANG_SITE)
    feature = ValidFeature(
        feature_id, {**site.properties, "id": feature_id, **props}, site.geometry
    )
    store.write("stations", [feature], actor="old-version")
    return feature


# -- 1. control characters: refused on every write path --------------------------------


@pytest.mark.parametrize(("what", "text"), REFUSED, ids=[what for what, _ in REFUSED])
def test_control_characters_are_refused_by_every_single_edit(staff: Staff, what, text):
    before = snapshot(staff.store)
    office = staff.headers("office")
    cases = [
        ("name", new_site(name=text)),
        ("address", new_site(address=text)),
        ("note", new_site(note=text)),  # an extra property's value
        ("note.lines[1]", new_site(note={"lines": ["ok", text]})),  # nested in one
    ]
    for field, body in cases:
        refusal(staff.client.post(STATIONS, json=body, headers=office), field, text)
    # An extra property's NAME: the problem names it with the character escaped.
    keyed = staff.client.post(STATIONS, json=new_site(**{text: "x"}), headers=office)
    assert keyed.status_code == 400, keyed.text
    if "\x00" not in text:
        [error] = keyed.json()["errors"]
        assert error["message"].startswith("property name: 不能包含控制字符")
        assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in error["field"])
    assert snapshot(staff.store) == before
    # PUT and PATCH of a stored site, by its own town's editor.
    body, etag = staff.read(MASHANG_SITE)
    url = f"{STATIONS}/{MASHANG_SITE}"
    editor = staff.headers("mashang-a", etag)
    put = {**body, "properties": {**body["properties"], "address": text}}
    refusal(staff.client.put(url, json=put, headers=editor), "address", text)
    refusal(staff.patch("mashang-a", MASHANG_SITE, {"name": text}, etag), "name", text)
    refusal(staff.patch("mashang-a", MASHANG_SITE, {"note": text}, etag), "note", text)
    keyed = staff.patch("mashang-a", MASHANG_SITE, {f"k{text}": 1}, etag)
    assert keyed.status_code == 400, keyed.text
    assert staff.read(MASHANG_SITE) == (body, etag)
    assert snapshot(staff.store) == before


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


HEADER = ["名称", "类型", "地址", "经度", "纬度", "备注"]


def site_row(name: str, address: str = "马尚街道测试路1号", note: str = "") -> list:
    return [name, "拥军服务驿站", address, 117.9905, 36.8005, note]


def import_file(staff: Staff, who: str, content: bytes, media: str, layer: str = "stations"):
    headers = {**staff.headers(who), "Content-Type": media}
    return staff.client.post(f"/collections/{layer}/import", content=content, headers=headers)


def test_control_characters_in_an_imported_csv_are_row_errors_naming_the_field(staff: Staff):
    rows, expected = [HEADER], {}
    for number, (_what, text) in enumerate(REFUSED):
        code = next(f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)
        for field, row in (
            ("name", site_row(text)),
            ("address", site_row(f"驿站{number}甲", address=text)),
            ("备注", site_row(f"驿站{number}乙", note=text)),  # an office's own column
        ):
            rows.append(row)
            expected[len(rows)] = f"{field}: 不能包含控制字符 (control character {code})"
    before = snapshot(staff.store)
    response = import_file(staff, "mashang-a", csv_bytes(rows), "text/csv")
    assert response.status_code == 422, response.text
    report = {row["line"]: row for row in response.json()["report"]["rows"]}
    for line, reason in expected.items():
        assert report[line]["status"] == "error"
        assert reason in report[line]["reasons"], report[line]
    assert snapshot(staff.store) == before
    # Even --skip-invalid writes none of them.
    skipped = staff.client.post(
        "/collections/stations/import",
        content=csv_bytes(rows),
        params={"skip_invalid": "true"},
        headers={**staff.headers("mashang-a"), "Content-Type": "text/csv"},
    )
    assert skipped.status_code == 200, skipped.text
    assert snapshot(staff.store) == before


def test_a_control_character_in_a_csv_header_is_a_row_error(staff: Staff):
    header = [*HEADER[:5], "备\x07注"]
    response = import_file(
        staff, "office", csv_bytes([header, site_row("驿站", note="x")]), "text/csv"
    )
    assert response.status_code == 422, response.text
    [row] = response.json()["report"]["rows"]
    assert (
        "备\\u0007注: property name: 不能包含控制字符 (control character U+0007)"
        in (row["reasons"])
    )


def test_line_breaks_in_a_spreadsheet_cell_are_folded_to_spaces_with_a_warning(staff: Staff):
    """Excel's Alt+Enter puts a line break inside a cell: the rule for imports
    (only) is to fold tabs and line breaks to one space and say so."""
    rows = [
        HEADER,
        site_row("马尚驿站\r\n（东门）", address="马尚街道\t测试路1号", note="第一行\n第二行"),
    ]
    response = import_file(staff, "mashang-a", csv_bytes(rows), "text/csv")
    assert response.status_code == 200, response.text
    [row] = response.json()["rows"]
    assert row["status"] == "warning"
    for field in ("name", "address", "备注"):
        assert f"{field}: line breaks or tabs in the cell were folded to spaces" in row["reasons"]
    stored = staff.store.get("stations", row["id"]).properties
    assert (stored["name"], stored["address"], stored["备注"]) == (
        "马尚驿站 （东门）",
        "马尚街道 测试路1号",
        "第一行 第二行",
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_bytes(rows: list[list]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_control_characters_in_an_xlsx_cell_are_row_errors(staff: Staff):
    # XML 1.0 cannot hold most C0 characters, so an XLSX file cannot carry them
    # (openpyxl refuses to write one; Excel writes _x0007_, read back as that
    # literal text); DEL and C1 it can.
    carried = [(what, text) for what, text in REFUSED if not any(ord(c) < 0x20 for c in text)]
    assert {what for what, _ in carried} == {"C1 control", "DEL"}
    with pytest.raises(IllegalCharacterError):
        xlsx_bytes([["示例\x07站"]])
    rows = [HEADER] + [site_row(text) for _what, text in carried]
    rows.append(site_row("驿站", address="马尚街道\n测试路1号"))  # Alt+Enter: folded
    before = snapshot(staff.store)
    response = import_file(staff, "mashang-a", xlsx_bytes(rows), XLSX)
    assert response.status_code == 422, response.text
    report = response.json()["report"]["rows"]
    assert [r["status"] for r in report] == ["error", "error", "warning"]
    assert "name: 不能包含控制字符 (control character U+0085)" in report[0]["reasons"]
    assert "name: 不能包含控制字符 (control character U+007F)" in report[1]["reasons"]
    assert snapshot(staff.store) == before


def towns_geojson(store: Store, names: dict[str, str]) -> bytes:
    features = [
        {
            "type": "Feature",
            "properties": {
                "town_code": town.id,
                "name": names.get(town.id, town.properties["name"]),
            },
            "geometry": mapping(town.geometry),
        }
        for town in store.all_features("towns")
    ]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


@pytest.mark.parametrize(("what", "text"), REFUSED, ids=[what for what, _ in REFUSED])
def test_a_control_character_in_a_town_name_refuses_the_boundary_import(staff: Staff, what, text):
    towns = {town.id: town.etag for town in staff.store.all_features("towns")}
    content = towns_geojson(staff.store, {MASHANG: f"马尚{text}街道"})
    response = import_file(staff, "office", content, "application/geo+json", layer="towns")
    if "\x00" in text:
        # GDAL reads text as C strings: a NUL would end the name there, losing
        # what follows it, so a GeoJSON holding one is refused whole.
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["detail"]
        assert {town.id: town.etag for town in staff.store.all_features("towns")} == towns
        return
    assert response.status_code == 422, response.text
    reasons = [r for row in response.json()["report"]["rows"] for r in row["reasons"]]
    assert any(r.startswith("name: 不能包含控制字符") for r in reasons), reasons
    assert {town.id: town.etag for town in staff.store.all_features("towns")} == towns


def test_a_deleted_record_holding_a_control_character_is_not_restored(store: Store):
    """A site stored before control characters were refused, then deleted: its
    restore is refused with the reason, and nothing is stored again."""
    for number, (_what, text) in enumerate(REFUSED):
        feature_id = f"st-old-{number}"
        planted = plant(store, feature_id, name=text)
        assert store.get("stations", feature_id).properties["name"] == planted.properties["name"]
        store.change("stations", feature_id, None, actor="office", action="delete")
        count = store.count("stations")
        with pytest.raises(InvalidFeature) as refused:
            store.restore("stations", feature_id, actor="cli:test")
        fields = {p.field: p.message for p in refused.value.problems}
        assert "does not pass today's checks" in fields["restore"]
        assert fields["name"].startswith("不能包含控制字符 (control character U+")
        assert store.count("stations") == count
    # A clean one still comes back.
    store.change("stations", FANGZHEN_SITE, None, actor="office", action="delete")
    assert store.restore("stations", FANGZHEN_SITE, actor="cli:test").after is not None


def test_the_cli_restore_says_why_it_refuses(store: Store):
    from typer.testing import CliRunner

    from geo_service.cli import app

    plant(store, "st-old-bell", address="示例\x07路")
    store.change("stations", "st-old-bell", None, actor="office", action="delete")
    result = CliRunner().invoke(app, ["restore", "st-old-bell", "--store", store.location])
    assert result.exit_code != 0
    assert "不能包含控制字符 (control character U+0007)" in " ".join(result.output.split())
    assert "st-old-bell" not in {f.id for f in store.all_features("stations")}


def test_a_nul_left_in_an_old_store_does_not_break_filters_or_tiles(
    store: Store,
):
    plant(store, MASHANG_SITE, name="示例\x00站", note="a\x00b")
    app = create_app(Settings(store=store.location))
    with TestClient(app) as client:
        for params in ({"kind": "town_station"}, {"status": "open"}, {"town_code": MASHANG}):
            response = client.get(STATIONS, params=params)
            assert response.status_code == 200, (params, response.text)
            assert MASHANG_SITE in {f["id"] for f in response.json()["features"]}
        # Tiles covering the site at zoom 10 and 14.
        for z, x, y in ((10, 847, 399), (14, 13561, 6388)):
            response = client.get(f"/collections/stations/tiles/{z}/{x}/{y}.mvt")
            assert response.status_code == 200, (z, x, y, response.text)
            assert response.content, (z, x, y)
        assert client.get(f"{STATIONS}/{MASHANG_SITE}").status_code == 200


@pytest.mark.parametrize(("what", "text"), STORED, ids=[what for what, _ in STORED])
def test_hostile_but_printable_text_is_kept_byte_for_byte(staff: Staff, what, text):
    body = new_site(name=text, address=text, note=text, responsible_unit=text)
    created = staff.client.post(STATIONS, json=body, headers=staff.headers("office"))
    assert created.status_code == 201, created.text
    read, _ = staff.read(created.json()["id"])
    for name in ("name", "address", "note", "responsible_unit"):
        assert read["properties"][name] == text
        assert read["properties"][name].encode() == text.encode()


# -- 2. the position decides the town --------------------------------------------------


def test_the_test_positions_are_where_they_say(store: Store):
    towns = store.all_features("towns")
    index = TownIndex((town.id, town.geometry) for town in towns)

    def choose(position, declared=MASHANG):
        return town_of_position(
            index, *position, declared, approximate=True, tolerance_m=TOLERANCE_M
        )

    near, deep, outside = choose(NEAR_FANGZHEN), choose(DEEP_FANGZHEN), choose(JUST_OUTSIDE)
    assert near.located == FANGZHEN and 150 < near.distance_m < TOLERANCE_M - 100
    assert deep.located == FANGZHEN and deep.distance_m > 4_900
    assert outside.located is None and outside.code == MASHANG
    assert choose(JUST_OUTSIDE, None).code == MASHANG  # nearest town within tolerance
    assert choose(BEIJING).code is None and choose(NULL_ISLAND).code is None
    assert all(t.properties["approximate"] for t in towns)


def test_an_editor_cannot_move_a_site_deep_into_another_town_by_its_geometry(staff: Staff):
    before, etag = staff.read(MASHANG_SITE)
    url = f"{STATIONS}/{MASHANG_SITE}"
    moved = staff.client.patch(
        url, json={"geometry": point(DEEP_FANGZHEN)}, headers=staff.headers("mashang-a", etag)
    )
    assert moved.status_code == 403, moved.text
    assert "房镇镇 (370303107)" in moved.json()["detail"]
    assert staff.read(MASHANG_SITE) == (before, etag)
    # A PUT keeping the declared town is the same move.
    put = {**before, "geometry": point(DEEP_FANGZHEN)}
    assert (
        staff.client.put(url, json=put, headers=staff.headers("mashang-a", etag)).status_code == 403
    )
    # The office may move it: the site then belongs to 房镇镇, as its position says.
    done = staff.client.patch(
        url, json={"geometry": point(DEEP_FANGZHEN)}, headers=staff.headers("office", etag)
    )
    assert done.status_code == 200, done.text
    assert done.json()["properties"]["town_code"] == FANGZHEN


def test_a_small_move_across_an_approximate_boundary_keeps_the_town(staff: Staff):
    _, etag = staff.read(MASHANG_SITE)
    moved = staff.client.patch(
        f"{STATIONS}/{MASHANG_SITE}",
        json={"geometry": point(NEAR_FANGZHEN)},
        headers=staff.headers("mashang-a", etag),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["properties"]["town_code"] == MASHANG
    assert moved.json()["geometry"]["coordinates"] == list(NEAR_FANGZHEN)


@pytest.mark.parametrize("who", ["mashang-a", "office"])
@pytest.mark.parametrize("position", [BEIJING, NULL_ISLAND], ids=["beijing", "null-island"])
def test_nobody_creates_a_site_outside_the_district_by_naming_a_town(staff: Staff, who, position):
    before = snapshot(staff.store)
    body = {**new_site(town_code=MASHANG), "geometry": point(position)}
    response = staff.client.post(STATIONS, json=body, headers=staff.headers(who))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "geometry"
    assert error["message"].startswith("outside the district: more than 500 m from every town")
    # Nor moves one there.
    _, etag = staff.read(MASHANG_SITE)
    away = staff.client.patch(
        f"{STATIONS}/{MASHANG_SITE}",
        json={"geometry": point(position)},
        headers=staff.headers(who, etag),
    )
    assert away.status_code == 400, away.text
    assert snapshot(staff.store) == before


def test_a_declared_town_is_kept_within_the_tolerance_and_overruled_beyond(staff: Staff):
    office = staff.headers("office")
    cases = [
        (NEAR_FANGZHEN, MASHANG, MASHANG),  # 290 m over the boundary: kept
        (DEEP_FANGZHEN, MASHANG, FANGZHEN),  # 5 km: the position decides
        (JUST_OUTSIDE, None, MASHANG),  # 360 m outside the district: the nearest town
        (NEAR_FANGZHEN, None, FANGZHEN),  # nothing declared: where it lies
    ]
    for number, (position, declared, expected) in enumerate(cases):
        body = {**new_site(name=f"驿站{number}"), "geometry": point(position)}
        if declared:
            body["properties"]["town_code"] = declared
        response = staff.client.post(STATIONS, json=body, headers=office)
        assert response.status_code == 201, response.text
        assert response.json()["properties"]["town_code"] == expected, (position, declared)
    # An editor of 马尚 declaring 马尚 for a site deep in 房镇: refused for 房镇.
    body = {**new_site(name="越界驿站", town_code=MASHANG), "geometry": point(DEEP_FANGZHEN)}
    refused = staff.client.post(STATIONS, json=body, headers=staff.headers("mashang-a"))
    assert refused.status_code == 403, refused.text


def test_an_import_row_follows_the_same_town_rule_and_words(staff: Staff):
    """The same rule, the same words: a row in another town is the 403 reason
    the API gives for that site, and the declared town within/beyond the tolerance."""
    body = {**new_site(name="越界驿站", town_code=MASHANG), "geometry": point(DEEP_FANGZHEN)}
    api = staff.client.post(STATIONS, json=body, headers=staff.headers("mashang-a"))
    assert api.status_code == 403
    header = ["名称", "类型", "地址", "经度", "纬度", "所属镇街"]
    rows = [
        header,
        ["越界驿站", "拥军服务驿站", "马尚街道测试路1号", *DEEP_FANGZHEN, "马尚街道"],
        ["边界驿站", "拥军服务驿站", "马尚街道测试路2号", *NEAR_FANGZHEN, "马尚街道"],
        ["区外驿站", "拥军服务驿站", "马尚街道测试路3号", *BEIJING, "马尚街道"],
        ["区边驿站", "拥军服务驿站", "马尚街道测试路4号", *JUST_OUTSIDE, ""],
    ]
    response = import_file(staff, "mashang-a", csv_bytes(rows), "text/csv")
    assert response.status_code == 422, response.text
    far, near, beijing, edge = response.json()["report"]["rows"]
    assert far["status"] == "error" and api.json()["detail"] in far["reasons"]
    assert any("beyond the 500 m tolerance" in r for r in far["reasons"])
    assert near["status"] == "warning"
    assert any("within the 500 m tolerance); kept the declared town" in r for r in near["reasons"])
    assert beijing["status"] == "error"
    assert any(r.startswith("outside the district: more than 500 m") for r in beijing["reasons"])
    assert edge["status"] == "OK"
    # The office imports the same rows: the far one goes to 房镇镇, Beijing still not.
    office = import_file(staff, "office", csv_bytes(rows[:3] + rows[4:]), "text/csv")
    assert office.status_code == 200, office.text
    towns = {
        r["name"]: staff.store.get("stations", r["id"]).properties["town_code"]
        for r in office.json()["rows"]
    }
    assert towns == {"越界驿站": FANGZHEN, "边界驿站": MASHANG, "区边驿站": MASHANG}


def test_official_boundaries_are_exact():
    """Once official boundaries replace the approximate ones there is no slack."""
    west, east = "370303001", "370303002"
    index = TownIndex(
        [(west, box(118.0, 36.8, 118.01, 36.81)), (east, box(118.01, 36.8, 118.02, 36.81))]
    )

    def town(lon, declared, approximate):
        return town_of_position(
            index, lon, 36.805, declared, approximate=approximate, tolerance_m=TOLERANCE_M
        ).code

    assert town(118.011, west, approximate=True) == west  # 89 m over the line
    assert town(118.011, west, approximate=False) == east
    # On the shared edge, the declared town is kept either way.
    assert town(118.01, east, approximate=False) == east
    assert town(118.01, west, approximate=False) == west
    assert town(117.999, None, approximate=False) is None
    assert town(117.999, None, approximate=True) == west


# -- 3. deleted ids stay reserved ----------------------------------------------------


def test_a_deleted_sites_id_cannot_be_taken_and_its_restore_still_works(staff: Staff):
    body, etag = staff.read(MASHANG_SITE)
    deleted = staff.client.delete(
        f"{STATIONS}/{MASHANG_SITE}", headers=staff.headers("mashang-a", etag)
    )
    assert deleted.status_code == 204, deleted.text
    before = snapshot(staff.store)
    squat = {**new_site(name="占用编号"), "id": MASHANG_SITE, "geometry": point((117.995, 36.8452))}
    for who in ("fangzhen", "mashang-b", "office"):
        response = staff.client.post(STATIONS, json=squat, headers=staff.headers(who))
        assert response.status_code == 409, (who, response.text)
        assert "stays reserved" in response.json()["detail"]
    assert snapshot(staff.store) == before
    staff.store.restore("stations", MASHANG_SITE, actor="cli:test")
    restored, _ = staff.read(MASHANG_SITE)
    assert restored["properties"] == body["properties"]


def test_an_import_cannot_take_a_deleted_sites_id_either(staff: Staff):
    """The import is a write path too: a row naming a deleted site's id is a
    row error that says to restore it, and the store refuses it inside the
    transaction even if a plan let it through."""
    site = staff.store.get("stations", MASHANG_SITE)
    _, etag = staff.read(MASHANG_SITE)
    deleted = staff.client.delete(
        f"{STATIONS}/{MASHANG_SITE}", headers=staff.headers("mashang-a", etag)
    )
    assert deleted.status_code == 204
    before = snapshot(staff.store)
    content = csv_bytes([["编号", *HEADER], [MASHANG_SITE, *site_row("占用编号")]])
    answer = import_file(staff, "office", content, "text/csv")
    assert answer.status_code == 422, answer.text
    reasons = " ".join(" ".join(r["reasons"]) for r in answer.json()["report"]["rows"])
    assert "restore" in reasons and MASHANG_SITE in reasons
    assert snapshot(staff.store) == before
    again = ValidFeature(site.id, dict(site.properties), site.geometry)
    with pytest.raises(Conflict, match="stays reserved"):
        staff.store.write("stations", [again], actor="test", action="import")
    assert snapshot(staff.store) == before


# -- 4. authorization before preconditions ---------------------------------------------


def test_a_foreign_editor_with_a_stale_etag_hears_403_not_412(staff: Staff):
    _, stale = staff.read(MASHANG_SITE)
    assert (
        staff.patch("mashang-a", MASHANG_SITE, {"phone": "0533-2100001"}, stale).status_code == 200
    )
    url = f"{STATIONS}/{MASHANG_SITE}"
    body, current = staff.read(MASHANG_SITE)
    foreign = staff.headers("fangzhen", stale)
    for response in (
        staff.patch("fangzhen", MASHANG_SITE, {"phone": "0533-2100009"}, stale),
        staff.client.put(url, json=body, headers=foreign),
        staff.client.delete(url, headers=foreign),
    ):
        assert response.status_code == 403, response.text
        assert "ETag" not in response.headers
    # Its own editor with the stale ETag: 412, as before.
    assert (
        staff.patch("mashang-b", MASHANG_SITE, {"phone": "0533-2100009"}, stale).status_code == 412
    )
    assert staff.read(MASHANG_SITE) == (body, current)


# -- 5. extra properties are bounded ---------------------------------------------------


def test_extra_properties_are_bounded(staff: Staff):
    office = staff.headers("office")
    before = snapshot(staff.store)
    cases = {
        "huge value": ({"note": "拥" * 320_000}, "note"),  # about 950 KB as UTF-8
        "too many": ({f"extra{n}": n for n in range(21)}, "properties"),
        "long name": ({"k" * 65: 1}, "k" * 65),
        "deep": ({"deep": [[[["four levels"]]]]}, "deep"),
        "very deep": ({"deep": json.loads("[" * 30 + "]" * 30)}, "deep"),  # API allows 32
        "too much together": ({f"note{n}": "x" * 1_900 for n in range(5)}, "properties"),
    }
    for what, (extras, field) in cases.items():
        raw = json.dumps(new_site(**extras), ensure_ascii=False).encode()
        assert len(raw) < 1_000_000  # under the body limit: the rule refusing it is ours
        response = staff.client.post(
            STATIONS, content=raw, headers={**office, "Content-Type": "application/geo+json"}
        )
        assert response.status_code == 400, (what, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, (what, response.json())
    assert snapshot(staff.store) == before
    # Up to the limits, everything is kept.
    fine = {f"extra{n}": "x" * 300 for n in range(19)}
    fine["k" * 64] = {"a": [1, {"b": "三层"}]}
    created = staff.client.post(STATIONS, json=new_site(**fine), headers=office)
    assert created.status_code == 201, created.text
    read, _ = staff.read(created.json()["id"])
    assert {k: read["properties"][k] for k in fine} == fine


def test_validation_survives_any_nesting(catalog):
    """The API stops bodies deeper than 32 levels; other writers (a GeoJSON
    file, a restore) reach the catalog with whatever they hold."""
    feature = valid_feature(deep=orjson.loads(DEEP_JSON))
    with pytest.raises(InvalidFeature, match="nest at most 3 levels"):
        catalog.validate_feature("stations", feature)
    feature = valid_feature(**{"深": orjson.loads(DEEP_JSON)})
    feature["properties"]["name"] = orjson.loads(DEEP_JSON)
    with pytest.raises(InvalidFeature, match="name: must be text"):
        catalog.validate_feature("stations", feature)


def valid_feature(**extras) -> dict:
    feature = {**new_site(**extras), "geometry": point((117.9905, 36.8005))}
    feature["properties"].update(
        id="st-x", town_code=MASHANG, source="s", updated_at="2026-01-01", sample=False
    )
    return feature


def test_an_import_with_too_many_extra_columns_is_refused_row_by_row(staff: Staff):
    header = HEADER[:5] + [f"列{n}" for n in range(21)]
    row = site_row("驿站")[:5] + ["x"] * 21
    response = import_file(staff, "office", csv_bytes([header, row]), "text/csv")
    assert response.status_code == 422, response.text
    [report] = response.json()["report"]["rows"]
    assert any(r.startswith("properties: at most 20 extra properties") for r in report["reasons"])


def test_write_limits_come_from_the_catalog_the_settings_build(tmp_path):
    limits = Settings(town_tolerance_m=0, extra_max_count=1).write_limits()
    assert limits == WriteLimits(max_extras=1, town_tolerance_m=0)
    catalog = load_catalog(limits=limits)
    feature = valid_feature(a=1, b=2)
    with pytest.raises(InvalidFeature, match="at most 1 extra properties"):
        catalog.validate_feature("stations", feature)
    assert load_catalog().validate_feature("stations", feature).properties["b"] == 2


def test_the_settings_reach_every_write_through_the_runtime(tmp_path):
    settings = Settings(store=str(tmp_path / "s.gpkg"), town_tolerance_m=0, extra_max_count=2)
    with TestClient(create_app(settings)) as client:
        rt = client.app.state.runtime
        assert rt.catalog.limits == rt.store.catalog.limits == settings.write_limits()
        known = [town.id for town in rt.store.all_features("towns")]
        office = {"Authorization": f"Bearer {issue_token(rt.store, 'o', 'admin', [], known)}"}
        body = {**new_site(town_code=MASHANG), "geometry": point(NEAR_FANGZHEN)}
        created = client.post(STATIONS, json=body, headers=office)
        assert created.status_code == 201, created.text
        assert created.json()["properties"]["town_code"] == FANGZHEN  # no tolerance
        crowded = client.post(STATIONS, json=new_site(a=1, b=2, c=3), headers=office)
        assert crowded.status_code == 400, crowded.text
