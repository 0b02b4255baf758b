"""/v2/subscriptions: CRUD, v2 notifications from v2 and NGSI-LD writes, formats,
httpCustom, service paths and counters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cityos.config import Settings

from .conftest import Receiver
from .helpers import LD, client_for, create, error, room


def subscription(url: str, **notification: Any) -> dict[str, Any]:
    return {
        "description": "warm rooms",
        "subject": {
            "entities": [{"idPattern": ".*", "type": "Room"}],
            "condition": {"attrs": ["temperature"], "expression": {"q": "temperature>20"}},
        },
        "notification": {"http": {"url": url}, **notification},
        "throttling": 0,
    }


async def subscribe(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> str:
    response = await client.post("/v2/subscriptions", json=body, **kwargs)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/v2/subscriptions/")
    return location.rsplit("/", 1)[1]


async def test_crud(client: httpx.AsyncClient, receiver: Receiver) -> None:
    sub_id = await subscribe(client, subscription(receiver.url, attrs=["temperature"]))
    listed = await client.get("/v2/subscriptions", params={"options": "count"})
    assert listed.headers["fiware-total-count"] == "1"
    shown = (await client.get(f"/v2/subscriptions/{sub_id}")).json()
    assert shown["id"] == sub_id and shown["status"] == "active"
    assert shown["subject"] == subscription(receiver.url)["subject"]
    assert shown["notification"]["attrs"] == ["temperature"]
    assert shown["notification"]["attrsFormat"] == "normalized"
    patch = {"status": "inactive", "description": "paused"}
    assert (await client.patch(f"/v2/subscriptions/{sub_id}", json=patch)).status_code == 204
    shown = (await client.get(f"/v2/subscriptions/{sub_id}")).json()
    assert (shown["status"], shown["description"]) == ("inactive", "paused")
    assert (await client.delete(f"/v2/subscriptions/{sub_id}")).status_code == 204
    error(await client.get(f"/v2/subscriptions/{sub_id}"), 404, "NotFound")
    error(await client.delete(f"/v2/subscriptions/{sub_id}"), 404, "NotFound")


async def test_notifications_from_v2_and_ngsi_ld_writes(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub_id = await subscribe(client, subscription(receiver.url, attrs=["temperature"]))
    await create(
        client,
        room("Room1", 25, name={"value": "kitchen"}),
        headers={"fiware-servicepath": "/house"},
    )
    await create(client, room("Room2", 10))  # q does not match: no notification
    await client.patch(
        f"{LD}/entities/urn:ngsi-v2:Room1/attrs",
        json={"temperature": {"type": "Property", "value": 30}},
    )
    received = await receiver.wait_for(2)
    assert received[0] == {
        "subscriptionId": sub_id,
        "data": [
            {
                "id": "Room1",
                "type": "Room",
                "temperature": {"type": "Number", "value": 25, "metadata": {}},
            }
        ],
    }
    assert received[1]["data"][0]["temperature"]["value"] == 30
    assert receiver.headers[0]["Ngsiv2-AttrsFormat"] == "normalized"
    assert receiver.headers[0]["Fiware-ServicePath"] == "/house"
    shown = (await client.get(f"/v2/subscriptions/{sub_id}")).json()
    assert shown["notification"]["timesSent"] == 2
    assert "lastNotification" in shown["notification"]


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            {"attrsFormat": "keyValues"},
            [{"id": "Room1", "type": "Room", "temperature": 25, "name": "kitchen"}],
        ),
        ({"attrsFormat": "values", "attrs": ["name", "temperature"]}, [["kitchen", 25]]),
        (
            {"attrsFormat": "keyValues", "exceptAttrs": ["name"]},
            [{"id": "Room1", "type": "Room", "temperature": 25}],
        ),
    ],
)
async def test_formats(
    client: httpx.AsyncClient, receiver: Receiver, members: dict, expected: list
) -> None:
    await subscribe(client, subscription(receiver.url, **members))
    await create(client, room("Room1", 25, name={"value": "kitchen"}))
    assert (await receiver.wait_for(1))[0]["data"] == expected


async def test_http_custom_payload_headers_and_qs(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    custom = {
        "url": receiver.url,
        "qs": {"source": "cityos"},
        "headers": {"X-Room": "${id}"},
        "payload": "${id} is ${temperature} degrees",
    }
    body = subscription(receiver.url)
    body["notification"] = {"httpCustom": custom}
    await subscribe(client, body, headers={"fiware-service": "kagawa"})
    await create(client, room("Room1", 25), headers={"fiware-service": "kagawa"})
    await receiver.wait_for(1)
    assert receiver.raw[0] == b"Room1 is 25 degrees"
    headers = receiver.headers[0]
    assert (headers["X-Room"], headers["Ngsiv2-AttrsFormat"], headers["Fiware-Service"]) == (
        "Room1",
        "custom",
        "kagawa",
    )
    assert receiver.queries[0] == "source=cityos"


async def test_subscriptions_follow_their_service_path(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, subscription(receiver.url), headers={"fiware-servicepath": "/north/#"})
    await create(client, room("Room1", 25), headers={"fiware-servicepath": "/south"})
    await create(client, room("Room2", 25), headers={"fiware-servicepath": "/north/a"})
    received = await receiver.wait_for(1)
    assert [n["data"][0]["id"] for n in received] == ["Room2"]
    listed = await client.get("/v2/subscriptions", headers={"fiware-servicepath": "/north/#"})
    assert len(listed.json()) == 1
    assert (
        await client.get("/v2/subscriptions", headers={"fiware-servicepath": "/south"})
    ).json() == []


async def test_ngsi_ld_sees_v2_subscriptions_as_its_own(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub_id = await subscribe(client, subscription(receiver.url))
    ld = (await client.get(f"{LD}/subscriptions/urn:ngsi-ld:Subscription:{sub_id}")).json()
    assert ld["watchedAttributes"] == ["temperature"] and ld["q"] == "temperature>20"


@pytest.mark.parametrize(
    "change",
    [
        {"subject": {"entities": [{"idPattern": ".*"}]}},
        {"subject": {"entities": [{"idPattern": ".*", "typePattern": "R.*"}]}},
        {"subject": {"entities": []}},
        {"notification": {}},
        {"notification": {"http": {"url": "ftp://x"}}},
        {"notification": {"http": {"url": "http://x/${id}"}}},
        {"notification": {"http": {"url": "http://x"}, "attrsFormat": "xml"}},
        {"notification": {"http": {"url": "http://x"}, "attrs": ["a"], "exceptAttrs": ["b"]}},
        {"notification": {"httpCustom": {"url": "http://x", "method": "PUT"}}},
        {"status": "sleeping"},
        {"expires": "tomorrow"},
        {"throttling": -1},
        {"color": "red"},
    ],
)
async def test_invalid_subscriptions_are_400(client: httpx.AsyncClient, change: dict) -> None:
    body = {**subscription("http://127.0.0.1:1/notify"), **change}
    error(await client.post("/v2/subscriptions", json=body), 400, "BadRequest")
    assert (await client.get("/v2/subscriptions")).json() == []


async def test_mqtt_endpoint(client: httpx.AsyncClient) -> None:
    body = subscription("")
    body["notification"] = {"mqtt": {"url": "mqtt://127.0.0.1:1883", "topic": "rooms"}}
    sub_id = await subscribe(client, body)
    ld = (await client.get(f"{LD}/subscriptions/urn:ngsi-ld:Subscription:{sub_id}")).json()
    assert ld["notification"]["endpoint"]["uri"] == "mqtt://127.0.0.1:1883/rooms"


async def test_a_client_can_patch_back_what_it_read(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub_id = await subscribe(client, subscription(receiver.url))
    await create(client, room("Room1", 25))
    await receiver.wait_for(1)
    shown = (await client.get(f"/v2/subscriptions/{sub_id}")).json()
    shown.pop("id")
    assert (await client.patch(f"/v2/subscriptions/{sub_id}", json=shown)).status_code == 204
    again = (await client.get(f"/v2/subscriptions/{sub_id}")).json()
    assert again["notification"]["timesSent"] == 1


async def test_v2_subscriptions_survive_a_restart(settings: Settings, receiver: Receiver) -> None:
    async with client_for(settings) as first:
        sub_id = await subscribe(first, subscription(receiver.url, attrsFormat="keyValues"))
    async with client_for(settings) as second:
        assert (await second.get(f"/v2/subscriptions/{sub_id}")).status_code == 200
        await create(second, room("Room1", 25))
        received = await receiver.wait_for(1)
    assert received[0] == {
        "subscriptionId": sub_id,
        "data": [{"id": "Room1", "type": "Room", "temperature": 25}],
    }
