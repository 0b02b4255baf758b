"""/v2/op/update, /v2/op/query and /v2/op/notify."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import create, error, get, ids, room


async def op(
    client: httpx.AsyncClient, action: str, *entities: Any, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        "/v2/op/update", json={"actionType": action, "entities": list(entities)}, **kwargs
    )


async def test_append_creates_and_updates(client: httpx.AsyncClient) -> None:
    await create(client, room("Room1"))
    response = await op(
        client, "append", {"id": "Room1", "humidity": {"value": 40}}, room("Room2", 5)
    )
    assert response.status_code == 204
    assert (await get(client, "Room1"))["humidity"]["value"] == 40
    assert (await get(client, "Room2"))["temperature"]["value"] == 5


async def test_key_values_append(client: httpx.AsyncClient) -> None:
    response = await op(
        client, "append", {"id": "S1", "type": "Sensor", "v": 1}, params={"options": "keyValues"}
    )
    assert response.status_code == 204
    assert await get(client, "S1", params={"options": "keyValues"}) == {
        "id": "S1",
        "type": "Sensor",
        "v": 1,
    }


async def test_append_strict_refuses_existing_attributes_per_entity(
    client: httpx.AsyncClient,
) -> None:
    await create(client, room("Room1"))
    response = await op(
        client, "appendStrict", {"id": "Room1", "temperature": {"value": 1}}, room("Room2")
    )
    assert "Room1" in error(response, 422, "PartialUpdate")
    assert (await get(client, "Room1"))["temperature"]["value"] == 21.5
    assert await ids(client) == ["Room1", "Room2"]


async def test_update_needs_existing_entities_and_attributes(client: httpx.AsyncClient) -> None:
    await create(client, room("Room1"))
    assert (
        await op(client, "update", {"id": "Room1", "temperature": {"value": 9}})
    ).status_code == 204
    assert (await get(client, "Room1"))["temperature"]["value"] == 9
    error(await op(client, "update", {"id": "Ghost", "temperature": {"value": 1}}), 404, "NotFound")
    error(await op(client, "update", {"id": "Room1", "ghost": {"value": 1}}), 422, "Unprocessable")


async def test_replace_and_delete(client: httpx.AsyncClient) -> None:
    await create(client, room("Room1", name={"value": "x"}))
    await create(client, room("Room2"))
    assert (
        await op(client, "replace", {"id": "Room1", "humidity": {"value": 1}})
    ).status_code == 204
    assert set(await get(client, "Room1")) == {"id", "type", "humidity"}
    assert (
        await op(client, "delete", {"id": "Room1", "humidity": {}}, {"id": "Room2", "type": "Room"})
    ).status_code == 204
    assert set(await get(client, "Room1")) == {"id", "type"}
    error(await client.get("/v2/entities/Room2"), 404, "NotFound")


@pytest.mark.parametrize(
    "body",
    [
        {"actionType": "merge", "entities": []},
        {"entities": []},
        {"actionType": "append", "entities": {}},
        {"actionType": "append", "entities": [room("Room9"), {"type": "Room"}]},
        {
            "actionType": "append",
            "entities": [room("Room9"), {"id": "Bad", "t": {"type": "geo:point", "value": "x"}}],
        },
    ],
)
async def test_a_malformed_batch_writes_nothing(client: httpx.AsyncClient, body: dict) -> None:
    error(await client.post("/v2/op/update", json=body), 400, "BadRequest")
    assert await ids(client) == []


async def test_notify_appends_the_notified_entities(client: httpx.AsyncClient) -> None:
    body = {"subscriptionId": "abc", "data": [room("Room1", 3)]}
    assert (await client.post("/v2/op/notify", json=body)).status_code == 204
    assert (await get(client, "Room1"))["temperature"]["value"] == 3
    error(await client.post("/v2/op/notify", json={"subscriptionId": "abc"}), 400, "BadRequest")


async def test_query_with_entities_attrs_and_expression(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create(
            client, room(f"Room{i}", i * 10, location={"type": "geo:point", "value": f"{i}, {i}"})
        )
    await create(client, {"id": "Car1", "type": "Car", "speed": {"value": 5}})
    body = {
        "entities": [{"idPattern": "^Room", "type": "Room"}, {"id": "Car1", "type": "Car"}],
        "attrs": ["temperature", "speed"],
        "expression": {"georel": "near;maxDistance:200000", "geometry": "point", "coords": "0,0"},
    }
    response = await client.post("/v2/op/query", json=body, params={"options": "count,keyValues"})
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"id": "Room0", "type": "Room", "temperature": 0},
        {"id": "Room1", "type": "Room", "temperature": 10},
    ]
    assert response.headers["fiware-total-count"] == "2"
    body = {
        "entities": [{"idPattern": "^Room", "type": "Room"}, {"id": "Car1", "type": "Car"}],
        "expression": {"q": "temperature>5"},
    }
    assert [e["id"] for e in (await client.post("/v2/op/query", json=body)).json()] == [
        "Room1",
        "Room2",
    ]
    mixed = {
        "entities": [
            {"id": "Room0", "type": "Room"},
            {"id": "Car1", "type": "Car"},
            {"id": "Room1", "type": "Car"},
        ]
    }
    assert [e["id"] for e in (await client.post("/v2/op/query", json=mixed)).json()] == [
        "Room0",
        "Car1",
    ]
    everything = await client.post("/v2/op/query", json={}, params={"limit": "2", "orderBy": "!id"})
    assert [e["id"] for e in everything.json()] == ["Room2", "Room1"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"entities": [{"id": "A", "color": "red"}]},
        {"attrs": "temperature"},
        {"expression": []},
        {"expression": {"q": "a>"}},
    ],
)
async def test_invalid_queries_are_400(client: httpx.AsyncClient, body: Any) -> None:
    error(await client.post("/v2/op/query", json=body), 400, "BadRequest")
