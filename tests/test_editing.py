"""Editing through the API, on both backends: tokens and town scopes, If-Match,
the audit trail, soft delete and restore, the import endpoint, body limits."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from geo_service.api import create_app
from geo_service.services.access import hash_token, issue_token
from geo_service.settings import Settings
from geo_service.store import AuditQuery, Store

MASHANG = "370303009"  # 马尚街道
FANGZHEN = "370303107"  # 房镇镇
MASHANG_SITE = "st-town-mashang"
FANGZHEN_SITE = "st-town-fangzhen"


class Staff:
    """A TestClient on the store plus one token per role the tests need."""

    def __init__(self, client: TestClient, store: Store):
        self.client = client
        self.store = store
        known = [town.id for town in store.all_features("towns")]
        self.tokens = {
            "office": issue_token(store, "office", "admin", [], known),
            "mashang-a": issue_token(store, "mashang-a", "editor", [MASHANG], known),
            "mashang-b": issue_token(store, "mashang-b", "editor", [MASHANG], known),
            "fangzhen": issue_token(store, "fangzhen", "editor", [FANGZHEN], known),
        }

    def headers(self, who: str | None, etag: str | None = None) -> dict[str, str]:
        headers = {}
        if who:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        if etag:
            headers["If-Match"] = etag
        return headers

    def read(self, feature_id: str, layer: str = "stations") -> tuple[dict, str]:
        response = self.client.get(f"/collections/{layer}/items/{feature_id}")
        assert response.status_code == 200, response.text
        return response.json(), response.headers["ETag"]

    def patch(self, who, feature_id, props, etag, layer="stations"):
        return self.client.patch(
            f"/collections/{layer}/items/{feature_id}",
            json={"properties": props},
            headers=self.headers(who, etag),
        )


@pytest.fixture
def staff(store: Store) -> Iterator[Staff]:
    app = create_app(Settings(store=store.location))
    with TestClient(app) as client:
        yield Staff(client, store)


def new_site(**props) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [117.9905, 36.8005]},  # in 马尚
        "properties": {
            "name": "马尚拥军服务驿站（测试）",
            "kind": "support_post",
            "address": "马尚街道测试路1号",
            "eligible": ["veteran"],
            "status": "open",
            "position_quality": "surveyed",
            **props,
        },
    }


# -- the issue's "done means" ------------------------------------------------------


def test_two_editors_changing_one_site_one_wins_the_other_gets_412(staff: Staff):
    _, etag = staff.read(MASHANG_SITE)
    first = staff.patch("mashang-a", MASHANG_SITE, {"phone": "0533-2100001"}, etag)
    assert first.status_code == 200, first.text
    second = staff.patch("mashang-b", MASHANG_SITE, {"opening_hours": "Mo-Fr 09:00-17:00"}, etag)
    assert second.status_code == 412
    assert second.headers["content-type"] == "application/problem+json"
    assert second.headers["ETag"] == first.headers["ETag"]
    body, now = staff.read(MASHANG_SITE)
    assert body["properties"]["phone"] == "0533-2100001"  # the winner's change is there
    # The loser reads again and reapplies: both changes are kept, nothing lost.
    again = staff.patch("mashang-b", MASHANG_SITE, {"opening_hours": "Mo-Fr 09:00-17:00"}, now)
    assert again.status_code == 200, again.text
    final, _ = staff.read(MASHANG_SITE)
    assert final["properties"]["phone"] == "0533-2100001"
    assert final["properties"]["opening_hours"] == "Mo-Fr 09:00-17:00"
    actors = [r["actor"] for r in staff.store.audit_records(MASHANG_SITE) if r["action"] == "patch"]
    assert actors == ["mashang-a", "mashang-b"]


def test_an_editor_of_mashang_cannot_touch_a_site_in_fangzhen(staff: Staff):
    before, etag = staff.read(FANGZHEN_SITE)
    url = f"/collections/stations/items/{FANGZHEN_SITE}"
    patched = staff.patch("mashang-a", FANGZHEN_SITE, {"phone": "0533-2100002"}, etag)
    replaced = staff.client.put(url, json=before, headers=staff.headers("mashang-a", etag))
    deleted = staff.client.delete(url, headers=staff.headers("mashang-a", etag))
    for response in (patched, replaced, deleted):
        assert response.status_code == 403, response.text
        assert "房镇镇" in response.json()["detail"]
    after, etag_after = staff.read(FANGZHEN_SITE)
    assert after == before and etag_after == etag
    # Nor create a site there, nor move one of theirs there.
    fangzhen_point = {"type": "Point", "coordinates": [117.995, 36.8452]}
    created = staff.client.post(
        "/collections/stations/items",
        json={**new_site(town_code=FANGZHEN), "geometry": fangzhen_point},
        headers=staff.headers("mashang-a"),
    )
    assert created.status_code == 403, created.text
    _, own_etag = staff.read(MASHANG_SITE)
    moved = staff.client.patch(
        f"/collections/stations/items/{MASHANG_SITE}",
        json={"geometry": fangzhen_point, "properties": {"town_code": FANGZHEN}},
        headers=staff.headers("mashang-a", own_etag),
    )
    assert moved.status_code == 403, moved.text
    # The 房镇 editor may change it; the office may change anything.
    assert (
        staff.patch("fangzhen", FANGZHEN_SITE, {"phone": "0533-2100003"}, etag).status_code == 200
    )
    _, etag = staff.read(FANGZHEN_SITE)
    assert staff.patch("office", FANGZHEN_SITE, {"phone": "0533-2100004"}, etag).status_code == 200


def test_editors_may_not_change_towns_or_the_district(staff: Staff):
    _, etag = staff.read(MASHANG, layer="towns")
    response = staff.patch("mashang-a", MASHANG, {"population": 1}, etag, layer="towns")
    assert response.status_code == 403
    # Not even the office deletes a town that facilities point at, one by one.
    deleted = staff.client.delete(
        f"/collections/towns/items/{MASHANG}", headers=staff.headers("office", etag)
    )
    assert deleted.status_code == 409
    assert staff.read(MASHANG, layer="towns")[1] == etag
    patched = staff.patch("office", MASHANG, {"population": 123456}, etag, layer="towns")
    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"]["population"] == 123456


# -- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic b2ZmaWNlOnB3", "bearer  "],
)
def test_a_missing_or_bad_token_is_401_with_a_challenge(staff: Staff, authorization):
    _, etag = staff.read(MASHANG_SITE)
    headers = {"If-Match": etag}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = staff.client.patch(
        f"/collections/stations/items/{MASHANG_SITE}",
        json={"properties": {"phone": "0533-2100005"}},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert staff.read(MASHANG_SITE)[1] == etag


def test_a_revoked_token_is_refused_at_once(staff: Staff):
    _, etag = staff.read(MASHANG_SITE)
    staff.store.revoke_token("mashang-a")
    response = staff.patch("mashang-a", MASHANG_SITE, {"phone": "0533-2100006"}, etag)
    assert response.status_code == 401


def test_tokens_are_stored_hashed_and_names_are_never_reused(staff: Staff):
    token = staff.tokens["office"]
    assert staff.store.token_by_hash(hash_token(token)).name == "office"
    listed = repr(staff.store.tokens())
    assert token not in listed and hash_token(token) not in listed
    with pytest.raises(Exception, match="exists"):
        issue_token(staff.store, "office", "admin", [], [])
    with pytest.raises(Exception, match="unknown town"):
        issue_token(staff.store, "new", "editor", ["370303999"], [MASHANG])
    with pytest.raises(Exception, match="needs the town codes"):
        issue_token(staff.store, "new", "editor", [], [MASHANG])


# -- If-Match, validation --------------------------------------------------------------


def test_changes_without_if_match_are_428_and_write_nothing(staff: Staff):
    body, etag = staff.read(MASHANG_SITE)
    url = f"/collections/stations/items/{MASHANG_SITE}"
    auth = staff.headers("office")
    answers = [
        staff.client.patch(url, json={"properties": {"phone": "0533-2100007"}}, headers=auth),
        staff.client.put(url, json=body, headers=auth),
        staff.client.delete(url, headers=auth),
    ]
    assert [a.status_code for a in answers] == [428, 428, 428]
    assert staff.read(MASHANG_SITE)[1] == etag


def test_create_fills_in_what_the_service_knows_and_audits_who(staff: Staff):
    response = staff.client.post(
        "/collections/stations/items", json=new_site(), headers=staff.headers("mashang-a")
    )
    assert response.status_code == 201, response.text
    created = response.json()
    props = created["properties"]
    assert props["town_code"] == MASHANG  # from the position
    assert props["sample"] is False and props["updated_at"]
    assert "mashang-a" not in orjson.dumps(created).decode()  # public data names no editor
    location = response.headers["Location"]
    assert location.endswith(f"/collections/stations/items/{created['id']}")
    assert staff.read(created["id"])[1] == response.headers["ETag"]
    record = staff.store.audit_records(created["id"])[-1]
    assert (record["actor"], record["action"], record["before"]) == ("mashang-a", "create", None)
    assert orjson.loads(record["after"])["properties"]["name"] == "马尚拥军服务驿站（测试）"
    # The same site posted again is refused, not stored twice.
    again = staff.client.post(
        "/collections/stations/items", json=new_site(), headers=staff.headers("mashang-a")
    )
    assert again.status_code == 409


def test_an_invalid_feature_is_400_naming_each_field_and_writes_nothing(staff: Staff):
    records = len(staff.store.audit_records())
    bad = new_site(kind="castle", eligible=["aliens"])
    response = staff.client.post(
        "/collections/stations/items", json=bad, headers=staff.headers("office")
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"kind", "eligible"} <= fields
    body, etag = staff.read(MASHANG_SITE)
    wrong = copy.deepcopy(body)
    wrong["geometry"] = {"type": "Point", "coordinates": [200, 36.8]}
    put = staff.client.put(
        f"/collections/stations/items/{MASHANG_SITE}",
        json=wrong,
        headers=staff.headers("office", etag),
    )
    assert put.status_code == 400
    other_id = staff.client.put(
        f"/collections/stations/items/{MASHANG_SITE}",
        json={**body, "id": "something-else"},
        headers=staff.headers("office", etag),
    )
    assert other_id.status_code == 400
    assert len(staff.store.audit_records()) == records
    assert staff.read(MASHANG_SITE)[1] == etag


@pytest.mark.parametrize(
    ("content_type", "payload", "status"),
    [
        ("application/json", b"{not json", 400),
        ("application/json", b"[1, 2]", 400),
        ("text/plain", b"{}", 415),
        ("application/geo+json", b'{"type": "FeatureCollection", "features": []}', 400),
    ],
)
def test_malformed_bodies_get_clear_errors(staff: Staff, content_type, payload, status):
    response = staff.client.post(
        "/collections/stations/items",
        content=payload,
        headers={**staff.headers("office"), "Content-Type": content_type},
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_bodies_over_the_limit_are_413(staff: Staff):
    huge = new_site(note="x" * 1_100_000)
    response = staff.client.post(
        "/collections/stations/items", json=huge, headers=staff.headers("office")
    )
    assert response.status_code == 413
    assert response.json()["status"] == 413

    def chunks():  # no Content-Length: counted while it is read
        for _ in range(12):
            yield b" " * 100_000

    streamed = staff.client.post(
        "/collections/stations/items",
        content=chunks(),
        headers={**staff.headers("office"), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


def test_every_response_carries_security_headers(staff: Staff):
    for url in ("/", "/collections", "/map", "/nearest?lon=118.05&lat=36.8"):
        response = staff.client.get(url)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"]


# -- delete and restore -------------------------------------------------------------------


def test_delete_is_soft_and_restore_brings_the_site_back(staff: Staff):
    body, etag = staff.read(MASHANG_SITE)
    count = staff.store.count("stations")
    response = staff.client.delete(
        f"/collections/stations/items/{MASHANG_SITE}", headers=staff.headers("mashang-a", etag)
    )
    assert response.status_code == 204
    assert staff.client.get(f"/collections/stations/items/{MASHANG_SITE}").status_code == 404
    assert staff.store.count("stations") == count - 1
    nearest = staff.client.get("/nearest?lon=117.9906&lat=36.8007&k=3&layers=stations").json()
    assert MASHANG_SITE not in [f["id"] for f in nearest["features"]]
    change = staff.store.restore("stations", MASHANG_SITE, actor="cli:test")
    restored, _ = staff.read(MASHANG_SITE)
    assert restored["properties"] == body["properties"]
    assert restored["geometry"] == body["geometry"]
    assert change.after is not None and staff.store.count("stations") == count
    actions = [r["action"] for r in staff.store.audit_records(MASHANG_SITE)]
    assert actions[-2:] == ["delete", "restore"]
    with pytest.raises(Exception, match="not a deleted feature"):
        staff.store.restore("stations", MASHANG_SITE, actor="cli:test")


# -- the audit trail ---------------------------------------------------------------------


def test_the_audit_trail_is_for_admins_only_and_filters(staff: Staff):
    _, etag = staff.read(MASHANG_SITE)
    assert (
        staff.patch("mashang-a", MASHANG_SITE, {"phone": "0533-2100008"}, etag).status_code == 200
    )
    assert staff.client.get("/audit").status_code == 401
    assert staff.client.get("/audit", headers=staff.headers("mashang-a")).status_code == 403
    office = staff.headers("office")
    by_user = staff.client.get("/audit", params={"user": "mashang-a"}, headers=office)
    assert by_user.status_code == 200
    assert by_user.headers["Cache-Control"] == "no-store"
    records = by_user.json()["records"]
    assert [r["feature_id"] for r in records] == [MASHANG_SITE]
    assert records[0]["before"]["properties"]["phone"] != "0533-2100008"
    assert records[0]["after"]["properties"]["phone"] == "0533-2100008"
    by_town = staff.client.get("/audit", params={"town": FANGZHEN}, headers=office).json()
    assert by_town["numberMatched"] > 0  # the seed
    assert all(FANGZHEN in (r["town_code"], r["previous_town_code"]) for r in by_town["records"])
    today = records[0]["at"][:10]
    same_day = staff.client.get(
        "/audit", params={"user": "mashang-a", "since": today, "until": today}, headers=office
    )
    assert same_day.json()["numberMatched"] == 1
    later = staff.client.get(
        "/audit", params={"user": "mashang-a", "since": "2999-01-01"}, headers=office
    )
    assert later.json()["numberMatched"] == 0
    for bad in ({"since": "yesterday"}, {"until": "2026-13-45"}, {"town": "1"}, {"limit": 0}):
        assert staff.client.get("/audit", params=bad, headers=office).status_code == 400


def test_a_move_between_towns_is_found_under_both_towns(staff: Staff):
    body, etag = staff.read(MASHANG_SITE)
    body["properties"]["town_code"] = FANGZHEN
    body["geometry"] = {"type": "Point", "coordinates": [117.995, 36.8452]}
    response = staff.client.put(
        f"/collections/stations/items/{MASHANG_SITE}",
        json=body,
        headers=staff.headers("office", etag),
    )
    assert response.status_code == 200, response.text
    for town in (MASHANG, FANGZHEN):
        records, _ = staff.store.audit_log(AuditQuery(town_code=town, feature_id=MASHANG_SITE))
        assert [r["action"] for r in records][-1] == "replace"


# -- import ------------------------------------------------------------------------------

CSV = (
    "名称,类型,地址,经度,纬度\n"
    "马尚测试驿站甲,拥军服务驿站,马尚街道甲路1号,117.9905,36.8005\n"
    "房镇测试驿站乙,拥军服务驿站,房镇镇乙路2号,117.9950,36.8452\n"
)


def test_import_through_the_api_reports_row_by_row_within_the_editors_towns(staff: Staff):
    url = "/collections/stations/import"
    headers = {**staff.headers("mashang-a"), "Content-Type": "text/csv"}
    count = staff.store.count("stations")
    refused = staff.client.post(url, content=CSV.encode(), headers=headers)
    assert refused.status_code == 422, refused.text
    rows = refused.json()["report"]["rows"]
    assert [r["status"] for r in rows] == ["OK", "error"]
    assert "outside the towns" in " ".join(rows[1]["reasons"])
    assert staff.store.count("stations") == count
    dry = staff.client.post(url, content=CSV.encode(), headers=headers, params={"dry_run": "true"})
    assert dry.status_code == 200 and dry.json()["written"] is None
    assert staff.store.count("stations") == count
    done = staff.client.post(
        url,
        content=CSV.encode(),
        headers=headers,
        params={"skip_invalid": "true", "filename": "马尚台账.csv"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["written"]["stations"]["inserted"] == 1
    assert staff.store.count("stations") == count + 1
    new = [r for r in staff.store.audit_records() if r["action"] == "import"]
    assert [r["actor"] for r in new] == ["mashang-a"]
    # The office may import everything.
    office = {**staff.headers("office"), "Content-Type": "text/csv"}
    assert staff.client.post(url, content=CSV.encode(), headers=office).status_code == 200
    assert staff.store.count("stations") == count + 2


def test_import_refuses_unknown_file_types(staff: Staff):
    response = staff.client.post(
        "/collections/stations/import",
        content=b"\x00\x01",
        headers={**staff.headers("office"), "Content-Type": "application/zip"},
    )
    assert response.status_code == 415
