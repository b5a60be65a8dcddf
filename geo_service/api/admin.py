"""The office console over HTTP: sign-in and sign-out, the console shell, and
the session cookie that makes a console request act as its person.

The cookie (``gs_session``) holds the session's random id: HttpOnly (no
script reads it), SameSite=Strict (no other site's page sends it),
``Path=/admin`` (sent to the console only), Secure whenever the service is
reached over HTTPS. The console changes sites through the editing API
mounted under ``/admin/api`` (the same routes as ``/collections/...``), so
the cookie reaches it; every change made with the cookie carries the
session's CSRF token. The account rules are ``services.accounts``'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from geo_service.api.guard import TokenBuckets, client_key
from geo_service.api.media import MediaType
from geo_service.errors import TooManyRequests, Unauthorized
from geo_service.services import accounts
from geo_service.services import console as console_service
from geo_service.services.access import Principal, authenticate
from geo_service.settings import Settings
from geo_service.web.console import console_page, login_page, sites_page

__all__ = ["SESSION_COOKIE", "console_screen", "principal", "router", "sign_in_buckets"]

router = APIRouter(prefix="/admin", include_in_schema=False)

SESSION_COOKIE = "gs_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_MESSAGES = {
    "zh": {
        "wrong": "用户名或密码不正确。",
        "locked": "密码错误次数过多，账户已暂时锁定，请 {} 分钟后再试。",
        "busy": "登录尝试过于频繁，请 {} 秒后再试。",
    },
    "en": {
        "wrong": "Wrong user name or password.",
        "locked": "Too many wrong passwords: this account is locked. Try again in {} min.",
        "busy": "Too many sign-in attempts from this address. Try again in {} s.",
    },
}


def sign_in_buckets(settings: Settings) -> TokenBuckets | None:
    """The per-address limit of sign-in attempts (in this process), or None when off."""
    if not settings.sign_in_per_minute:
        return None
    return TokenBuckets(settings.sign_in_per_minute, settings.sign_in_burst, settings.rate_clients)


def _policy(request: Request) -> accounts.AccountPolicy:
    return accounts.AccountPolicy.from_settings(request.app.state.runtime.settings)


def _session(request: Request) -> accounts.Session | None:
    """The session the request's cookie names; None without a cookie;
    ``Unauthorized`` when it names none that lives. Blocking: call off the loop."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    return accounts.session_for(request.app.state.runtime.store, session_id, _policy(request))


def principal(request: Request) -> Principal:
    """Who makes an editing request: the bearer of its token, or else the
    person whose session cookie it carries, with the session's CSRF token
    in ``X-CSRF-Token`` on every change (403 without it). Blocking."""
    authorization = request.headers.get("authorization")
    store = request.app.state.runtime.store
    if authorization:
        return authenticate(store, authorization)
    session = _session(request)
    if session is None:
        return authenticate(store, None)  # words the 401
    if request.method not in _SAFE_METHODS:
        accounts.check_csrf(session, request.headers.get(CSRF_HEADER))
    return session.principal


def _page(text: str, status: int = 200) -> Response:
    # A page showing who is signed in, or a form, is nobody else's to keep.
    return Response(
        text, status_code=status, media_type=MediaType.html, headers={"Cache-Control": "no-store"}
    )


def _to_login(lang: str = "zh") -> RedirectResponse:
    target = "/admin/login?lang=en" if lang == "en" else "/admin/login"
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


def _secure(request: Request) -> bool:
    public_url = request.app.state.runtime.settings.public_url
    return request.url.scheme == "https" or public_url.startswith("https:")


@router.get("/login")
def login_form(request: Request, lang: Annotated[str | None, Query()] = None) -> Response:
    try:
        if _session(request) is not None:
            return RedirectResponse("/admin/", status_code=303)
    except Unauthorized:
        pass  # an ended session: sign in again
    return _page(login_page(lang or "zh"))


