"""People of the office console, on both backends: passwords kept as Argon2
hashes, lockout held by the store, sessions that end when they should, and
CSRF tokens on changes made with a session. (The browser and the real
server: tests/test_console_browser.py; the CLI: tests/test_cli.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from geo_service.api import create_app
from geo_service.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    TooManyRequests,
    Unauthorized,
)
from geo_service.services import accounts
from geo_service.settings import Settings
from geo_service.store import Store

MASHANG = "370303009"  # 马尚街道
POLICY = accounts.AccountPolicy.from_settings(Settings())


def age(store: Store, name: str, **columns: dt.timedelta) -> None:
    """Move a user's sessions' ``last_seen`` / ``created_at`` back in time, as
    if that long had passed (the store's clock is the wall clock)."""
    for column, delta in columns.items():
        moment = (dt.datetime.now(dt.UTC) - delta).isoformat(timespec="milliseconds")
        with store._transaction() as conn:
            store._sql(
                conn, f"UPDATE gs_sessions SET {column} = ? WHERE user_name = ?", [moment, name]
            )


def test_a_user_signs_in_with_the_initial_password_and_acts_as_a_person(empty_store: Store):
    password = accounts.add_user(empty_store, "li.wei", "editor", [MASHANG], [MASHANG])
    assert len(password) >= 16
    session = accounts.sign_in(empty_store, "li.wei", password, POLICY)
    who = session.principal
    assert (who.name, who.role.value, who.towns, who.person) == (
        "li.wei",
        "editor",
        frozenset({MASHANG}),
        True,
    )
    assert who.actor == "user:li.wei"
    again = accounts.session_for(empty_store, session.session_id, POLICY)
    assert again.principal == who and again.csrf_token == session.csrf_token
    # The store holds an Argon2id hash, and never the session id itself.
    user = empty_store.user("li.wei")
    assert user.password_hash.startswith("$argon2id$") and password not in user.password_hash
    assert "password_hash" not in repr(user) and "$argon2" not in repr(user)
    assert empty_store.session(session.session_id) is None


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(empty_store: Store):
    accounts.add_user(empty_store, "office", "admin", [], [MASHANG], password="correct horse 1")
    with pytest.raises(Unauthorized) as wrong:
        accounts.sign_in(empty_store, "office", "not the password", POLICY)
    with pytest.raises(Unauthorized) as unknown:
        accounts.sign_in(empty_store, "nobody", "not the password", POLICY)
    assert wrong.value.detail == unknown.value.detail == accounts.WRONG_CREDENTIALS


def test_five_wrong_passwords_lock_the_account_until_a_new_password(empty_store: Store):
    accounts.add_user(empty_store, "office", "admin", [], [], password="correct horse 1")
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(Unauthorized):
            accounts.sign_in(empty_store, "office", "guess", POLICY)
    with pytest.raises(TooManyRequests) as locked:
        accounts.sign_in(empty_store, "office", "guess", POLICY)
    assert 14 * 60 < locked.value.retry_after <= 15 * 60
    # Locked: even the right password is refused, by every worker (the store says so).
    with pytest.raises(TooManyRequests):
        accounts.sign_in(empty_store, "office", "correct horse 1", POLICY)
    assert empty_store.user("office").locked_until is not None
    accounts.change_password(empty_store, "office", "a new password 2")
    assert accounts.sign_in(empty_store, "office", "a new password 2", POLICY).principal.is_admin


def test_a_success_starts_the_count_of_failures_again(empty_store: Store):
    accounts.add_user(empty_store, "office", "admin", [], [], password="correct horse 1")
    for _ in range(2):
        for _ in range(POLICY.max_failures - 1):
            with pytest.raises(Unauthorized):
                accounts.sign_in(empty_store, "office", "guess", POLICY)
        accounts.sign_in(empty_store, "office", "correct horse 1", POLICY)


def test_sessions_end_when_idle_too_long_or_too_old(empty_store: Store):
    password = accounts.add_user(empty_store, "office", "admin", [], [])
    idle = accounts.sign_in(empty_store, "office", password, POLICY)
    age(empty_store, "office", last_seen=POLICY.idle + dt.timedelta(seconds=5))
    with pytest.raises(Unauthorized):
        accounts.session_for(empty_store, idle.session_id, POLICY)

    busy = accounts.sign_in(empty_store, "office", password, POLICY)
    # Used two minutes ago: still alive, and its idle time starts again.
    age(empty_store, "office", last_seen=dt.timedelta(minutes=2))
    accounts.session_for(empty_store, busy.session_id, POLICY)
    record = empty_store.session(accounts._session_hash(busy.session_id))
    seen = dt.datetime.fromisoformat(record.last_seen)
    assert dt.datetime.now(dt.UTC) - seen < dt.timedelta(seconds=30)
    # However busy, a session ends session_max_hours after sign-in.
    age(empty_store, "office", created_at=POLICY.max_age + dt.timedelta(seconds=5))
    with pytest.raises(Unauthorized):
        accounts.session_for(empty_store, busy.session_id, POLICY)


def test_disabling_or_a_new_password_ends_every_session(empty_store: Store):
    password = accounts.add_user(empty_store, "wang", "editor", [MASHANG], [MASHANG])
    first = accounts.sign_in(empty_store, "wang", password, POLICY)
    accounts.disable_user(empty_store, "wang")
    with pytest.raises(Unauthorized):
        accounts.session_for(empty_store, first.session_id, POLICY)
    with pytest.raises(Unauthorized):
        accounts.sign_in(empty_store, "wang", password, POLICY)
    accounts.enable_user(empty_store, "wang")
    second = accounts.sign_in(empty_store, "wang", password, POLICY)
    new_password = accounts.change_password(empty_store, "wang")
    with pytest.raises(Unauthorized):
        accounts.session_for(empty_store, second.session_id, POLICY)
    accounts.sign_in(empty_store, "wang", new_password, POLICY)


def test_accounts_refuse_bad_names_short_passwords_and_reused_names(empty_store: Store):
    with pytest.raises(InvalidParameter, match="password"):
        accounts.add_user(empty_store, "office", "admin", [], [], password="short")
    with pytest.raises(InvalidParameter, match="name"):
        accounts.add_user(empty_store, "user:office", "admin", [], [])
    with pytest.raises(InvalidParameter, match="towns"):
        accounts.add_user(empty_store, "wang", "editor", [], [MASHANG])
    accounts.add_user(empty_store, "office", "admin", [], [])
    with pytest.raises(Conflict, match="never reused"):
        accounts.add_user(empty_store, "office", "admin", [], [])


def test_the_csrf_token_must_be_the_sessions_own(empty_store: Store):
    password = accounts.add_user(empty_store, "office", "admin", [], [])
    one = accounts.sign_in(empty_store, "office", password, POLICY)
    other = accounts.sign_in(empty_store, "office", password, POLICY)
    accounts.check_csrf(one, one.csrf_token)
    for sent in (None, "", other.csrf_token):
        with pytest.raises(Forbidden):
            accounts.check_csrf(one, sent)


# -- HTTP details a browser cannot show (in-process app, GeoPackage) ------------------


@pytest.fixture
def office_app(tmp_path):
    location = str(tmp_path / "console.gpkg")

    def make(**settings) -> TestClient:
        return TestClient(create_app(Settings(store=location, **settings)))

    return make


def _add_office(client: TestClient) -> str:
    store = client.app.state.runtime.store
    return accounts.add_user(store, "office", "admin", [], [], password="correct horse 1")


def test_one_address_is_held_back_after_its_sign_in_attempts(office_app):
    with office_app(sign_in_per_minute=2, sign_in_burst=2) as client:
        _add_office(client)
        form = {"name": "office", "password": "guess"}
        assert [client.post("/admin/login", data=form).status_code for _ in range(2)] == [401, 401]
        held = client.post("/admin/login", data=form)
        assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
        assert "登录尝试过于频繁" in held.text


def test_the_cookie_is_secure_over_https_and_scoped_to_the_console(office_app):
    with office_app(public_url="https://map.example.gov.cn") as client:
        _add_office(client)
        response = client.post(
            "/admin/login",
            data={"name": "office", "password": "correct horse 1"},
            follow_redirects=False,
        )
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    cookie = response.headers["Set-Cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/admin", "secure"):
        assert attribute in cookie
    assert "max-age" not in cookie and "expires" not in cookie


def test_sign_out_needs_the_csrf_token_and_ends_the_session(office_app):
    with office_app() as client:
        _add_office(client)
        client.post("/admin/login", data={"name": "office", "password": "correct horse 1"})
        console = client.get("/admin/")
        assert console.status_code == 200 and console.headers["Cache-Control"] == "no-store"
        refused = client.post("/admin/logout", data={"csrf_token": "forged"})
        assert refused.status_code == 403
        assert refused.headers["Content-Type"] == "application/problem+json"
        token = console.text.split('name="csrf-token" content="')[1].split('"')[0]
        out = client.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["Location"] == "/admin/login"
        assert client.app.state.runtime.store.users()[0].name == "office"
        with client.app.state.runtime.store._reading() as conn:
            assert client.app.state.runtime.store._sql(conn, "SELECT * FROM gs_sessions") == []
        gone = client.get("/admin/", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["Location"] == "/admin/login"


def test_a_bearer_token_needs_no_csrf_token_under_admin_api(office_app):
    from geo_service.services.access import issue_token

    with office_app() as client:
        store = client.app.state.runtime.store
        token = issue_token(store, "portal", "admin", [], [])
        feature = client.get("/collections/stations/items/st-town-mashang")
        response = client.patch(
            "/admin/api/collections/stations/items/st-town-mashang",
            json={"properties": {"phone": "0533-0000001"}},
            headers={"Authorization": f"Bearer {token}", "If-Match": feature.headers["ETag"]},
        )
        assert response.status_code == 200, response.text


def test_the_console_pages_keep_store_and_form_text_inert():
    from geo_service.web.console import console_page, login_page

    hostile = '"><script>alert(1)</script>'
    page = console_page(
        name="王芳", role="editor", towns=[(MASHANG, hostile)], csrf_token="token-1"
    )
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "form-action 'self'" in page and "script-src 'self' 'unsafe-eval';" in page
    # The name a person typed comes back in the form, as text.
    refilled = login_page("zh", message="用户名或密码不正确。", name=hostile)
    assert "<script>alert" not in refilled and 'value="&quot;&gt;&lt;script&gt;' in refilled


def test_the_login_form_answers_an_unknown_name_like_a_wrong_password(office_app):
    with office_app() as client:
        _add_office(client)
        wrong = client.post("/admin/login", data={"name": "office", "password": "guess"})
        unknown = client.post("/admin/login", data={"name": "nobody", "password": "guess"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text.replace("office", "nobody") == unknown.text


def test_signing_in_again_ends_the_browsers_previous_session(office_app):
    with office_app() as client:
        _add_office(client)
        form = {"name": "office", "password": "correct horse 1"}
        first = client.post("/admin/login", data=form, follow_redirects=False)
        client.post("/admin/login", data=form, follow_redirects=False)
        store = client.app.state.runtime.store
        with store._reading() as conn:
            (count,) = store._sql(conn, "SELECT count(*) FROM gs_sessions")[0]
    assert count == 1 and first.cookies["gs_session"] != client.cookies["gs_session"]
