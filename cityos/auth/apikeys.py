"""API keys for services and devices: ``cok_<key id>_<secret>``.

- The *key id* (12 lowercase hex characters) names the key: it is how the key is found,
  logged and revoked, and it is not secret.
- The *secret* (32 random bytes, URL-safe base64) is shown once, when the key is made, and
  never stored: the store keeps only ``SHA-256(pepper + secret)``. A fast hash is right
  here, unlike for passwords: 256 random bits cannot be guessed by trying, however fast
  each try is, so a slow KDF would only slow down every request. The optional *pepper* is
  a server secret outside the database, so a stolen copy of the database alone cannot
  even confirm a guess.

A key is bound to one tenant, a client name (it becomes :attr:`Principal.client`, the
recipient consents are given to) and roles. It stops working when it expires or from the
moment it is revoked; rotating a key makes a new one with the same binding and revokes the
old one at the end of a grace period, so a device can switch over without downtime.

Times are ISO 8601 strings in canonical UTC form (``2026-01-01T00:00:00.000000Z``, as
:func:`~cityos.core.model.now_iso`), compared as strings.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cityos.core.principal import Principal
from cityos.errors import BadRequestData

__all__ = [
    "PREFIX",
    "ApiKey",
    "check",
    "check_alive",
    "from_doc",
    "hash_secret",
    "new_key",
    "parse_presented",
    "principal",
    "render",
    "revoke",
    "rotate",
    "to_doc",
]

PREFIX = "cok_"
ISSUER = "cityos"
_ID_LENGTH = 12
_SECRET_BYTES = 32
_SECRET_LENGTH = 43  # URL-safe base64 of 32 bytes, without padding
_ID = re.compile(r"[0-9a-f]{12}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
_ROLE = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._:@/+-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A key as stored: everything but its secret."""

    id: str
    tenant: str
    name: str
    roles: frozenset[str]
    created_at: str
    hash: str
    expires_at: str | None = None
    revoked_at: str | None = None
    rotated_from: str | None = None


# -- times ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _normalize(text: str) -> str:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:  # as in core.temporal.parse_time: a missing zone means UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _instant(text: str) -> str:
    canonical = len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z"
    return text if canonical else _normalize(text)


def _parse_time(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) < 16 or value[10] != "T":
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime, not {value!r}")
    try:
        return _instant(value)
    except (ValueError, OverflowError):
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime, not {value!r}") from None


def _future(value: object, what: str, now: str) -> str:
    moment = _parse_time(value, what)
    if moment <= now:
        raise BadRequestData(f"{what} {value} is not in the future")
    return moment


# -- making keys ---------------------------------------------------------------------------------


def hash_secret(secret: str, pepper: bytes = b"") -> str:
    return hashlib.sha256(pepper + secret.encode()).hexdigest()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequestData(
            f"The key's name {name!r} must be 1 to 128 letters, digits or ._:@/+- "
            "(it names the client that uses the key)"
        )
    return name


def _check_roles(roles: object) -> frozenset[str]:
    if isinstance(roles, str | bytes) or not isinstance(roles, Iterable):
        raise BadRequestData(f"roles must be a list of role names, not {roles!r}")
    checked = frozenset(roles)
    for role in checked:
        if not isinstance(role, str) or not _ROLE.fullmatch(role):
            raise BadRequestData(f"Role {role!r} is not a valid role name")
    return checked


