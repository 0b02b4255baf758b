"""/v2/entities and /v2/entities/{id}[/attrs]: create, retrieve, update, replace, delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import create, error, get, room

TYPED: dict[str, Any] = {
    "id": "Room1",
    "type": "Room",
    "temperature": {
        "type": "Float",
        "value": 21.5,
        "metadata": {
            "unitCode": {"type": "Text", "value": "CEL"},
            "accuracy": {"type": "Number", "value": 0.5},
        },
    },
    "pressure": {"type": "Integer", "value": 720},
    "name": {"type": "Text", "value": "Kitchen"},
    "on": {"type": "Boolean", "value": True},
    "address": {"type": "StructuredValue", "value": {"city": "Takamatsu", "zip": "760"}},
    "seen": {"type": "DateTime", "value": "2024-01-01T10:00:00.000Z"},
    "nothing": {"type": "None", "value": None},
    "location": {"type": "geo:point", "value": "34.34, 134.04"},
    "area": {
        "type": "geo:json",
        "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    },
    "path": {"type": "geo:line", "value": ["34.0, 134.0", "34.1, 134.1"]},
    "box": {"type": "geo:box", "value": ["34.0, 134.0", "34.1, 134.1"]},
    "zone": {"type": "geo:polygon", "value": ["0, 0", "0, 1", "1, 1", "0, 0"]},
    "refBuilding": {"type": "Relationship", "value": "Building1"},
    "refOwner": {"type": "Relationship", "value": "urn:ngsi-ld:Person:1"},
    "custom": {"type": "Temperature", "value": 3},
}


def with_empty_metadata(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in body.items():
        out[name] = value if name in ("id", "type") else {"metadata": {}, **value}
    return out


async def test_every_v2_type_round_trips_exactly(client: httpx.AsyncClient) -> None:
    response = await create(client, TYPED)
    assert response.headers["location"] == "/v2/entities/Room1?type=Room"
    assert await get(client, "Room1") == with_empty_metadata(TYPED)


async def test_type_defaults_to_thing_and_attribute_types_to_the_values(
    client: httpx.AsyncClient,
) -> None:
    await create(
        client, {"id": "E1", "a": {"value": 1}, "b": {"value": "x"}, "c": {"value": [1]}, "d": {}}
    )
    body = await get(client, "E1")
    assert body["type"] == "Thing"
    assert [body[k]["type"] for k in "abcd"] == ["Number", "Text", "StructuredValue", "None"]


async def test_key_values_create_and_read(client: httpx.AsyncClient) -> None:
    await create(
        client, {"id": "E1", "type": "T", "n": 1, "s": "x"}, params={"options": "keyValues"}
    )
    assert await get(client, "E1", params={"options": "keyValues"}) == {
        "id": "E1",
        "type": "T",
        "n": 1,
        "s": "x",
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [("values", [21.5, "Kitchen", 21.5]), ("unique", [21.5, "Kitchen"])],
)
async def test_values_and_unique_follow_attrs_order(
    client: httpx.AsyncClient, options: str, expected: list
) -> None:
    await create(client, room(name={"value": "Kitchen"}))
    params = {"options": options, "attrs": "temperature,name,temperature"}
    assert await get(client, "Room1", params=params) == expected


async def test_attrs_and_metadata_filter_and_builtins(client: httpx.AsyncClient) -> None:
    await create(client, TYPED)
    body = await get(
        client,
        "Room1",
        params={"attrs": "temperature,dateCreated", "metadata": "accuracy,dateModified"},
    )
    assert set(body) == {"id", "type", "temperature", "dateCreated"}
    assert body["dateCreated"]["type"] == "DateTime"
    assert body["dateCreated"]["value"].endswith("Z") and len(body["dateCreated"]["value"]) == 24
    assert set(body["temperature"]["metadata"]) == {"accuracy", "dateModified"}
    everything = await get(client, "Room1", params={"attrs": "*,dateModified"})
    assert "dateModified" in everything and "pressure" in everything


async def test_retrieve_with_a_wrong_type_is_404(client: httpx.AsyncClient) -> None:
    await create(client, room())
    assert (await client.get("/v2/entities/Room1", params={"type": "Room"})).status_code == 200
    error(await client.get("/v2/entities/Room1", params={"type": "Car"}), 404, "NotFound")


async def test_get_attrs_leaves_out_id_and_type(client: httpx.AsyncClient) -> None:
    await create(client, room())
    body = (await client.get("/v2/entities/Room1/attrs")).json()
    assert body == {"temperature": {"type": "Number", "value": 21.5, "metadata": {}}}


async def test_upsert_creates_then_appends(client: httpx.AsyncClient) -> None:
    first = await client.post("/v2/entities", json=room(), params={"options": "upsert"})
    assert first.status_code == 201
    second = await client.post(
        "/v2/entities",
        json={"id": "Room1", "type": "Room", "humidity": {"value": 40}},
        params={"options": "upsert"},
    )
    assert second.status_code == 204
    body = await get(client, "Room1")
    assert body["temperature"]["value"] == 21.5 and body["humidity"]["value"] == 40


async def test_post_attrs_appends_and_updates_keeping_metadata(client: httpx.AsyncClient) -> None:
    await create(client, TYPED)
    response = await client.post(
        "/v2/entities/Room1/attrs", json={"temperature": {"value": 25}, "humidity": {"value": 40}}
    )
    assert response.status_code == 204
    body = await get(client, "Room1")
    assert body["temperature"]["value"] == 25
    assert body["temperature"]["metadata"]["unitCode"]["value"] == "CEL"
    assert body["humidity"]["value"] == 40


async def test_override_metadata_replaces_them(client: httpx.AsyncClient) -> None:
    await create(client, TYPED)
    body = {"temperature": {"value": 25, "metadata": {"source": {"value": "x"}}}}
    await client.patch(
        "/v2/entities/Room1/attrs", json=body, params={"options": "overrideMetadata"}
    )
    assert list((await get(client, "Room1"))["temperature"]["metadata"]) == ["source"]


async def test_strict_append_writes_the_new_attributes_and_refuses_the_others(
    client: httpx.AsyncClient,
) -> None:
    await create(client, room())
    url, strict = "/v2/entities/Room1/attrs", {"options": "append"}
    response = await client.post(
        url, json={"temperature": {"value": 1}, "new": {"value": 2}}, params=strict
    )
    assert "temperature" in error(response, 422, "Unprocessable")
    body = await get(client, "Room1", params={"attrs": "*,dateModified"})
    assert body["temperature"]["value"] == 21.5 and body["new"]["value"] == 2
    again = await client.post(url, json={"new": {"value": 3}}, params=strict)
    error(again, 422, "Unprocessable")
    assert await get(client, "Room1", params={"attrs": "*,dateModified"}) == body  # untouched


async def test_patch_updates_the_existing_attributes_and_refuses_the_others(
    client: httpx.AsyncClient,
) -> None:
    await create(client, room())
    assert (
        await client.patch("/v2/entities/Room1/attrs", json={"temperature": {"value": 30}})
    ).status_code == 204
    response = await client.patch(
        "/v2/entities/Room1/attrs", json={"temperature": {"value": 1}, "ghost": {"value": 1}}
    )
    assert "ghost" in error(response, 422, "Unprocessable")
    body = await get(client, "Room1", params={"attrs": "*,dateModified"})
    assert body["temperature"]["value"] == 1 and "ghost" not in body
    error(
        await client.patch("/v2/entities/Room1/attrs", json={"ghost": {"value": 1}}),
        422,
        "Unprocessable",
    )
    assert await get(client, "Room1", params={"attrs": "*,dateModified"}) == body  # untouched


async def test_upsert_with_another_type_adds_it(client: httpx.AsyncClient) -> None:
    await create(client, room())
    body = {"id": "Room1", "type": "Office", "desks": {"value": 4}}
    assert (
        await client.post("/v2/entities", json=body, params={"options": "upsert"})
    ).status_code == 204
    assert (await get(client, "Room1"))["type"] == "Room"
    assert (await client.get("/v2/entities", params={"type": "Office"})).json()[0]["desks"][
        "value"
    ] == 4
    ld = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-v2:Room1")).json()
    assert ld["type"] == ["Room", "Office"]


async def test_put_attrs_replaces_all_attributes(client: httpx.AsyncClient) -> None:
    await create(client, room(name={"value": "x"}))
    assert (
        await client.put("/v2/entities/Room1/attrs", json={"humidity": {"value": 3}})
    ).status_code == 204
    body = await get(client, "Room1")
    assert set(body) == {"id", "type", "humidity"}


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"])
async def test_attrs_writes_on_a_missing_entity_are_404(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, "/v2/entities/Nope/attrs", json={"a": {"value": 1}})
    error(response, 404, "NotFound")


@pytest.mark.parametrize("body", [{"id": {"value": 1}}, {"type": {"value": "x"}}, {"a": 1}])
async def test_attrs_writes_refuse_id_type_and_bare_values(
    client: httpx.AsyncClient, body: dict
) -> None:
    await create(client, room())
    error(await client.post("/v2/entities/Room1/attrs", json=body), 400, "BadRequest")


async def test_delete_entity(client: httpx.AsyncClient) -> None:
    await create(client, room())
    error(await client.delete("/v2/entities/Room1", params={"type": "Car"}), 404, "NotFound")
    assert (await client.delete("/v2/entities/Room1", params={"type": "Room"})).status_code == 204
    error(await client.get("/v2/entities/Room1"), 404, "NotFound")
    error(await client.delete("/v2/entities/Room1"), 404, "NotFound")


async def test_ids_that_are_uris_stay_as_they_are(client: httpx.AsyncClient) -> None:
    await create(client, {"id": "urn:ngsi-ld:Room:1", "type": "Room"})
    assert (await get(client, "urn:ngsi-ld:Room:1"))["id"] == "urn:ngsi-ld:Room:1"
    assert (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1")).status_code == 200
