"""API keys (cityos/auth/apikeys.py): format, hashing, expiry, revocation, rotation."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson
import pytest

from cityos.auth import apikeys
from cityos.auth.apikeys import (
    ApiKey,
    check,
    check_alive,
    from_doc,
    new_key,
    parse_presented,
    principal,
    render,
    revoke,
    rotate,
    to_doc,
)
from cityos.errors import BadRequestData

NOW = "2026-04-01T00:00:00.000000Z"
LATER = "2026-04-02T00:00:00.000000Z"
PEPPER = b"server-side pepper"
FORMAT = re.compile(r"cok_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def make(**kw: Any) -> tuple[str, ApiKey]:
    args: dict[str, Any] = {
        "tenant": "takamatsu",
        "name": "river-gauge",
        "roles": frozenset({"editor"}),
        "expires_at": None,
        "now": NOW,
        **kw,
    }
    return new_key(**args)


def secret_of(plain: str) -> str:
    return parse_presented(plain)[1]


def test_new_key_format_and_binding() -> None:
    plain, key = make(expires_at="2027-01-01T09:00:00+09:00")
    assert FORMAT.fullmatch(plain)
    key_id, secret = parse_presented(plain)
    assert key.id == key_id and plain.startswith(apikeys.PREFIX)
    assert (key.tenant, key.name, key.roles) == ("takamatsu", "river-gauge", {"editor"})
    assert key.created_at == NOW and key.revoked_at is None and key.rotated_from is None
    assert key.expires_at == "2027-01-01T00:00:00.000000Z"
    assert key.hash == hashlib.sha256(secret.encode()).hexdigest()


def test_keys_are_unique() -> None:
    plains = {make()[0] for _ in range(50)}
    assert len(plains) == 50
    assert len({parse_presented(p)[0] for p in plains}) == 50


def test_the_pepper_is_part_of_the_hash() -> None:
    plain, key = make(pepper=PEPPER)
    secret = secret_of(plain)
    assert key.hash == hashlib.sha256(PEPPER + secret.encode()).hexdigest()
    assert check(key, secret, NOW, PEPPER)
    assert not check(key, secret, NOW)  # without the server's pepper the hash differs


def test_check() -> None:
    plain, key = make(expires_at=LATER)
    secret = secret_of(plain)
    assert check(key, secret, NOW)
    assert not check(key, secret[:-1] + ("A" if secret[-1] != "A" else "B"), NOW)
    assert not check(key, secret_of(make()[0]), NOW)  # another key's secret
    assert not check(key, "", NOW)
    assert not check(key, "秘密", NOW)


def test_check_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    plain, key = make()
    assert check(key, secret_of(plain), NOW)
    assert not check(revoke(key, NOW), secret_of(plain), LATER)  # hashed even when revoked
    assert len(calls) == 2 and all(b == key.hash for _, b in calls)


@pytest.mark.parametrize(
    ("now", "alive"),
    [
        ("2026-04-01T23:59:59.999999Z", True),
        ("2026-04-02T08:59:59+09:00", True),
        (LATER, False),  # expires_at itself is already expired
        ("2026-04-02T00:00:00Z", False),
        ("2027-01-01T00:00:00Z", False),
    ],
)
def test_expiry(now: str, alive: bool) -> None:
    plain, key = make(expires_at=LATER)
    assert check_alive(key, now) is alive
    assert check(key, secret_of(plain), now) is alive


def test_revocation() -> None:
    plain, key = make()
    revoked = revoke(key, "2026-04-01T12:00:00Z")
    assert revoked.revoked_at == "2026-04-01T12:00:00.000000Z" and key.revoked_at is None
    assert check(revoked, secret_of(plain), "2026-04-01T11:59:59Z")
    assert not check(revoked, secret_of(plain), "2026-04-01T12:00:00Z")
    # idempotent, and a later revocation never brings a key back or postpones its end
    assert revoke(revoked, LATER) is revoked
    assert revoke(revoked, "2026-04-01T06:00:00Z").revoked_at == "2026-04-01T06:00:00.000000Z"


def test_rotation_with_grace() -> None:
    plain, old = make(expires_at="2027-01-01T00:00:00Z", pepper=PEPPER)
    new_plain, new, revoked = rotate(old, now=NOW, grace_until=LATER, pepper=PEPPER)
    assert new_plain != plain and new.id != old.id and FORMAT.fullmatch(new_plain)
    assert (new.tenant, new.name, new.roles, new.expires_at) == (
        old.tenant,
        old.name,
        old.roles,
        old.expires_at,
    )
    assert new.rotated_from == old.id and new.created_at == NOW and new.revoked_at is None
    assert revoked.id == old.id and revoked.revoked_at == LATER
    # both keys work during the grace period, only the new one after it
    assert check(revoked, secret_of(plain), "2026-04-01T12:00:00Z", PEPPER)
    assert check(new, secret_of(new_plain), "2026-04-01T12:00:00Z", PEPPER)
    assert not check(revoked, secret_of(plain), LATER, PEPPER)
    assert check(new, secret_of(new_plain), LATER, PEPPER)


def test_rotation_without_grace_revokes_at_once() -> None:
    plain, old = make()
    _, _, revoked = rotate(old, now=NOW)
    assert revoked.revoked_at == NOW
    assert not check(revoked, secret_of(plain), NOW)


def test_a_dead_key_cannot_be_rotated() -> None:
    with pytest.raises(BadRequestData, match="API key .* is revoked or expired"):
        rotate(revoke(make()[1], NOW), now=NOW)
    with pytest.raises(BadRequestData, match="cannot be rotated"):
        rotate(make(expires_at=LATER)[1], now=LATER)


@pytest.mark.parametrize(
    ("grace", "detail"),
    [
        ("2026-03-01T00:00:00Z", "graceUntil 2026-03-01T00:00:00Z is not in the future"),
        (NOW, "is not in the future"),
        ("soon", "graceUntil must be an ISO 8601 DateTime"),
    ],
)
def test_bad_grace_periods(grace: str, detail: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        rotate(make()[1], now=NOW, grace_until=grace)
    assert detail in caught.value.detail


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"name": ""}, "The key's name '' must be"),
        ({"name": None}, "The key's name None must be"),
        ({"name": "has space"}, "must be 1 to 128"),
        ({"name": "x" * 129}, "must be 1 to 128"),
        ({"roles": "admin"}, "roles must be a list of role names"),
        ({"roles": 3}, "roles must be a list of role names"),
        ({"roles": [3]}, "Role 3 is not a valid role name"),
        ({"roles": [""]}, "Role '' is not a valid role name"),
        (
            {"expires_at": "2026-03-01T00:00:00Z"},
            "expiresAt 2026-03-01T00:00:00Z is not in the future",
        ),
        ({"expires_at": NOW}, "is not in the future"),
        ({"expires_at": "tomorrow"}, "expiresAt must be an ISO 8601 DateTime"),
        ({"expires_at": 1790000000}, "expiresAt must be an ISO 8601 DateTime"),
        ({"tenant": None}, "tenant must be a string"),
    ],
)
def test_new_key_refusals(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        make(**changes)
    assert detail in caught.value.detail


def test_roles_may_be_any_collection_of_names() -> None:
    assert make(roles=["viewer", "watch", "viewer"])[1].roles == {"viewer", "watch"}
    assert make(roles=[])[1].roles == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cok_",
        "cok_0123456789ab",
        "cok_0123456789ab_",
        "cok_0123456789AB_" + "a" * 43,  # upper-case key id
        "cok_0123456789ag_" + "a" * 43,  # not hex
        "cok_0123456789ab-" + "a" * 43,
        "cok_0123456789ab_" + "a" * 42,
        "cok_0123456789ab_" + "a" * 44,
        "cok_0123456789ab_" + "a" * 42 + "=",
        "cok_0123456789ab_" + "a" * 42 + " ",
        "xok_0123456789ab_" + "a" * 43,
        "Bearer cok_0123456789ab_" + "a" * 43,
    ],
)
def test_malformed_presented_keys(text: str) -> None:
    with pytest.raises(ValueError):
        parse_presented(text)


def test_a_secret_may_contain_underscores() -> None:
    assert parse_presented("cok_0123456789ab_" + "_-" * 21 + "a") == (
        "0123456789ab",
        "_-" * 21 + "a",
    )


def test_principal_of_a_key() -> None:
    _, key = make(roles=["viewer", "watch"])
    who = principal(key)
    assert who.subject == f"apikey:{key.id}" and who.kind == "apikey"
    assert who.tenants == {"takamatsu"} and who.roles == {"viewer", "watch"}
    assert who.client == "river-gauge" and who.issuer == "cityos"
    assert who.authenticated and who.persons == frozenset()


def test_documents_never_hold_the_secret() -> None:
    plain, key = make(expires_at=LATER)
    key = rotate(key, now=NOW)[1]
    secret = secret_of(plain)
    doc = to_doc(key)
    assert from_doc(orjson.loads(orjson.dumps(doc))) == key
    listed = render(key)
    assert "hash" not in listed and doc["hash"] == key.hash
    assert listed == {
        "id": key.id,
        "tenant": "takamatsu",
        "name": "river-gauge",
        "roles": ["editor"],
        "createdAt": NOW,
        "expiresAt": LATER,
        "rotatedFrom": key.rotated_from,
    }
    for text in (orjson.dumps(doc), orjson.dumps(listed)):
        assert secret.encode() not in text and plain.encode() not in text
    revoked = revoke(key, LATER)
    assert render(revoked)["revokedAt"] == LATER
    assert from_doc(to_doc(revoked)) == revoked