def _make(
    fields: dict[str, Any], now: str, pepper: bytes, rotated_from: str | None = None
) -> tuple[str, ApiKey]:
    key_id = secrets.token_hex(_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    key = ApiKey(
        id=key_id,
        created_at=now,
        hash=hash_secret(secret, pepper),
        rotated_from=rotated_from,
        **fields,
    )
    return f"{PREFIX}{key_id}_{secret}", key


def new_key(
    *,
    tenant: str,
    name: object,
    roles: object,
    expires_at: object,
    now: str,
    pepper: bytes = b"",
) -> tuple[str, ApiKey]:
    """A new key and its plain text, which is returned this once and never stored.
    Raises BadRequestData for a bad name, roles or expiry (one that is not in the future)."""
    if not isinstance(tenant, str):
        raise BadRequestData(f"tenant must be a string, not {tenant!r}")
    now = _instant(now)
    fields = {
        "tenant": tenant,
        "name": _check_name(name),
        "roles": _check_roles(roles),
        "expires_at": None if expires_at is None else _future(expires_at, "expiresAt", now),
    }
    return _make(fields, now, pepper)


def rotate(
    old: ApiKey, *, now: str, grace_until: str | None = None, pepper: bytes = b""
) -> tuple[str, ApiKey, ApiKey]:
    """``(plain text, new key, old key)``: a new key with the old one's tenant, name, roles
    and expiry (rotating never extends a key's life), and the old key revoked at
    ``grace_until`` (so devices can switch over) or at once."""
    now = _instant(now)
    if not check_alive(old, now):
        raise BadRequestData(f"API key {old.id} is revoked or expired and cannot be rotated")
    until = now if grace_until is None else _future(grace_until, "graceUntil", now)
    fields = {
        "tenant": old.tenant,
        "name": old.name,
        "roles": old.roles,
        "expires_at": old.expires_at,
    }
    plain, new = _make(fields, now, pepper, rotated_from=old.id)
    return plain, new, revoke(old, until)


def revoke(key: ApiKey, now: str) -> ApiKey:
    """The key revoked from ``now`` on; an earlier revocation stays (revoking is idempotent
    and never brings a key back)."""
    now = _instant(now)
    if key.revoked_at is not None and key.revoked_at <= now:
        return key
    return replace(key, revoked_at=now)


# -- presenting keys -----------------------------------------------------------------------------


def parse_presented(text: str) -> tuple[str, str]:
    """``(key id, secret)`` of a presented key; ValueError when it is not ``cok_<id>_<secret>``
    (the secret may itself contain ``_``, so the split is by position)."""
    if not text.startswith(PREFIX) or len(text) != len(PREFIX) + _ID_LENGTH + 1 + _SECRET_LENGTH:
        raise ValueError("not a City OS API key")
    key_id, sep, secret = text[4:16], text[16], text[17:]
    if sep != "_" or not _ID.fullmatch(key_id) or not _SECRET.fullmatch(secret):
        raise ValueError("not a City OS API key")
    return key_id, secret


def check_alive(key: ApiKey, now: str) -> bool:
    """Neither expired nor revoked at ``now``."""
    now = _instant(now)
    return (key.revoked_at is None or now < key.revoked_at) and (
        key.expires_at is None or now < key.expires_at
    )


def check(key: ApiKey, secret: str, now: str, pepper: bytes = b"") -> bool:
    """Whether ``secret`` is this key's and the key works at ``now``. The hash is compared
    in constant time, and always computed, so timing tells nothing about the secret."""
    matches = hmac.compare_digest(hash_secret(secret, pepper), key.hash)
    return matches and check_alive(key, now)


def principal(key: ApiKey) -> Principal:
    return Principal(
        subject=f"apikey:{key.id}",
        kind="apikey",
        tenants=frozenset({key.tenant}),
        roles=key.roles,
        client=key.name,
        issuer=ISSUER,
    )


# -- documents -----------------------------------------------------------------------------------


def render(key: ApiKey) -> dict[str, Any]:
    """The key as listed to administrators: no hash, and of course no secret."""
    doc: dict[str, Any] = {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "roles": sorted(key.roles),
        "createdAt": key.created_at,
    }
    for member, value in (
        ("expiresAt", key.expires_at),
        ("revokedAt", key.revoked_at),
        ("rotatedFrom", key.rotated_from),
    ):
        if value is not None:
            doc[member] = value
    return doc


def to_doc(key: ApiKey) -> dict[str, Any]:
    """The stored JSON form: :func:`render` plus the secret's hash."""
    return {**render(key), "hash": key.hash}


def from_doc(doc: Mapping[str, Any]) -> ApiKey:
    return ApiKey(
        id=doc["id"],
        tenant=doc["tenant"],
        name=doc["name"],
        roles=frozenset(doc.get("roles", ())),
        created_at=doc["createdAt"],
        hash=doc["hash"],
        expires_at=doc.get("expiresAt"),
        revoked_at=doc.get("revokedAt"),
        rotated_from=doc.get("rotatedFrom"),
    )
