"""One store, two APIs: what v2 writes NGSI-LD reads, and the reverse; NGSI-LD
Subscriptions and temporal history follow v2 writes."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Receiver
from .helpers import LD, create, get

V2_ROOM: dict[str, Any] = {
    "id": "Room1",
    "type": "Room",
    "temperature": {
        "type": "Number",
        "value": 21.5,
        "metadata": {
            "unitCode": {"type": "Text", "value": "CEL"},
            "observedAt": {"type": "DateTime", "value": "2024-05-01T10:00:00Z"},
            "accuracy": {"type": "Number", "value": 0.5},
        },
    },
    "name": {"type": "Text", "value": "Kitchen"},
    "address": {"type": "StructuredValue", "value": {"city": "Takamatsu"}},
    "seen": {"type": "DateTime", "value": "2024-01-01T00:00:00Z"},
    "location": {"type": "geo:json", "value": {"type": "Point", "coordinates": [134.04, 34.34]}},
    "refBuilding": {"type": "Relationship", "value": "Building1"},
    "refOwner": {"type": "Relationship", "value": "urn:ngsi-ld:Person:1"},
}

LD_ROOM: dict[str, Any] = {
    "id": "urn:ngsi-v2:Room1",
    "type": "Room",
    "temperature": {
        "type": "Property",
        "value": 21.5,
        "unitCode": "CEL",
        "observedAt": "2024-05-01T10:00:00Z",
        "accuracy": {"type": "Property", "value": 0.5},
    },
    "name": {"type": "Property", "value": "Kitchen"},
    "address": {"type": "Property", "value": {"city": "Takamatsu"}},
    "seen": {"type": "Property", "value": {"@type": "DateTime", "@value": "2024-01-01T00:00:00Z"}},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.04, 34.34]}},
    "refBuilding": {"type": "Relationship", "object": "urn:ngsi-v2:Building1"},
    "refOwner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
}


def v2_form(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k in ("id", "type") else {"metadata": {}, **v} for k, v in body.items()}


async def test_a_v2_write_reads_back_through_ngsi_ld(client: httpx.AsyncClient) -> None:
    await create(client, V2_ROOM)
    assert (await client.get(f"{LD}/entities/urn:ngsi-v2:Room1")).json() == LD_ROOM


async def test_an_ngsi_ld_write_reads_back_through_v2(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{LD}/entities", json=LD_ROOM)
    assert response.status_code == 201, response.text
    assert await get(client, "Room1") == v2_form(V2_ROOM)


async def test_ngsi_ld_only_shapes_show_in_v2(client: httpx.AsyncClient) -> None:
    body = {
        "id": "urn:ngsi-ld:Museum:1",
        "type": ["Museum", "Building"],
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Museum", "ja": "美術館"}},
        "visitors": [
            {"type": "Property", "value": 10},
            {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:kids"},
        ],
        "http://example.org/rating": {"type": "Property", "value": 5},
    }
    assert (await client.post(f"{LD}/entities", json=body)).status_code == 201
    museum = await get(client, "urn:ngsi-ld:Museum:1", params={"options": "keyValues"})
    assert museum == {
        "id": "urn:ngsi-ld:Museum:1",
        "type": "Museum",
        "name": {"en": "Museum", "ja": "美術館"},
        "visitors": 10,
        "http://example.org/rating": 5,
    }
    assert (await get(client, "urn:ngsi-ld:Museum:1"))["name"]["type"] == "LanguageProperty"


async def test_v2_updates_keep_ngsi_ld_instances_it_does_not_show(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "id": "urn:ngsi-ld:Museum:1",
        "type": "Museum",
        "visitors": [
            {"type": "Property", "value": 10},
            {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:kids"},
        ],
    }
    await client.post(f"{LD}/entities", json=body)
    await client.patch("/v2/entities/urn:ngsi-ld:Museum:1/attrs", json={"visitors": {"value": 11}})
    ld = (await client.get(f"{LD}/entities/urn:ngsi-ld:Museum:1")).json()
    assert sorted(i["value"] for i in ld["visitors"]) == [3, 11]


async def test_v2_types_ld_cannot_carry_are_kept_for_v2_but_not_shown_to_ld(
    client: httpx.AsyncClient,
) -> None:
    await create(
        client,
        {
            "id": "E1",
            "t": {"type": "Float", "value": 1.5},
            "p": {"type": "geo:point", "value": "34.0, 134.5"},
        },
    )
    ld = (await client.get(f"{LD}/entities/urn:ngsi-v2:E1")).json()
    assert ld["t"] == {"type": "Property", "value": 1.5}
    assert ld["p"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [134.5, 34]},
    }
    # An NGSI-LD update of the value wins; the v2 type stays while it fits the value.
    await client.patch(f"{LD}/entities/urn:ngsi-v2:E1/attrs/t", json={"value": 2.5})
    await client.patch(
        f"{LD}/entities/urn:ngsi-v2:E1/attrs/p",
        json={"value": {"type": "Point", "coordinates": [1, 2]}},
    )
    v2 = await get(client, "E1")
    assert (v2["t"]["type"], v2["t"]["value"]) == ("Float", 2.5)
    assert (v2["p"]["type"], v2["p"]["value"]) == ("geo:point", "2, 1")
    await client.patch(
        f"{LD}/entities/urn:ngsi-v2:E1/attrs/p",
        json={"value": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}},
    )
    assert (await get(client, "E1"))["p"]["type"] == "geo:json"


async def test_ngsi_ld_queries_see_v2_entities(client: httpx.AsyncClient) -> None:
    await create(client, V2_ROOM)
    found = await client.get(
        f"{LD}/entities",
        params={"type": "Room", "q": "temperature>20;refBuilding==urn:ngsi-v2:Building1"},
    )
    assert [e["id"] for e in found.json()] == ["urn:ngsi-v2:Room1"]
    near = {
        "type": "Room",
        "georel": "near;maxDistance==1000",
        "geometry": "Point",
        "coordinates": "[134.04,34.34]",
    }
    assert len((await client.get(f"{LD}/entities", params=near)).json()) == 1


async def test_ngsi_ld_subscriptions_fire_on_v2_writes(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    subscription = {
        "id": "urn:ngsi-ld:Subscription:rooms",
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "watchedAttributes": ["temperature"],
        "notification": {"endpoint": {"uri": receiver.url}, "format": "keyValues"},
    }
    assert (await client.post(f"{LD}/subscriptions", json=subscription)).status_code == 201
    await create(client, {"id": "Room1", "type": "Room", "temperature": {"value": 20}})
    await client.put(
        "/v2/entities/Room1/attrs/temperature/value",
        content="25",
        headers={"content-type": "text/plain"},
    )
    received = await receiver.wait_for(2)
    assert [n["data"][0]["temperature"] for n in received] == [20, 25]
    assert received[1]["data"][0]["id"] == "urn:ngsi-v2:Room1"


async def test_temporal_history_records_v2_writes(client: httpx.AsyncClient) -> None:
    await create(client, {"id": "Room1", "type": "Room", "temperature": {"value": 20}})
    await client.patch("/v2/entities/Room1/attrs", json={"temperature": {"value": 22}})
    history = (await client.get(f"{LD}/temporal/entities/urn:ngsi-v2:Room1")).json()
    assert sorted(i["value"] for i in history["temperature"]) == [20, 22]


async def test_an_ngsi_ld_entity_copied_through_v2_is_the_same(client: httpx.AsyncClient) -> None:
    await client.post(f"{LD}/entities", json=LD_ROOM)
    copy = await get(client, "Room1")
    copy["id"] = "Room2"
    await create(client, copy)
    again = (await client.get(f"{LD}/entities/urn:ngsi-v2:Room2")).json()
    assert again == {**LD_ROOM, "id": "urn:ngsi-v2:Room2"}
