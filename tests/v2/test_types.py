"""/v2/types and /v2/types/{type}."""

from __future__ import annotations

import httpx

from .helpers import LD, create, error, room


async def populate(client: httpx.AsyncClient) -> None:
    await create(client, room("Room1", 20, name={"value": "x"}))
    await create(client, room("Room2") | {"temperature": {"value": "warm"}})
    await create(
        client,
        {"id": "Car1", "type": "Car", "speed": {"type": "Float", "value": 3.5}},
        headers={"fiware-servicepath": "/fleet"},
    )
    await client.post(
        f"{LD}/entities",
        json={"id": "urn:ngsi-ld:Car:2", "type": "Car", "speed": {"type": "Property", "value": 9}},
    )


async def test_list_types_with_attribute_types_and_counts(client: httpx.AsyncClient) -> None:
    await populate(client)
    response = await client.get("/v2/types", params={"options": "count"})
    assert response.headers["fiware-total-count"] == "2"
    assert response.json() == [
        {"type": "Car", "attrs": {"speed": {"types": ["Float", "Number"]}}, "count": 2},
        {
            "type": "Room",
            "attrs": {"name": {"types": ["Text"]}, "temperature": {"types": ["Number", "Text"]}},
            "count": 2,
        },
    ]


async def test_values_no_attr_detail_paging_and_paths(client: httpx.AsyncClient) -> None:
    await populate(client)
    assert (await client.get("/v2/types", params={"options": "values"})).json() == ["Car", "Room"]
    assert (await client.get("/v2/types", params={"options": "values", "offset": "1"})).json() == [
        "Room"
    ]
    plain = (await client.get("/v2/types", params={"options": "noAttrDetail", "limit": "1"})).json()
    assert plain == [{"type": "Car", "attrs": {"speed": {"types": []}}, "count": 2}]
    fleet = await client.get("/v2/types", headers={"fiware-servicepath": "/fleet"})
    assert fleet.json() == [{"type": "Car", "attrs": {"speed": {"types": ["Float"]}}, "count": 1}]


async def test_retrieve_type(client: httpx.AsyncClient) -> None:
    await populate(client)
    assert (await client.get("/v2/types/Room")).json()["count"] == 2
    error(await client.get("/v2/types/Boat"), 404, "NotFound")
    error(await client.get("/v2/types/Room", params={"options": "count"}), 400, "BadRequest")
