"""What context source registration subscriptions notify (GS CIM 009 V1.8.1 clauses 5.11.7,
5.3.2): the real app over HTTP, notifying a real aiohttp receiver, when registrations are
created, updated and deleted, and when a subscription is created or updated."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from .conftest import Receiver, wait_until

API = "/ngsi-ld/v1"
SUBS = f"{API}/csourceSubscriptions"
REGS = f"{API}/csourceRegistrations"
SUB = "urn:ngsi-ld:Subscription:buildings"
REG = "urn:ngsi-ld:ContextSourceRegistration:town-b"
OTHER = "urn:ngsi-ld:ContextSourceRegistration:town-c"


def registration(reg_id: str = REG, *types: str, **members: Any) -> dict[str, Any]:
    information = [{"entities": [{"type": t}]} for t in types or ("Building",)]
    return {
        "id": reg_id,
        "type": "ContextSourceRegistration",
        "information": information,
        "endpoint": "http://town-b.example:8000",
        **members,
    }


async def subscribe(client: httpx.AsyncClient, receiver: Receiver, **members: Any) -> None:
    headers = members.pop("headers", None)
    body = {
        "id": SUB,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": receiver.url()}},
        **members,
    }
    response = await client.post(SUBS, json=body, headers=headers)
    assert response.status_code == 201, response.text


async def register(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> None:
    response = await client.post(REGS, json=body, **kwargs)
    assert response.status_code == 201, response.text


async def notification(receiver: Receiver, count: int = 1) -> dict[str, Any]:
    """The ``count``-th notification the receiver got."""
    await wait_until(lambda: len(receiver.requests) >= count)
    body: dict[str, Any] = orjson.loads(receiver.requests[count - 1].body)
    return body


async def nothing_more(receiver: Receiver, count: int) -> None:
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == count, [r.body for r in receiver.requests]


async def test_a_new_matching_registration_is_newly_matching(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver)
    await register(client, registration(OTHER, "Vehicle"))  # not a Building: not notified
    await register(client, registration(REG, "Building", "Bus"))
    body = await notification(receiver)
    assert body["id"].startswith("urn:ngsi-ld:ContextSourceNotification:")
    assert body["type"] == "ContextSourceNotification"
    assert body["subscriptionId"] == SUB
    assert body["triggerReason"] == "newlyMatching"
    assert body["notifiedAt"].endswith("Z")
    # only the RegistrationInfo relevant to the subscription (clause 5.11.7)
    assert body["data"] == [
        {
            "id": REG,
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Building"}]}],
            "endpoint": "http://town-b.example:8000",
            "mode": "inclusive",
            "operations": ["federationOps"],
        }
    ]
    await nothing_more(receiver, 1)


async def test_updates_and_deletion_of_a_matching_registration(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver)
    await register(client, registration())
    await notification(receiver)
    response = await client.patch(f"{REGS}/{REG}", json={"endpoint": "http://new.example"})
    assert response.status_code == 204
    updated = await notification(receiver, 2)
    assert (updated["triggerReason"], updated["data"][0]["endpoint"]) == (
        "updated",
        "http://new.example",
    )
    response = await client.patch(
        f"{REGS}/{REG}", json={"information": [{"entities": [{"type": "NewType"}]}]}
    )
    assert response.status_code == 204
    gone = await notification(receiver, 3)
    assert gone["triggerReason"] == "noLongerMatching"
    assert gone["data"][0]["information"] == [{"entities": [{"type": "NewType"}]}]
    response = await client.patch(f"{REGS}/{REG}", json={"endpoint": "http://newer.example"})
    await nothing_more(receiver, 3)  # it did not match before, nor does it now


async def test_deleting_a_matching_registration_is_no_longer_matching(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(client, registration())
    await subscribe(client, receiver)
    assert (await notification(receiver))["triggerReason"] == "newlyMatching"
    assert (await client.delete(f"{REGS}/{REG}")).status_code == 204
    body = await notification(receiver, 2)
    assert (body["triggerReason"], body["data"][0]["id"]) == ("noLongerMatching", REG)


async def test_creating_a_subscription_notifies_the_registrations_it_matches(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(client, registration(REG))
    await register(client, registration(OTHER, "Bus"))
    await subscribe(client, receiver)
    body = await notification(receiver)
    assert body["triggerReason"] == "newlyMatching"
    assert [r["id"] for r in body["data"]] == [REG]
    await nothing_more(receiver, 1)


async def test_updating_a_subscription_notifies_what_it_matches_then(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(client, registration(REG, "Vehicle"))
    await register(client, registration(OTHER, "Bus"))
    await subscribe(client, receiver)  # no Building is registered: nothing to notify
    response = await client.patch(
        f"{SUBS}/{SUB}", json={"entities": [{"type": "Vehicle"}, {"type": "Bus"}]}
    )
    assert response.status_code == 204
    body = await notification(receiver)
    assert sorted(r["id"] for r in body["data"]) == [REG, OTHER]
    await nothing_more(receiver, 1)


@pytest.mark.parametrize(
    "fragment",
    [{"isActive": False}, {"expiresAt": "2000-01-01T00:00:00Z"}],
    ids=["paused", "expired"],
)
async def test_a_subscription_that_is_not_active_notifies_nothing(
    client: httpx.AsyncClient, receiver: Receiver, fragment: dict[str, Any]
) -> None:
    if "expiresAt" in fragment:  # a subscription cannot be given a past expiresAt; it expires
        await subscribe(client, receiver, expiresAt=_soon())
        await asyncio.sleep(1.1)
    else:
        await subscribe(client, receiver)
        assert (await client.patch(f"{SUBS}/{SUB}", json=fragment)).status_code == 204
    await register(client, registration())
    await nothing_more(receiver, 0)
    status = (await client.get(f"{SUBS}/{SUB}")).json()["status"]
    assert status == ("paused" if "isActive" in fragment else "expired")


def _soon() -> str:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    ("members", "matching", "other"),
    [
        pytest.param(
            {"watchedAttributes": ["name"]},
            {"information": [{"entities": [{"type": "Building"}], "propertyNames": ["name"]}]},
            {"information": [{"entities": [{"type": "Building"}], "propertyNames": ["height"]}]},
            id="watchedAttributes",
        ),
        pytest.param(
            {"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point",
                      "coordinates": [-8.52, 41.2]}},
            {"location": {"type": "Point", "coordinates": [-8.521, 41.2]}},
            {"location": {"type": "Point", "coordinates": [2.35, 48.85]}},
            id="geoQ on location by default",
        ),
        pytest.param(
            {"temporalQ": {"timerel": "after", "timeAt": "2020-06-01T22:07:00Z"}},
            {"observationInterval": {"startAt": "2020-08-01T22:07:00Z",
                                     "endAt": "2021-08-01T21:07:00Z"}},
            {"observationInterval": {"startAt": "2019-01-01T00:00:00Z",
                                     "endAt": "2019-08-01T21:07:00Z"}},
            id="temporalQ on observationInterval",
        ),
        pytest.param(
            {"temporalQ": {"timerel": "before", "timeAt": "2020-09-01T00:00:00Z",
                           "timeproperty": "modifiedAt"}},
            {"managementInterval": {"startAt": "2020-08-01T22:07:00Z"}},
            {"managementInterval": {"startAt": "2021-08-01T22:07:00Z"}},
            id="temporalQ on managementInterval",
        ),
        pytest.param(
            {"q": "provider==%22town-b%22"},
            {"provider": "town-b"},
            {"provider": "town-c"},
            id="q on registration properties",
        ),
    ],
)  # fmt: skip
async def test_what_a_subscription_selects(
    client: httpx.AsyncClient,
    receiver: Receiver,
    members: dict[str, Any],
    matching: dict[str, Any],
    other: dict[str, Any],
) -> None:
    await subscribe(client, receiver, **members)
    await register(client, {**registration(OTHER), **other})
    await register(client, {**registration(REG), **matching})
    body = await notification(receiver)
    assert [r["id"] for r in body["data"]] == [REG]
    await nothing_more(receiver, 1)


async def test_names_are_compacted_with_the_subscriptions_context(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    ctx = [{"Building": "https://example.org/Building"},
           "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]  # fmt: skip
    ld = {"Content-Type": "application/ld+json"}
    await subscribe(client, receiver, headers=ld, **{"@context": ctx})
    await register(client, {**registration(), "@context": ctx}, headers=ld)
    body = await notification(receiver)
    assert body["data"][0]["information"] == [{"entities": [{"type": "Building"}]}]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in receiver.requests[0].headers["Link"]


async def test_status_is_kept_as_for_entity_subscriptions(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver)
    await register(client, registration())
    await notification(receiver)
    ok = await status_when(client, lambda s: s.get("status") == "ok")
    assert ok["timesSent"] == 1
    assert ok["lastSuccess"] and ok["lastNotification"]
    assert "timesFailed" not in ok
    receiver.script("/notify", 500, 500, 500, 500, 500, 500)
    await register(client, registration(OTHER))
    failed = await status_when(client, lambda s: s.get("status") == "failed")
    assert failed["timesSent"] == 2
    assert failed["timesFailed"] >= 1 and failed["lastFailure"]


async def status_when(
    client: httpx.AsyncClient, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The subscription's notification member once ``predicate`` holds for it: a delivery's
    result is recorded after the receiver got it."""
    for _ in range(100):
        body: dict[str, Any] = (await client.get(f"{SUBS}/{SUB}")).json()["notification"]
        if predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the status never came: {body}")


async def test_time_interval_notifies_periodically(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await register(client, registration())
    await subscribe(client, receiver, timeInterval=0.3)
    first, second = await notification(receiver), await notification(receiver, 2)
    assert [r["id"] for r in first["data"]] == [r["id"] for r in second["data"]] == [REG]
    # a change is not notified on its own: the next period shows it
    await client.patch(f"{REGS}/{REG}", json={"endpoint": "http://new.example"})
    count = len(receiver.requests)
    later = await notification(receiver, count + 1)
    assert later["data"][0]["endpoint"] == "http://new.example"


async def test_notifications_stay_in_their_tenant(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    town = {"NGSILD-Tenant": "town-a"}
    await subscribe(client, receiver, headers=town)
    await register(client, registration(OTHER))  # the default tenant
    await register(client, registration(), headers=town)
    body = await notification(receiver)
    assert [r["id"] for r in body["data"]] == [REG]
    assert receiver.requests[0].headers["NGSILD-Tenant"] == "town-a"
    await nothing_more(receiver, 1)


async def test_deleting_a_subscription_stops_its_notifications(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, receiver)
    assert (await client.delete(f"{SUBS}/{SUB}")).status_code == 204
    await register(client, registration())
    await nothing_more(receiver, 0)
