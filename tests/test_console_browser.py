"""The office console's sign-in in Debian's Chromium against a real server, on
both backends: a person signs in and sees their name, five wrong passwords
lock the account, an idle session sends them back to sign in, changes made
with the session need its CSRF token, an editor's session stays in their
towns, and no password or session id is kept or logged in clear."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from geo_service.store import AuditQuery
from tests import conftest
from tests.conftest import ROOT, TEST_PG, ConsoleOffice, console_office

pytestmark = pytest.mark.server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MASHANG = "370303009"  # 马尚街道
MASHANG_SITE = "st-town-mashang"
FANGZHEN_SITE = "st-town-fangzhen"

#: name -> (role, towns); each test signs in as its own person, so one test's
#: lock or ended session never meets another's.
PEOPLE = {
    "王芳": ("editor", [MASHANG]),
    "office": ("admin", []),
    "lock-me": ("admin", []),
    "idle-one": ("admin", []),
    "keeper": ("admin", []),
}


Console = ConsoleOffice


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def console(request, tmp_path_factory) -> Iterator[Console]:
    with console_office(request.param, tmp_path_factory.mktemp("console"), PEOPLE) as shared:
        yield shared


@pytest.fixture
def new_page(browser) -> Iterator:
    contexts = []

    def opener(width: int = 1280, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        contexts.append(context)
        return context.new_page()

    yield opener
    for context in contexts:
        context.close()


def sign_in(page, console: Console, name: str, password: str | None = None) -> None:
    conftest.sign_in(
        page, console.base, name, console.passwords[name] if password is None else password
    )


def csrf_token(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def patch_site(page, feature_id: str, phone: str, token: str | None) -> dict:
    """A change sent from the console page the way its scripts will send it:
    fetch with the browser's cookie, the ETag read first."""
    return page.evaluate(
        """async ([id, phone, token]) => {
            const url = '/admin/api/collections/stations/items/' + id;
            const etag = (await fetch('/collections/stations/items/' + id)).headers.get('ETag');
            const headers = {'Content-Type': 'application/merge-patch+json', 'If-Match': etag};
            if (token) headers['X-CSRF-Token'] = token;
            const response = await fetch(url, {method: 'PATCH', headers,
                body: JSON.stringify({properties: {phone}})});
            return {status: response.status, type: response.headers.get('Content-Type'),
                    body: await response.json()};
        }""",
        [feature_id, phone, token],
    )


def test_a_person_signs_in_on_a_phone_and_lands_on_the_console_with_their_name(console, new_page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(390, 844)
    page.goto(console.base + "/admin/")
    assert page.url == console.base + "/admin/login"  # not signed in: to the sign-in page
    assert page.get_by_role("heading").inner_text() == "登录"
    # The form fits a phone and its controls are finger-sized.
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    for control in (page.get_by_label("用户名"), page.get_by_label("密码")):
        assert control.bounding_box()["height"] >= 44
    page.screenshot(path=str(SCREENSHOTS / "console-login-phone.png"))

    sign_in(page, console, "王芳")
    assert page.url == console.base + "/admin/"
    header = page.locator("header").inner_text()
    assert "王芳" in header and "编辑 Editor" in header and "马尚街道 (370303009)" in header
    menu = page.locator("nav").inner_text()
    for item in ("站点", "表格导入", "示例转正", "历史", "督办", "规划与打印"):
        assert item in menu
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    page.screenshot(path=str(SCREENSHOTS / "console-phone.png"))
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
        "gs_session",
        "/admin",
        True,
        "Strict",
    )
    assert page.evaluate("document.cookie") == ""  # no script can read it

    page.get_by_role("button", name="退出登录 Sign out").click()
    page.wait_for_load_state()
    assert page.url == console.base + "/admin/login"
    page.goto(console.base + "/admin/")
    assert page.url == console.base + "/admin/login"


def test_the_sign_in_page_switches_to_english_and_back(console, new_page):
    page = new_page()
    page.goto(console.base + "/admin/login")
    page.get_by_role("link", name="English").click()
    assert page.get_by_role("heading").inner_text() == "Sign in"
    page.get_by_label("User name").fill("office")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    assert page.evaluate("document.documentElement.lang") == "en"
    page.get_by_role("link", name="中文").click()
    assert page.get_by_label("用户名").is_visible()


