"""Access decisions of cityos.core.access: grants, classifications, personal data views."""

from __future__ import annotations

from typing import Any

import pytest

from cityos.core.access import Access, parse_policy
from cityos.core.principal import ANONYMOUS, OPEN, Principal
from cityos.errors import BadRequestData

VOCAB = "urn:v:"


def expand(term: str) -> str:
    return term if ":" in term else VOCAB + term


def policy(**body: Any) -> Any:
    return parse_policy(body, "city", expand)


def who(*roles: str, tenants: tuple[str, ...] = ("city",), **kw: Any) -> Principal:
    return Principal(
        subject="s", kind="token", tenants=frozenset(tenants), roles=frozenset(roles), **kw
    )


def entity(type_: str, entity_id: str = "urn:x:1", **attrs: Any) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": [expand(type_)],
        "attrs": {expand(k): [{"type": "Property", "value": v}] for k, v in attrs.items()},
    }


def never(subject: str, category: str) -> bool:
    return False


BODY = {
    "publishOpenData": True,
    "grants": [
        {"roles": ["viewer"], "operations": ["read"]},
        {
            "roles": ["river"],
            "operations": ["read", "write"],
            "types": ["River"],
            "attrs": ["level"],
        },
        {"roles": ["ids"], "operations": ["read"], "types": ["Bus"], "idPattern": "^urn:bus:a"},
    ],
    "classification": {
        "types": {"River": "open", "Shelter": "closed", "Child": "personal"},
        "attributes": {"phone": "closed", "address": "personal"},
    },
}


def test_open_data_is_readable_by_anyone_when_published() -> None:
    river = entity("River", level=1, phone="x")
    seen = Access.of(policy(**BODY), ANONYMOUS).view(river, never)
    assert seen is not None and set(seen["attrs"]) == {VOCAB + "level"}
    unpublished = policy(**{**BODY, "publishOpenData": False})
    assert Access.of(unpublished, ANONYMOUS).view(river, never) is None


def test_wildcard_grants_do_not_reach_closed_data() -> None:
    access = Access.of(policy(**BODY), who("viewer"))
    assert access.view(entity("Shelter"), never) is None
    seen = access.view(entity("Sensor", battery=1, phone="p"), never)
    assert seen is not None and set(seen["attrs"]) == {VOCAB + "battery"}


def test_admin_reads_closed_but_not_personal_without_consent() -> None:
    access = Access.of(policy(**BODY), who("admin"))
    assert access.view(entity("Shelter", cap=1), never) is not None
    child = entity("Child", note="n")
    assert access.view(child, never) is None


def test_attribute_grants_limit_writes_and_reads() -> None:
    access = Access.of(policy(**BODY), who("river"))
    assert access.may_write_attrs("write", [VOCAB + "River"], "urn:x:1", {VOCAB + "level"})
    assert not access.may_write_attrs("write", [VOCAB + "River"], "urn:x:1", {VOCAB + "phone"})
    assert not access.may_write_attrs("delete", [VOCAB + "River"], "urn:x:1", set())


def test_id_patterns() -> None:
    access = Access.of(policy(**BODY), who("ids"))
    assert access.view(entity("Bus", "urn:bus:a1"), never) is not None
    assert access.view(entity("Bus", "urn:bus:b1"), never) is None


def test_personal_data_needs_consent_or_is_ones_own() -> None:
    body = {**BODY, "grants": [{"roles": ["svc"], "operations": ["read"], "types": ["Child"]}]}
    child = entity("Child", note="n")
    child["attrs"][VOCAB + "dataSubject"] = [{"type": "Relationship", "value": "urn:p:1"}]
    svc = Access.of(policy(**body), who("svc", client="app"))
    assert svc.view(child, never) is None
    assert svc.view(child, lambda s, c: s == "urn:p:1" and c == VOCAB + "Child") == child
    guardian = Access.of(policy(**body), who(persons=frozenset({"urn:p:1"})))
    assert guardian.view(child, never) == child
    stranger = Access.of(policy(**body), who(persons=frozenset({"urn:p:2"})))
    assert stranger.view(child, never) is None


def test_personal_attribute_of_an_ordinary_entity() -> None:
    person = entity("Resident", address="a", ward="w")
    person["attrs"][VOCAB + "dataSubject"] = [{"type": "Relationship", "value": "urn:p:1"}]
    access = Access.of(policy(**BODY), who("viewer"))
    seen = access.view(person, never)
    assert seen is not None and VOCAB + "address" not in seen["attrs"]
    released = access.view(person, lambda s, c: c == VOCAB + "address")
    assert released is not None and VOCAB + "address" in released["attrs"]


def test_other_tenants_need_an_explicit_grant() -> None:
    body = {"grants": [{"roles": ["viewer"], "operations": ["read"], "fromTenants": ["town"]}]}
    assert Access.of(policy(**body), who("viewer", tenants=("town",))).may("read")
    assert not Access.of(policy(**body), who("viewer", tenants=("village",))).may("read")
    assert not Access.of(policy(**BODY), who("admin", tenants=("town",))).may("read")


def test_development_principal_may_do_everything() -> None:
    assert Access.of(policy(**BODY), OPEN).may("delete", [VOCAB + "Shelter"])


@pytest.mark.parametrize(
    "body",
    [
        {"grants": [{"roles": ["a"], "operations": ["fly"]}]},
        {"grants": [{"operations": ["read"]}]},
        {"grants": [{"roles": ["a"], "operations": ["read"], "idPattern": "("}]},
        {"grants": [{"roles": ["a"], "operations": ["read"], "colour": "red"}]},
        {"classification": {"types": {"A": "secret"}}},
        {"classification": {"default": "personal"}},
        {"publishOpenData": "yes"},
        {"unknown": 1},
        [],
    ],
)
def test_bad_policies_are_bad_request_data(body: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_policy(body, "city", expand)
