"""Consent records (cityos/core/consent.py): parsing, validity windows, withdrawal, the
index that answers "may this service see this of this resident now?"."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cityos.core.consent import (
    Consent,
    ConsentIndex,
    audit_entry,
    covers,
    from_doc,
    is_valid,
    may_manage,
    parse_consent,
    render,
    to_doc,
    withdraw,
)
from cityos.core.principal import ANONYMOUS, OPEN, Principal
from cityos.errors import BadRequestData

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
NOW = "2026-04-01T09:00:00.000000Z"
HANAKO = "urn:ngsi-ld:Person:hanako"
TAG = DEFAULT + "ChildTag"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def expand(term: str) -> str:
    return term if ":" in term else DEFAULT + term


def compact(iri: str) -> str:
    return iri.removeprefix(DEFAULT)


BODY: dict[str, Any] = {
    "subject": HANAKO,
    "recipient": "mimamori",
    "purpose": "見守り: tell the guardian where the child's tag is",
    "categories": ["ChildTag", LOCATION],
}


def parse(body: dict[str, Any], now: str = NOW) -> Consent:
    return parse_consent(body, tenant="takamatsu", by="guardian-1", now=now, expand=expand)


def consent(**window: str | None) -> Consent:
    body = {**BODY, **{k: v for k, v in window.items() if v is not None}}
    return parse(body, now="2020-01-01T00:00:00Z")


# -- parsing ---------------------------------------------------------------------------------------


def test_parse_a_consent() -> None:
    c = parse({**BODY, "@context": "https://example.org/ctx.jsonld"})
    assert c.id.startswith("urn:ngsi-ld:Consent:") and len(c.id) == len("urn:ngsi-ld:Consent:") + 36
    assert (c.tenant, c.subject, c.recipient) == ("takamatsu", HANAKO, "mimamori")
    assert c.categories == (TAG, LOCATION)
    assert c.valid_from == NOW and c.valid_until is None
    assert c.status == "granted" and c.granted_by == "guardian-1"
    assert c.history == ({"at": NOW, "status": "granted", "by": "guardian-1"},)


def test_each_consent_has_its_own_id() -> None:
    assert parse(BODY).id != parse(BODY).id


def test_times_are_normalized_to_utc() -> None:
    c = parse({**BODY, "validFrom": "2026-04-01T18:00:00+09:00", "validUntil": "2027-01-01T00:00Z"})
    assert c.valid_from == NOW
    assert c.valid_until == "2027-01-01T00:00:00.000000Z"
    c = parse(BODY, now="2026-04-01T09:00:00Z")  # now in another ISO form
    assert c.valid_from == NOW


def test_duplicate_categories_are_kept_once() -> None:
    assert parse({**BODY, "categories": ["ChildTag", TAG]}).categories == (TAG,)


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in BODY.items() if k != name}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([BODY], "must be a JSON object"),
        ({**BODY, "validUtil": "2027-01-01T00:00:00Z"}, "no member 'validUtil'"),
        ({**BODY, "id": "urn:ngsi-ld:Consent:x"}, "no member 'id'"),
        (_without("subject"), "needs the member 'subject'"),
        (_without("recipient"), "needs the member 'recipient'"),
        (_without("purpose"), "needs the member 'purpose'"),
        (_without("categories"), "needs the member 'categories'"),
        ({**BODY, "subject": "hanako"}, "subject 'hanako' is not a valid URI"),
        ({**BODY, "subject": 7}, "subject 7 is not a valid URI"),
        ({**BODY, "recipient": ""}, "recipient must be a non-empty string"),
        ({**BODY, "recipient": ["a"]}, "recipient must be a non-empty string"),
        ({**BODY, "recipient": " a"}, "without surrounding spaces"),
        ({**BODY, "recipient": "a" * 257}, "at most 256"),
        ({**BODY, "purpose": ""}, "purpose must be a non-empty string"),
        ({**BODY, "purpose": 3}, "purpose must be a non-empty string"),
        ({**BODY, "purpose": "x" * 501}, "at most 500 characters, not 501"),
        ({**BODY, "categories": []}, "at least one"),
        ({**BODY, "categories": "ChildTag"}, "must be a list"),
        ({**BODY, "categories": ["ChildTag", 3]}, "Category 3 is not"),
        ({**BODY, "categories": [""]}, "Category '' is not"),
        ({**BODY, "categories": ["@type"]}, "Category '@type' is not"),
        ({**BODY, "categories": ["c"] * 101}, "at most 100"),
        ({**BODY, "validFrom": "yesterday"}, "validFrom 'yesterday' is not an ISO 8601"),
        ({**BODY, "validFrom": "2026-13-01T00:00:00Z"}, "is not an ISO 8601"),
        ({**BODY, "validFrom": 1700000000}, "validFrom must be an ISO 8601 DateTime string"),
        ({**BODY, "validUntil": "2026-04-01"}, "validUntil '2026-04-01' is not an ISO 8601"),
        (
            {**BODY, "validFrom": "2027-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z"},
            "must be later than validFrom",
        ),
        (
            {**BODY, "validFrom": "2020-01-01T00:00:00Z", "validUntil": "2021-01-01T00:00:00Z"},
            "is not in the future",
        ),
    ],
)
def test_bad_bodies_are_refused_precisely(body: Any, detail: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        parse(body)
    assert detail in caught.value.detail


def test_null_validity_members_mean_absent() -> None:
    c = parse({**BODY, "validFrom": None, "validUntil": None})
    assert (c.valid_from, c.valid_until) == (NOW, None)


# -- validity and withdrawal -----------------------------------------------------------------------

WINDOW = {"validFrom": "2026-04-01T00:00:00Z", "validUntil": "2026-05-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        ("2026-03-31T23:59:59.999999Z", False),
        ("2026-04-01T00:00:00.000000Z", True),  # validFrom is included
        ("2026-04-01T00:00:00Z", True),
        ("2026-04-01T09:00:00+09:00", True),
        ("2026-04-30T23:59:59.999999Z", True),
        ("2026-05-01T00:00:00.000000Z", False),  # validUntil is excluded
        ("2026-05-01T08:59:59+09:00", True),
        ("2030-01-01T00:00:00Z", False),
    ],
)
def test_validity_window(now: str, valid: bool) -> None:
    assert is_valid(consent(**WINDOW), now) is valid


def test_open_ended_consent_stays_valid() -> None:
    assert is_valid(consent(validFrom="2026-04-01T00:00:00Z"), "2999-01-01T00:00:00Z")


def test_covers_needs_recipient_category_and_validity() -> None:
    c = consent(**WINDOW)
    now = "2026-04-10T00:00:00Z"
    assert covers(c, recipient="mimamori", category=TAG, now=now)
    assert covers(c, recipient="mimamori", category=LOCATION, now=now)
    assert not covers(c, recipient="other", category=TAG, now=now)
    assert not covers(c, recipient="mimamori", category=DEFAULT + "Sensor", now=now)
    assert not covers(c, recipient="mimamori", category=TAG, now="2026-06-01T00:00:00Z")
    assert not covers(withdraw(c, by="x", now=now), recipient="mimamori", category=TAG, now=now)


def test_withdraw_appends_history_once() -> None:
    c = consent(**WINDOW)
    gone = withdraw(c, by="guardian-1", now="2026-04-10T12:00:00+09:00")
    assert gone.status == "withdrawn" and c.status == "granted"
    assert gone.history[1:] == (
        {"at": "2026-04-10T03:00:00.000000Z", "status": "withdrawn", "by": "guardian-1"},
    )
    assert gone.history[0] == c.history[0]
    assert withdraw(gone, by="admin", now="2026-04-11T00:00:00Z") is gone
    assert not is_valid(gone, "2026-04-10T00:00:00Z")


# -- documents -------------------------------------------------------------------------------------


def test_doc_round_trip_through_json() -> None:
    c = withdraw(consent(**WINDOW), by="guardian-1", now="2026-04-10T00:00:00Z")
    doc = to_doc(c)
    assert set(doc) == {
        "id", "tenant", "subject", "recipient", "purpose", "categories", "validFrom",
        "validUntil", "status", "grantedBy", "history",
    }  # fmt: skip
    assert from_doc(orjson.loads(orjson.dumps(doc))) == c
    open_ended = parse(BODY)
    assert "validUntil" not in to_doc(open_ended)
    assert from_doc(to_doc(open_ended)) == open_ended


def test_render_compacts_categories_and_hides_the_tenant() -> None:
    c = parse({**BODY, "validUntil": "2027-01-01T00:00:00Z"})
    body = render(c, compact)
    assert body["categories"] == ["ChildTag", LOCATION]
    assert "tenant" not in body
    assert body["validUntil"] == "2027-01-01T00:00:00.000000Z"
    assert body["grantedBy"] == "guardian-1" and body["status"] == "granted"
    assert body["history"] == [{"at": NOW, "status": "granted", "by": "guardian-1"}]


# -- who may manage --------------------------------------------------------------------------------


def _who(**kw: Any) -> Principal:
    return Principal(subject="s", kind="token", **kw)


@pytest.mark.parametrize(
    ("principal", "tenant", "allowed"),
    [
        (_who(persons=frozenset({HANAKO})), None, True),  # the resident or a guardian
        (_who(persons=frozenset({HANAKO})), "takamatsu", True),
        (_who(persons=frozenset({"urn:ngsi-ld:Person:taro"})), "takamatsu", False),
        (_who(roles=frozenset({"admin"}), tenants=frozenset({"takamatsu"})), "takamatsu", True),
        (_who(roles=frozenset({"admin"}), tenants=frozenset({"takamatsu"})), None, False),
        (_who(roles=frozenset({"admin"}), tenants=frozenset({"kagawa"})), "takamatsu", False),
        (_who(roles=frozenset({"admin"}), tenants=frozenset({"*"})), "takamatsu", True),
        (_who(roles=frozenset({"viewer"}), tenants=frozenset({"takamatsu"})), "takamatsu", False),
        (ANONYMOUS, "takamatsu", False),
        (OPEN, "takamatsu", True),
    ],
)
def test_may_manage(principal: Principal, tenant: str | None, allowed: bool) -> None:
    assert may_manage(principal, HANAKO, tenant) is allowed


def test_audit_entry_holds_terms_not_values() -> None:
    c = parse({**BODY, "validUntil": "2027-01-01T00:00:00Z"})
    entry = audit_entry("consent.grant", c, "guardian-1", NOW)
    assert (entry.action, entry.actor, entry.at) == ("consent.grant", "guardian-1", NOW)
    assert (entry.tenant, entry.target, entry.person) == ("takamatsu", c.id, HANAKO)
    assert entry.detail == {
        "recipient": "mimamori",
        "purpose": BODY["purpose"],
        "categories": [TAG, LOCATION],
        "validUntil": "2027-01-01T00:00:00.000000Z",
    }


# -- the index -------------------------------------------------------------------------------------

TARO = "urn:ngsi-ld:Person:taro"
JIRO = "urn:ngsi-ld:Person:jiro"


def _index() -> ConsentIndex:
    def make(subject: str, recipient: str, **window: str) -> Consent:
        return parse(
            {
                **BODY,
                "subject": subject,
                "recipient": recipient,
                "categories": ["ChildTag"],
                **window,
            },
            now="2020-01-01T00:00:00Z",
        )

    gone = withdraw(make(JIRO, "mimamori"), by="x", now="2026-01-01T00:00:00Z")
    return ConsentIndex(
        [
            make(HANAKO, "mimamori", validFrom="2026-04-01T00:00:00Z"),
            make(
                TARO,
                "mimamori",
                validFrom="2026-03-01T00:00:00Z",
                validUntil="2026-04-15T00:00:00Z",
            ),
            # a second, later window of the same subject and recipient
            make(
                TARO,
                "mimamori",
                validFrom="2026-06-01T00:00:00Z",
                validUntil="2026-07-01T00:00:00Z",
            ),
            make(HANAKO, "school", validFrom="2026-01-01T00:00:00Z"),
            gone,
        ]
    )


@pytest.mark.parametrize(
    ("now", "subjects"),
    [
        ("2026-02-01T00:00:00Z", set()),
        ("2026-03-01T00:00:00Z", {TARO}),
        ("2026-03-31T23:59:59.999999Z", {TARO}),
        ("2026-04-01T00:00:00Z", {TARO, HANAKO}),
        ("2026-04-14T23:59:59.999999Z", {TARO, HANAKO}),
        ("2026-04-15T00:00:00Z", {HANAKO}),
        ("2026-06-01T09:00:00+09:00", {TARO, HANAKO}),
        ("2026-07-01T00:00:00Z", {HANAKO}),
    ],
)
def test_index_subjects_and_allowed_over_time(now: str, subjects: set[str]) -> None:
    index = _index()
    assert index.subjects_for("mimamori", TAG, now) == subjects
    for person in (HANAKO, TARO, JIRO):
        assert index.allowed(person, "mimamori", TAG, now) is (person in subjects)


def test_index_separates_recipients_and_categories() -> None:
    index = _index()
    now = "2026-02-01T00:00:00Z"
    assert index.subjects_for("school", TAG, now) == {HANAKO}
    assert index.allowed(HANAKO, "school", TAG, now)
    assert not index.allowed(HANAKO, "mimamori", TAG, now)
    assert index.subjects_for("school", LOCATION, now) == frozenset()
    assert index.subjects_for("unknown", TAG, now) == frozenset()
    assert not index.allowed(HANAKO, "school", LOCATION, now)


def test_withdrawn_consents_are_not_indexed() -> None:
    index = _index()
    assert not index.allowed(JIRO, "mimamori", TAG, "2025-01-01T00:00:00Z")
    assert ConsentIndex([]).subjects_for("mimamori", TAG, NOW) == frozenset()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2025-01-01T00:00:00Z", "2026-01-01T00:00:00.000000Z"),
        ("2026-01-01T00:00:00Z", "2026-03-01T00:00:00.000000Z"),  # strictly after now
        ("2026-03-15T00:00:00Z", "2026-04-01T00:00:00.000000Z"),
        ("2026-04-01T00:00:00Z", "2026-04-15T00:00:00.000000Z"),
        ("2026-04-20T00:00:00Z", "2026-06-01T00:00:00.000000Z"),
        ("2026-06-15T00:00:00Z", "2026-07-01T00:00:00.000000Z"),
        ("2026-07-01T00:00:00Z", None),
    ],
)
def test_next_change(now: str, expected: str | None) -> None:
    assert _index().next_change(now) == expected


def test_next_change_bounds_the_cached_answer() -> None:
    """Between now and next_change(now) no answer of the index changes."""
    index = _index()
    now = "2026-04-02T00:00:00.000000Z"
    until = index.next_change(now)
    assert until == "2026-04-15T00:00:00.000000Z"
    just_before = "2026-04-14T23:59:59.999999Z"
    assert index.subjects_for("mimamori", TAG, just_before) == index.subjects_for(
        "mimamori", TAG, now
    )
    assert index.subjects_for("mimamori", TAG, until) != index.subjects_for("mimamori", TAG, now)