def test_five_wrong_passwords_show_the_locked_message(console, new_page):
    page = new_page()
    for _ in range(4):
        sign_in(page, console, "lock-me", "wrong password")
        assert page.get_by_role("alert").inner_text() == "用户名或密码不正确。"
        # The name stays filled in; the password does not.
        assert page.get_by_label("用户名").input_value() == "lock-me"
        assert page.get_by_label("密码").input_value() == ""
    sign_in(page, console, "lock-me", "wrong password")
    locked = page.get_by_role("alert").inner_text()
    assert "账户已暂时锁定" in locked and "15 分钟" in locked
    # Locked means locked: the right password is refused too, with Retry-After.
    response = httpx.post(
        console.base + "/admin/login",
        data={"name": "lock-me", "password": console.passwords["lock-me"]},
    )
    assert response.status_code == 429 and 800 < int(response.headers["Retry-After"]) <= 900
    # An unknown name gets the wrong-password answer, status and all.
    unknown = httpx.post(console.base + "/admin/login", data={"name": "nobody", "password": "x"})
    assert unknown.status_code == 401 and "用户名或密码不正确。" in unknown.text


def test_an_idle_session_sends_the_person_back_to_sign_in(console, new_page):
    page = new_page()
    sign_in(page, console, "idle-one")
    assert page.url == console.base + "/admin/"
    # 31 minutes without a request (the default idle limit is 30).
    store = console.store()
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)
    with store._transaction() as conn:
        store._sql(
            conn,
            "UPDATE gs_sessions SET last_seen = ? WHERE user_name = ?",
            [moment.isoformat(timespec="milliseconds"), "idle-one"],
        )
    store.close()
    page.reload()
    assert page.url == console.base + "/admin/login"
    assert page.get_by_role("heading").inner_text() == "登录"


def test_a_change_with_the_session_needs_its_csrf_token(console, new_page):
    page = new_page()
    sign_in(page, console, "office")
    refused = patch_site(page, MASHANG_SITE, "0533-1111111", None)
    assert refused["status"] == 403
    assert refused["type"] == "application/problem+json"
    assert "CSRF" in refused["body"]["detail"]
    forged = patch_site(page, MASHANG_SITE, "0533-1111111", "not-the-token")
    assert forged["status"] == 403
    passed = patch_site(page, MASHANG_SITE, "0533-1111111", csrf_token(page))
    assert passed["status"] == 200, passed
    assert passed["body"]["properties"]["phone"] == "0533-1111111"
    # The audit trail names the person, as a person.
    store = console.store()
    records, _ = store.audit_log(AuditQuery(feature_id=MASHANG_SITE), newest_first=True)
    store.close()
    assert records[0]["actor"] == "user:office"


def test_a_town_editors_session_cannot_change_another_towns_site(console, new_page):
    page = new_page()
    sign_in(page, console, "王芳")
    token = csrf_token(page)
    refused = patch_site(page, FANGZHEN_SITE, "0533-2222222", token)
    assert refused["status"] == 403
    assert "outside the towns this account may edit" in refused["body"]["detail"]
    own = patch_site(page, MASHANG_SITE, "0533-3333333", token)
    assert own["status"] == 200, own


def test_no_password_or_session_id_is_kept_or_logged_in_clear(console):
    password = console.passwords["keeper"]
    with httpx.Client(base_url=console.base, follow_redirects=True) as client:
        response = client.post("/admin/login", data={"name": "keeper", "password": password})
        assert response.status_code == 200 and "keeper" in response.text
        session_id = client.cookies["gs_session"]
        token = re.search(r'name="csrf-token" content="([^"]+)"', response.text).group(1)
        etag = client.get(f"/collections/stations/items/{MASHANG_SITE}").headers["ETag"]
        changed = client.patch(
            f"/admin/api/collections/stations/items/{MASHANG_SITE}",
            json={"properties": {"phone": "0533-4444444"}},
            headers={"If-Match": etag, "X-CSRF-Token": token},
        )
        assert changed.status_code == 200, changed.text
    kept = _everything_stored(console)
    assert "keeper" in kept and "user:keeper" in kept  # the dump holds what it should
    logs = "".join(p.read_text(errors="replace") for p in console.folder.glob("server-*.log"))
    assert "/admin/login" in logs  # the access log is there to look in
    for secret in (password, session_id):
        assert secret not in kept
        assert secret not in logs


def _everything_stored(console: Console) -> str:
    """Every byte of the store as text: the GeoPackage file and its WAL, or
    every row of every table of the PostGIS schema."""
    if not console.location.startswith("postgresql"):
        files = [Path(console.location), Path(console.location + "-wal")]
        return "".join(f.read_bytes().decode("utf-8", "replace") for f in files if f.exists())
    import psycopg

    schema = re.search(r"schema=(\w+)", console.location).group(1)
    assert TEST_PG
    with psycopg.connect(TEST_PG) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        assert {"gs_users", "gs_sessions", "gs_audit"} <= set(tables)
        return "\n".join(
            row[0]
            for table in tables
            for row in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
        )
