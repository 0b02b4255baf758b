"""Discovery of Entity types and Attributes: /types and /attributes (GS CIM 009 V1.8.1 clauses
5.7.5-5.7.10, 5.2.24-5.2.28, 6.25-6.28)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API, DEFAULT_VOCAB, ERRORS, create, entity, point, prop, rel, sdm_example

V = DEFAULT_VOCAB


@pytest.fixture
async def city(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await create(
        client,
        entity(
            "urn:ngsi-ld:Sensor:1",
            "Sensor",
            temperature=prop(20),
            isIn=rel("urn:ngsi-ld:Building:1"),
        ),
    )
    await create(
        client, entity("urn:ngsi-ld:Sensor:2", "Sensor", temperature=prop(21), location=point(0, 0))
    )
    await create(
        client, entity("urn:ngsi-ld:Building:1", "Building", name="Hall", location=point(1, 1))
    )
    return client


async def _get(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(API + path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_type_list(city: httpx.AsyncClient) -> None:
    body = await _get(city, "/types")
    assert isinstance(body, dict)
    assert body["type"] == "EntityTypeList"
    assert body["id"].startswith("urn:")
    assert body["typeList"] == ["Building", "Sensor"]


async def test_type_list_details(city: httpx.AsyncClient) -> None:
    body = await _get(city, "/types", details="true")
    assert body == [
        {
            "id": V + "Building",
            "type": "EntityType",
            "typeName": "Building",
            "attributeNames": ["location", "name"],
        },
        {
            "id": V + "Sensor",
            "type": "EntityType",
            "typeName": "Sensor",
            "attributeNames": ["isIn", "location", "temperature"],
        },
    ]


@pytest.mark.parametrize("name", ["Sensor", V + "Sensor"])
async def test_type_info(city: httpx.AsyncClient, name: str) -> None:
    body = await _get(city, f"/types/{name}")
    assert isinstance(body, dict)
    body["attributeDetails"].sort(key=lambda a: a["attributeName"])
    assert body == {
        "id": V + "Sensor",
        "type": "EntityTypeInfo",
        "typeName": "Sensor",
        "entityCount": 2,
        "attributeDetails": [
            {
                "id": V + "isIn",
                "type": "Attribute",
                "attributeName": "isIn",
                "attributeTypes": ["Relationship"],
            },
            {
                "id": "https://uri.etsi.org/ngsi-ld/location",
                "type": "Attribute",
                "attributeName": "location",
                "attributeTypes": ["GeoProperty"],
            },
            {
                "id": V + "temperature",
                "type": "Attribute",
                "attributeName": "temperature",
                "attributeTypes": ["Property"],
            },
        ],
    }


async def test_attribute_list(city: httpx.AsyncClient) -> None:
    body = await _get(city, "/attributes")
    assert isinstance(body, dict)
    assert body["type"] == "AttributeList"
    assert body["attributeList"] == ["isIn", "location", "name", "temperature"]


async def test_attribute_list_details(city: httpx.AsyncClient) -> None:
    body = await _get(city, "/attributes", details="true")
    assert isinstance(body, list)
    by_name = {a["attributeName"]: a for a in body}
    assert set(by_name) == {"isIn", "location", "name", "temperature"}
    assert by_name["location"]["typeNames"] == ["Building", "Sensor"]
    assert by_name["temperature"] == {
        "id": V + "temperature",
        "type": "Attribute",
        "attributeName": "temperature",
        "typeNames": ["Sensor"],
    }


@pytest.mark.parametrize(
    ("name", "count", "attribute_types", "type_names"),
    [
        ("temperature", 2, ["Property"], ["Sensor"]),
        ("location", 2, ["GeoProperty"], ["Building", "Sensor"]),
        ("isIn", 1, ["Relationship"], ["Sensor"]),
    ],
)
async def test_attribute_info(
    city: httpx.AsyncClient,
    name: str,
    count: int,
    attribute_types: list[str],
    type_names: list[str],
) -> None:
    body = await _get(city, f"/attributes/{name}")
    assert isinstance(body, dict)
    assert body["type"] == "Attribute"
    assert body["attributeName"] == name
    assert body["attributeCount"] == count
    assert body["attributeTypes"] == attribute_types
    assert body["typeNames"] == type_names


@pytest.mark.parametrize("path", ["/types/Nothing", "/attributes/nothing"])
async def test_unknown_type_or_attribute_is_not_found(city: httpx.AsyncClient, path: str) -> None:
    response = await city.get(API + path)
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


async def test_discovery_follows_deletes(city: httpx.AsyncClient) -> None:
    assert (await city.delete(f"{API}/entities/urn:ngsi-ld:Building:1")).status_code == 204
    assert (await _get(city, "/types"))["typeList"] == ["Sensor"]
    assert "name" not in (await _get(city, "/attributes"))["attributeList"]
    assert (await city.get(f"{API}/types/Building")).status_code == 404


async def test_empty_broker(client: httpx.AsyncClient) -> None:
    assert (await _get(client, "/types"))["typeList"] == []
    assert (await _get(client, "/attributes"))["attributeList"] == []


async def test_smart_data_models_types(client: httpx.AsyncClient) -> None:
    for path in ("Building/Building", "Parking/OffStreetParking"):
        await create(client, sdm_example(path))
    assert (await _get(client, "/types"))["typeList"] == ["Building", "OffStreetParking"]
    info = await _get(client, "/types/OffStreetParking")
    assert isinstance(info, dict)
    assert info["entityCount"] == 1
    assert {"availableSpotNumber", "location", "totalSpotNumber"} <= {
        a["attributeName"] for a in info["attributeDetails"]
    }


async def test_names_are_compacted_with_the_link_context(city: httpx.AsyncClient) -> None:
    hosted = await city.post(
        f"{API}/jsonldContexts",
        json={"@context": {"Capteur": V + "Sensor", "temperatura": V + "temperature"}},
    )
    url = (await city.get(hosted.headers["location"], params={"details": "true"})).json()["URL"]
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    types = (await city.get(f"{API}/types", headers={"Link": link})).json()
    assert types["typeList"] == ["Building", "Capteur"]
    info = (await city.get(f"{API}/types/Capteur", headers={"Link": link})).json()
    assert info["typeName"] == "Capteur"
    assert "temperatura" in [a["attributeName"] for a in info["attributeDetails"]]
