"""Subscriptions over HTTP with a real local receiver (an aiohttp server on loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from cityos.config import Settings

from .helpers import client_for, entity, prop

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class Receiver:
    """A real HTTP endpoint that records the notifications it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(orjson.loads(await request.read()))
        self.headers.append(dict(request.headers))
        self.arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/notify", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/notify"
    yield rec
    await runner.cleanup()


def subscription(uri: str, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "urn:ngsi-ld:Subscription:river",
        "type": "Subscription",
        "entities": [{"type": "WaterLevel"}],
        "notification": {"endpoint": {"uri": uri}},
    }
    notification = members.pop("notification", {})
    body.update(members)
    body["notification"].update(notification)
    return body


async def subscribe(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post(f"{API}/subscriptions", json=body)
    assert response.status_code == 201, response.text


async def test_crud(client: httpx.AsyncClient) -> None:
    await subscribe(client, subscription("http://127.0.0.1:9/notify"))
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    assert sub["status"] == "active"
    assert sub["entities"] == [{"type": "WaterLevel"}]
    listed = await client.get(f"{API}/subscriptions", params={"count": "true"})
    assert listed.headers["NGSILD-Results-Count"] == "1"
    patched = await client.patch(
        f"{API}/subscriptions/urn:ngsi-ld:Subscription:river", json={"isActive": False}
    )
    assert patched.status_code == 204
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    assert sub["status"] == "paused"
    again = await client.post(f"{API}/subscriptions", json=subscription("http://127.0.0.1:9/x"))
    assert again.status_code == 409
    assert (
        await client.delete(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")
    ).status_code == 204
    assert (
        await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")
    ).status_code == 404


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("no-type", {"type": None}),
        ("no-entities-or-watched", {"entities": None}),
        ("bad-endpoint", {"notification": {"endpoint": {"uri": "ftp://x"}}}),
        ("bad-trigger", {"notificationTrigger": ["entityExploded"]}),
        ("interval-and-watched", {"timeInterval": 10, "watchedAttributes": ["level"]}),
        ("expired", {"expiresAt": "2001-01-01T00:00:00Z"}),
        ("bad-format", {"notification": {"format": "xml"}}),
        ("bad-q", {"q": "level>>1"}),
        ("bad-throttling", {"throttling": -1}),
        ("bad-id", {"id": "not a uri"}),
        ("bad-type-selection", {"entities": [{"type": "(WaterLevel|"}]}),
        ("bad-dataset-id", {"datasetId": "urn:ngsi-ld:Dataset:a"}),
        ("bad-pick", {"notification": {"pick": "id"}}),
    ],
)
async def test_invalid_subscriptions_are_bad_request_data(
    client: httpx.AsyncClient, change: str, fragment: dict[str, Any]
) -> None:
    body = subscription("http://127.0.0.1:9/notify")
    for key, value in fragment.items():
        if value is None:
            body.pop(key)
        elif isinstance(value, dict) and key == "notification":
            body["notification"] = {**body["notification"], **value}
        else:
            body[key] = value
    response = await client.post(f"{API}/subscriptions", json=body)
    assert response.status_code == 400, (change, response.text)
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert (await client.get(f"{API}/subscriptions")).json() == []


async def test_notifications_follow_changes(client: httpx.AsyncClient, receiver: Receiver) -> None:
    triggers = ["entityCreated", "attributeUpdated", "entityDeleted"]
    await subscribe(client, subscription(receiver.url, notificationTrigger=triggers, q="level>2"))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(3.1))
    )
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:2", "WaterLevel", level=prop(0.5))
    )
    await client.patch(f"{API}/entities/urn:ngsi-ld:WaterLevel:1/attrs", json={"level": prop(3.6)})
    await client.delete(f"{API}/entities/urn:ngsi-ld:WaterLevel:1")
    received = await receiver.wait_for(3)
    assert [n["data"][0]["id"] for n in received] == ["urn:ngsi-ld:WaterLevel:1"] * 3
    assert received[0]["data"][0]["level"]["value"] == 3.1
    assert received[1]["data"][0]["level"]["value"] == 3.6
    assert "deletedAt" in received[2]["data"][0]
    assert all(
        n["type"] == "Notification" and n["subscriptionId"] == "urn:ngsi-ld:Subscription:river"
        for n in received
    )
    assert len({n["id"] for n in received}) == 3
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in receiver.headers[0]["Link"]


