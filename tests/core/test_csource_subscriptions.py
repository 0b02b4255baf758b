"""Which registration changes a context source registration subscription is notified of,
and why (clause 5.11.7), without a server: the subscription as the discovery queries it
stands for, matched against registrations before and after a change."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import pytest

from cityos.core.csource_subscriptions import (
    parse_csource_subscription,
    registration_queries,
    relevant_registration,
    trigger_reason,
)
from cityos.core.jsonld import compile_context
from cityos.core.registrations import Registration, parse_registration
from cityos.core.subscriptions import Subscription
from cityos.core.temporal import now_us
from cityos.errors import BadRequestData

_CORE_FILE = "contexts/uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE = compile_context(
    [], orjson.loads((resources.files("cityos") / _CORE_FILE).read_bytes())["@context"]
)
NOW = "2026-01-01T00:00:00Z"


def _sub(**members: Any) -> Subscription:
    body = {
        "id": "urn:ngsi-ld:Subscription:s",
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://receiver.example/notify"}},
        **members,
    }
    return parse_csource_subscription(body, CORE, "", None, NOW)


def _reg(*types: str, **members: Any) -> Registration:
    body = {
        "id": "urn:ngsi-ld:ContextSourceRegistration:r",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": t}]} for t in types],
        "endpoint": "http://town-b.example",
        **members,
    }
    return parse_registration(body, CORE, NOW)


BUILDING, BUS = _reg("Building"), _reg("Bus")


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        (None, BUILDING, "newlyMatching"),
        (BUS, BUILDING, "newlyMatching"),
        (BUILDING, BUILDING, "updated"),
        (BUILDING, BUS, "noLongerMatching"),
        (BUILDING, None, "noLongerMatching"),
        (None, BUS, None),
        (BUS, BUS, None),
        (BUS, None, None),
    ],
)
def test_trigger_reason(
    before: Registration | None, after: Registration | None, reason: str | None
) -> None:
    assert trigger_reason(registration_queries(_sub()), before, after, now_us()) == reason


def test_an_expired_registration_matches_nothing() -> None:
    expired = _reg("Building", expiresAt="2026-06-01T00:00:00Z")
    later = 1_900_000_000_000_000  # 2030
    assert trigger_reason(registration_queries(_sub()), None, expired, later) is None


@pytest.mark.parametrize(
    ("members", "reg", "matches"),
    [
        ({"watchedAttributes": ["name"]}, _reg("Building"), True),  # lists no Attribute
        (
            {"watchedAttributes": ["name"]},
            parse_registration(
                {
                    "type": "ContextSourceRegistration",
                    "information": [{"entities": [{"type": "Building"}], "propertyNames": ["h"]}],
                    "endpoint": "http://town-b.example",
                },
                CORE,
                NOW,
            ),
            False,
        ),
        ({"q": "owner==%22town-b%22"}, _reg("Building", owner="town-b"), True),
        ({"q": "owner==%22town-b%22"}, _reg("Building", owner="town-c"), False),
        ({"temporalQ": {"timerel": "after", "timeAt": NOW}}, _reg("Building"), False),
        ({"entities": [{"type": "Building", "id": "urn:ngsi-ld:Building:1"}]}, _reg("Building"), True),
        ({"entities": [{"type": "Bus"}, {"type": "Building"}]}, _reg("Building"), True),
    ],
)  # fmt: skip
def test_what_the_subscription_matches(
    members: dict[str, Any], reg: Registration, matches: bool
) -> None:
    reason = trigger_reason(registration_queries(_sub(**members)), None, reg, now_us())
    assert (reason == "newlyMatching") is matches


def test_only_the_relevant_information_is_notified() -> None:
    both = _reg("Building", "Bus")
    shown = relevant_registration(registration_queries(_sub()), both)
    assert shown.members["information"] == [
        {"entities": [{"type": "https://uri.etsi.org/ngsi-ld/default-context/Building"}]}
    ]
    # nothing relevant (a registration that no longer matches): shown whole
    assert relevant_registration(registration_queries(_sub()), BUS) == BUS


@pytest.mark.parametrize(
    "temporal_q",
    [{"timeAt": NOW}, {"timerel": "after"}, {"timerel": "during", "timeAt": NOW}, "after"],
)
def test_an_invalid_temporal_q_is_bad_request_data(temporal_q: Any) -> None:
    with pytest.raises(BadRequestData):
        _sub(temporalQ=temporal_q)
