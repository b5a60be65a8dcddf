"""People of the office console: accounts, sign-in, sessions and CSRF tokens.

Systems keep their bearer tokens (``services.access``); people sign in with a
name and a password:

- Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's
  low-memory profile); the store keeps only the hash, which carries its salt
  and parameters, so stronger parameters later rehash at the next sign-in.
- Wrong passwords are counted in the store, so the count holds across
  workers: ``sign_in_max_failures`` in a row lock the account for
  ``sign_in_lock_minutes``. An unknown or disabled name gets the same answer
  as a wrong password, after the same Argon2 work (against a dummy hash).
- A session is 256 random bits held by the browser's cookie; the store keeps
  only its SHA-256 (like a token's) with a random CSRF token bound to it.
  It ends after ``session_idle_minutes`` unused, ``session_max_hours`` after
  sign-in, at sign-out, and when its user is disabled or given a new password.

The same calls serve the console (``api.admin``) and the CLI (``users``).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from geo_service.errors import Forbidden, InvalidParameter, TooManyRequests, Unauthorized
from geo_service.services.access import Principal, Role, check_grant
from geo_service.settings import Settings
from geo_service.store import Store, UserRecord

__all__ = [
    "AccountPolicy",
    "NewSession",
    "Session",
    "add_user",
    "change_password",
    "check_csrf",
    "disable_user",
    "enable_user",
    "session_for",
    "sign_in",
    "sign_out",
]

PASSWORD_MIN_CHARS = 10
#: Beyond this a password is a mistake (or an attempt to make hashing slow).
PASSWORD_MAX_CHARS = 256

WRONG_CREDENTIALS = "用户名或密码不正确 · wrong user name or password"
SESSION_ENDED = "请重新登录 · sign in again: the session has ended or is not valid"

_hasher = PasswordHasher()


@dataclass(frozen=True)
class AccountPolicy:
    """The account rules, from the settings."""

    idle: dt.timedelta
    max_age: dt.timedelta
    max_failures: int
    lock: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountPolicy:
        return cls(
            idle=dt.timedelta(minutes=settings.session_idle_minutes),
            max_age=dt.timedelta(hours=settings.session_max_hours),
            max_failures=settings.sign_in_max_failures,
            lock=dt.timedelta(minutes=settings.sign_in_lock_minutes),
        )


@dataclass(frozen=True)
class Session:
    """A live console session: who it is, and the CSRF token its changes carry."""

    principal: Principal
    csrf_token: str = field(repr=False)


@dataclass(frozen=True)
class NewSession(Session):
    """A session just started: ``session_id`` goes into the cookie and nowhere else."""

    session_id: str = field(repr=False)


# -- accounts ----------------------------------------------------------------------


def add_user(
    store: Store,
    name: str,
    role: str,
    towns: Iterable[str],
    known_towns: Iterable[str],
    password: str | None = None,
) -> str:
    """Create a user and return their initial password (generated unless given)."""
    role, towns = check_grant(name, role, towns, known_towns)
    password = _new_password(password)
    store.add_user(name, role.value, towns, _hasher.hash(password))
    return password


def change_password(store: Store, name: str, password: str | None = None) -> str:
    """Give a user a new password (generated unless given), clear any lock and
    end their sessions; return the password."""
    password = _new_password(password)
    store.set_password_hash(name, _hasher.hash(password), end_sessions=True)
    return password


def disable_user(store: Store, name: str) -> None:
    """A disabled user cannot sign in, and their sessions end at once."""
    store.set_user_disabled(name, True)


def enable_user(store: Store, name: str) -> None:
    store.set_user_disabled(name, False)


def _new_password(password: str | None) -> str:
    if password is None:
        # 96 random bits in 16 characters a person can type from a note.
        return secrets.token_urlsafe(12)
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise InvalidParameter(
            "password", f"{PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters, please"
        )
    return password


# -- signing in and out -------------------------------------------------------------


def sign_in(store: Store, name: str, password: str, policy: AccountPolicy) -> NewSession:
    """Check a name and password and start a session, or raise ``Unauthorized``
    (the same words whatever was wrong) or ``TooManyRequests`` (the account
    is locked; ``retry_after`` says for how long)."""
    now = _now()
    user = store.user(name)
    if user is not None and user.locked_until is not None:
        until = dt.datetime.fromisoformat(user.locked_until)
        if until > now:
            raise _locked(until - now)
    if user is None or not user.active:
        _verify(_dummy_hash(), password)  # the same work as for a real account
        raise Unauthorized(WRONG_CREDENTIALS)
    if not _verify(user.password_hash, password):
        locked = store.record_failed_sign_in(
            name, limit=policy.max_failures, lock_until=_stamp(now + policy.lock)
        )
        if locked is not None:
            raise _locked(policy.lock)
        raise Unauthorized(WRONG_CREDENTIALS)
    if _hasher.check_needs_rehash(user.password_hash):
        store.set_password_hash(name, _hasher.hash(password), end_sessions=False)
    store.end_stale_sessions(
        idle_since=_stamp(now - policy.idle), created_before=_stamp(now - policy.max_age)
    )
    session_id = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    store.create_session(_session_hash(session_id), name, csrf_token)
    return NewSession(_principal(user), csrf_token, session_id)


def session_for(store: Store, session_id: str, policy: AccountPolicy) -> Session:
    """The live session behind a cookie's id, its idle time started again;
    ``Unauthorized`` when there is none (any more)."""
    session_hash = _session_hash(session_id)
    record = store.session(session_hash)
    if record is None:
        raise Unauthorized(SESSION_ENDED)
    now = _now()
    last_seen = dt.datetime.fromisoformat(record.last_seen)
    if (
        not record.user.active
        or now - last_seen > policy.idle
        or now - dt.datetime.fromisoformat(record.created_at) > policy.max_age
    ):
        store.end_session(session_hash)
        raise Unauthorized(SESSION_ENDED)
    # Written at most every so often, not on every request: a page that asks
    # for ten things costs one write, and the idle time is still honest.
    if now - last_seen > min(dt.timedelta(minutes=1), policy.idle / 10):
        store.touch_session(session_hash)
    return Session(_principal(record.user), record.csrf_token)


def check_csrf(session: Session, sent: str | None) -> None:
    """A change made with a session must carry its CSRF token (a header or a
    form field): another site can make the browser send the cookie, never
    the token."""
    if not sent or not secrets.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden(
            "缺少或错误的 CSRF 令牌，请刷新页面后重试 · missing or wrong CSRF token: "
            "send the session's token in the X-CSRF-Token header"
        )


def sign_out(store: Store, session_id: str) -> None:
    store.end_session(_session_hash(session_id))


def _principal(user: UserRecord) -> Principal:
    return Principal(user.name, Role(user.role), frozenset(user.towns), person=True)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _locked(remaining: dt.timedelta) -> TooManyRequests:
    seconds = max(1, int(remaining.total_seconds() + 0.999))
    minutes = (seconds + 59) // 60
    return TooManyRequests(
        f"密码错误次数过多，账户已暂时锁定，请 {minutes} 分钟后再试 · too many wrong "
        f"passwords: this account is locked; try again in {minutes} min",
        retry_after=seconds,
    )


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(moment: dt.datetime) -> str:
    # The store's format (``store.base.now``): ISO 8601 text that sorts as time.
    return moment.isoformat(timespec="milliseconds")