async def test_key_values_show_changes_and_receiver_info(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    notification = {
        "format": "keyValues",
        "endpoint": {
            "uri": receiver.url,
            "receiverInfo": [{"key": "X-Town", "value": "Takamatsu"}],
        },
    }
    await subscribe(client, subscription(receiver.url, notification=notification))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(1.0))
    )
    received = await receiver.wait_for(1)
    assert received[0]["data"][0] == {
        "id": "urn:ngsi-ld:WaterLevel:1",
        "type": "WaterLevel",
        "level": 1.0,
    }
    assert receiver.headers[0]["X-Town"] == "Takamatsu"


async def test_previous_value_with_show_changes(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, subscription(receiver.url, notification={"showChanges": True}))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(1.0))
    )
    await client.patch(f"{API}/entities/urn:ngsi-ld:WaterLevel:1/attrs", json={"level": prop(2.0)})
    received = await receiver.wait_for(2)
    assert received[1]["data"][0]["level"]["previousValue"] == 1.0


async def test_every_fast_update_is_notified_in_order(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, subscription(receiver.url))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(0))
    )
    for n in range(1, 30):
        await client.patch(
            f"{API}/entities/urn:ngsi-ld:WaterLevel:1/attrs", json={"level": prop(n)}
        )
    received = await receiver.wait_for(30)
    assert [n["data"][0]["level"]["value"] for n in received] == list(range(30))


async def test_status_counts_deliveries(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await subscribe(client, subscription(receiver.url))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(0))
    )
    await receiver.wait_for(1)
    await asyncio.sleep(0.1)
    notification = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()[
        "notification"
    ]
    assert notification["timesSent"] == 1 and notification["status"] == "ok"
    assert "lastSuccess" in notification


async def test_pending_notification_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    settings = Settings(data_dir=tmp_path, durable=True)
    dead = "http://127.0.0.1:9/notify"  # nothing listens: the notification stays pending
    async with client_for(settings) as client:
        await subscribe(client, subscription(dead))
        await client.post(
            f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(9))
        )
        await client.patch(
            f"{API}/subscriptions/urn:ngsi-ld:Subscription:river",
            json={"notification": {"endpoint": {"uri": receiver.url}}},
        )
    async with client_for(settings) as client:
        received = await receiver.wait_for(1)
        assert received[0]["data"][0]["level"]["value"] == 9
        assert received[0]["id"].startswith("urn:ngsi-ld:Notification:")


async def test_notifications_go_on_after_the_outbox_empties(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Outbox keys must never be reused: a delivered row is deleted, and the next change's
    # notification must still be found past the dispatcher's cursor.
    await subscribe(client, subscription(receiver.url))
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(1))
    )
    await receiver.wait_for(1)
    await asyncio.sleep(0.6)  # the delivered row leaves the outbox
    await client.patch(f"{API}/entities/urn:ngsi-ld:WaterLevel:1/attrs", json={"level": prop(2)})
    received = await receiver.wait_for(2)
    assert received[1]["data"][0]["level"]["value"] == 2