@router.post("/login")
async def login(request: Request) -> Response:
    """A form post of ``name``, ``password`` and ``lang``: 303 to the console
    with a new session's cookie, else the form again (401, or 429 while the
    account or this address is held back, with ``Retry-After``)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    name = (form.get("name") or [""])[0].strip()
    password = (form.get("password") or [""])[0]
    lang = "en" if (form.get("lang") or [""])[0] == "en" else "zh"
    words = _MESSAGES[lang]
    buckets: TokenBuckets | None = request.app.state.sign_in_buckets
    # Taken here on the event loop: the buckets have no lock.
    wait = buckets.take(client_key(request.scope)) if buckets is not None else 0.0
    if wait > 0:
        seconds = max(1, int(wait + 0.999))
        response = _page(login_page(lang, message=words["busy"].format(seconds), name=name), 429)
        response.headers["Retry-After"] = str(seconds)
        return response
    store = request.app.state.runtime.store
    try:
        session = await run_in_threadpool(accounts.sign_in, store, name, password, _policy(request))
    except Unauthorized:
        return _page(login_page(lang, message=words["wrong"], name=name), 401)
    except TooManyRequests as locked:
        minutes = (locked.retry_after + 59) // 60
        page = login_page(lang, message=words["locked"].format(minutes), name=name)
        response = _page(page, 429)
        response.headers["Retry-After"] = str(locked.retry_after)
        return response
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # signing in again (as anyone) ends the session this browser had
        await run_in_threadpool(accounts.sign_out, store, previous)
    response = RedirectResponse("/admin/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        # No Max-Age: the cookie ends with the browser; the session's own
        # limits are kept by the store.
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (its CSRF token in the form field ``csrf_token``)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    try:
        session = await run_in_threadpool(_session, request)
    except Unauthorized:
        return _to_login()
    if session is None:
        return _to_login()
    accounts.check_csrf(session, (form.get("csrf_token") or [None])[0])
    await run_in_threadpool(
        accounts.sign_out, request.app.state.runtime.store, request.cookies[SESSION_COOKIE]
    )
    return _to_login()


@router.get("/")
def console(request: Request) -> Response:
    """The console shell for the person signed in; 303 to the sign-in page otherwise."""
    try:
        session = _session(request)
    except Unauthorized:
        session = None
    if session is None:
        return _to_login()
    who = session.principal
    names = request.app.state.runtime.towns.get().names
    towns = [(code, names.get(code, code)) for code in sorted(who.towns)]
    return _page(
        console_page(name=who.name, role=who.role.value, towns=towns, csrf_token=session.csrf_token)
    )


def _signed_in(request: Request) -> accounts.Session | None:
    """The living session of a console page request, else None (to sign in)."""
    try:
        return _session(request)
    except Unauthorized:
        return None


def console_screen(
    request: Request, render: Callable[..., str], lang: str | None, **extra: Any
) -> Response:
    """A console screen for the person signed in: ``render`` gets the shell's
    header (name, role, towns, CSRF token) and the data block its script
    starts from (language, person, CSRF token, then ``extra``); without a
    living session, 303 to the sign-in page in the page's language."""
    session = _signed_in(request)
    if session is None:
        return _to_login("en" if lang == "en" else "zh")
    who = session.principal
    names = request.app.state.runtime.towns.get().names
    data = {
        "lang": "en" if lang == "en" else "zh",
        "person": {"name": who.name, "role": who.role.value, "towns": sorted(who.towns)},
        "csrf": session.csrf_token,
        **extra,
    }
    towns = [(code, names.get(code, code)) for code in sorted(who.towns)]
    return _page(
        render(
            name=who.name,
            role=who.role.value,
            towns=towns,
            csrf_token=session.csrf_token,
            data=data,
        )
    )


@router.get("/sites")
def sites(request: Request, lang: Annotated[str | None, Query()] = None) -> Response:
    """The Sites screen: table, map, filters and the catalog's form."""
    runtime = request.app.state.runtime
    return console_screen(
        request,
        sites_page,
        lang,
        layers=console_service.console_layers(runtime.catalog),
        towns=console_service.console_towns(runtime),
        today=console_service.today(),
    )


@router.get("/api/sites")
def sites_data(request: Request, layer: Annotated[str, Query()]) -> Response:
    """The sites of ``layer`` the signed-in person keeps (an editor's towns
    only), each with its ETag: what the Sites screen lists and edits."""
    body = console_service.sites_for(request.app.state.runtime, principal(request), layer)
    return Response(
        orjson.dumps(body), media_type=MediaType.geojson, headers={"Cache-Control": "no-store"}
    )
