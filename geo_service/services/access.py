"""Who may change what: bearer tokens, roles and town scopes.

Residents read anonymously. Staff send ``Authorization: Bearer TOKEN``:

- ``admin`` (the district office) may change everything and read the audit trail;
- ``editor`` (town staff) may create, change and delete facilities whose
  ``town_code`` is one of their towns, and may not move one out of them.
  That ``town_code`` is the one the site's position decides
  (``sources.importing.town_of_position``, applied before this check to
  single edits and import rows alike), never merely the one a body declares.
  Town boundaries and the district outline are the office's.

People sign in to the office console instead (``services.accounts``); a
session acts as a ``Principal`` too, under the same roles and towns.

Tokens are made by ``geo-service tokens add`` and shown once. The store keeps
only their SHA-256: a token is 256 random bits, so nobody can guess one from
its hash (a slow password hash buys nothing for such a secret). Every request
looks its token up afresh, so one added or revoked from the CLI counts at
once in a running service, in every worker.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from geo_service.errors import Forbidden, InvalidParameter, Unauthorized
from geo_service.sources.catalog import Layer, ValidFeature
from geo_service.store import Store, StoredFeature

__all__ = [
    "Principal",
    "Role",
    "authenticate",
    "authorize_change",
    "check_grant",
    "hash_token",
    "issue_token",
]

TOKEN_PREFIX = "gs_"
_NAME = re.compile(r"[\w.@-]{1,64}")


class Role(StrEnum):
    admin = "admin"
    editor = "editor"


#: How the audit trail names a person signed in to the office console,
#: "user:NAME", apart from a token's bare name and the CLI's "cli:USER"
#: (token and user names cannot hold a colon).
PERSON_PREFIX = "user:"


@dataclass(frozen=True)
class Principal:
    """Who makes a change: the bearer of a valid token, or a person signed in
    to the office console (``person``); its name, role and, for an editor,
    towns. ``actor`` is what the audit trail records."""

    name: str
    role: Role
    towns: frozenset[str]
    person: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin

    @property
    def actor(self) -> str:
        return PERSON_PREFIX + self.name if self.person else self.name

    def as_inputs(self) -> dict[str, Any]:
        """Who asked, as a job records it (JSON), for the job to act as them."""
        return {
            "name": self.name,
            "role": self.role.value,
            "towns": sorted(self.towns),
            "person": self.person,
        }

    @classmethod
    def from_inputs(cls, data: dict[str, Any]) -> Principal:
        # Jobs recorded before people could sign in carry no "person".
        return cls(
            data["name"], Role(data["role"]), frozenset(data["towns"]), bool(data.get("person"))
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    store: Store, name: str, role: str, towns: Iterable[str], known_towns: Iterable[str]
) -> str:
    """Create a token, keep its hash, and return the token (the only time it exists)."""
    role, towns = check_grant(name, role, towns, known_towns)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(name, role.value, towns, hash_token(token))
    return token


def check_grant(
    name: str, role: str, towns: Iterable[str], known_towns: Iterable[str]
) -> tuple[Role, list[str]]:
    """The role and sorted towns of a new token or user, or ``InvalidParameter``."""
    if not _NAME.fullmatch(name):
        raise InvalidParameter("name", "1-64 letters, digits, '.', '_', '-' or '@'")
    try:
        role = Role(role)
    except ValueError:
        raise InvalidParameter("role", f"{role!r} is not a role; use admin or editor") from None
    towns = sorted(set(towns))
    if role == Role.admin and towns:
        raise InvalidParameter("towns", "an admin covers every town; give no --towns")
    if role == Role.editor:
        if not towns:
            raise InvalidParameter("towns", "an editor needs the town codes they may edit")
        unknown = sorted(set(towns) - set(known_towns))
        if unknown:
            raise InvalidParameter("towns", f"unknown town code(s): {', '.join(unknown)}")
    return role, towns


def authenticate(store: Store, authorization: str | None) -> Principal:
    """The principal behind an ``Authorization`` header, or ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("this needs a token: send the header Authorization: Bearer TOKEN")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer TOKEN")
    record = store.token_by_hash(hash_token(token.strip()))
    if record is None:
        raise Unauthorized("the token is not valid (unknown, mistyped or revoked)")
    return Principal(record.name, Role(record.role), frozenset(record.towns))


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("only an admin token may do this")


def authorize_change(
    principal: Principal,
    layer: Layer,
    before: StoredFeature | None,
    after: ValidFeature | None,
    town_names: dict[str, str] | None = None,
) -> None:
    """Raise ``Forbidden`` unless ``principal`` may turn ``before`` into ``after``
    (None for a creation / a deletion). Called inside the write transaction,
    before any ``If-Match`` comparison (a change refused here is 403 whatever
    the ETag), so ``before`` is the feature as stored at that moment. The
    same words answer an API edit (403) and an import row (its error)."""
    if principal.is_admin:
        return
    if not layer.is_facility:
        raise Forbidden(f"only an admin may change {layer.id}")
    names = town_names or {}
    holder = "this account" if principal.person else "this token"

    def label(code: object) -> str:
        return f"{names[code]} ({code})" if code in names else str(code)

    if before is not None:
        code = before.properties.get("town_code")
        if code not in principal.towns:
            raise Forbidden(f"{before.id} is in {label(code)}, outside the towns {holder} may edit")
    if after is not None:
        code = after.properties.get("town_code")
        if code not in principal.towns:
            verb = "move a site to" if before is not None else "create a site in"
            raise Forbidden(f"{holder} may not {verb} {label(code)}, outside the towns it may edit")