async def test_list_pages_carry_prev_and_next_links(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await subscribe(
            client, {**subscription("http://127.0.0.1:9/n"), "id": f"urn:ngsi-ld:Subscription:{n}"}
        )
    response = await client.get(
        f"{API}/subscriptions",
        params={"limit": "1", "offset": "1"},
        headers={"Accept": "application/ld+json"},
    )
    assert [s["id"] for s in response.json()] == ["urn:ngsi-ld:Subscription:1"]
    links = response.headers["Link"].split(",")
    assert (
        '</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json"'
        in links
    )
    assert (
        '</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"'
        in links
    )


async def _host_context(client: httpx.AsyncClient) -> str:
    created = await client.post(
        f"{API}/jsonldContexts", json={"@context": {"level": "https://example.org/level"}}
    )
    assert created.status_code == 201, created.text
    details = await client.get(created.headers["location"], params={"details": "true"})
    url: str = details.json()["URL"]
    return url


async def test_a_one_url_context_is_the_notification_link(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # "@context": [url] is the context url itself: notifications name it in their Link
    # header, and the Subscription shows no jsonldContext the client did not set (046_10,
    # 028_06). It shows the default notificationTrigger (031_01).
    url = await _host_context(client)
    body = {**subscription(receiver.url), "@context": [url]}
    created = await client.post(
        f"{API}/subscriptions", json=body, headers={"Content-Type": "application/ld+json"}
    )
    assert created.status_code == 201, created.text
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(1))
    )
    await receiver.wait_for(1)
    assert receiver.headers[0]["Link"].startswith(f"<{url}>;")
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    assert "jsonldContext" not in sub
    assert sub["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]


async def test_a_given_jsonld_context_is_shown_and_used(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    url = await _host_context(client)
    await subscribe(client, subscription(receiver.url, jsonldContext=url))
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    assert sub["jsonldContext"] == url
    await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:WaterLevel:1", "WaterLevel", level=prop(1))
    )
    await receiver.wait_for(1)
    assert receiver.headers[0]["Link"].startswith(f"<{url}>;")


async def test_an_inline_context_becomes_the_jsonld_context(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Clause 5.13.2: an inline @context is stored as ImplicitlyCreated, and the
    # Subscription names it as its jsonldContext (suite 052_06, 053_07); a plain URL is not.
    body = {**subscription(receiver.url), "@context": [{"level": "https://example.org/level"}]}
    response = await client.post(
        f"{API}/subscriptions",
        content=json.dumps(body),
        headers={"Content-Type": "application/ld+json"},
    )
    assert response.status_code == 201, response.text
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    listed = (await client.get(f"{API}/jsonldContexts", params={"details": "true"})).json()
    implicit = [c["URL"] for c in listed if c["kind"] == "ImplicitlyCreated"]
    assert implicit == [sub["jsonldContext"]]


async def test_q_is_url_decoded(client: httpx.AsyncClient, receiver: Receiver) -> None:
    # Clients copy query strings into Subscriptions URL-encoded (046_05).
    await subscribe(client, subscription(receiver.url, q='name=="Eiffel%20Tower"'))
    for n, name in enumerate(["Eiffel%20Tower", "Eiffel Tower"]):
        await client.post(
            f"{API}/entities", json=entity(f"urn:ngsi-ld:WaterLevel:{n}", "WaterLevel", name=name)
        )
    received = await receiver.wait_for(1)
    assert received[0]["data"][0]["name"]["value"] == "Eiffel Tower"


async def test_an_entity_type_selection_selects_entities(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Clause 4.17 in EntitySelector.type (046_16).
    entities = [{"type": "(WaterLevel|Tower)"}]
    await subscribe(
        client, subscription(receiver.url, entities=entities, notificationTrigger=["entityCreated"])
    )
    for entity_type in ("Bridge", "Tower", "WaterLevel"):
        await client.post(
            f"{API}/entities", json=entity(f"urn:ngsi-ld:{entity_type}:1", entity_type)
        )
    received = await receiver.wait_for(2)
    assert [n["data"][0]["type"] for n in received] == ["Tower", "WaterLevel"]
    sub = (await client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:river")).json()
    assert sub["entities"] == [{"type": "WaterLevel,Tower"}]  # "," is OR, as "|" (clause 4.17)
