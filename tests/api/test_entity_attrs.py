"""Attribute operations: /entities/{id}/attrs[/{attrId}] (GS CIM 009 V1.8.1 clauses 5.6.2-5.6.5,
5.6.19) and multi-attribute instances by ``datasetId`` (clause 4.5.5)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API, DEFAULT_VOCAB, ERRORS, create, entity, prop, rel, retrieve

ID = "urn:ngsi-ld:Vehicle:A4567"
DS_A = "urn:ngsi-ld:Dataset:speedometer"
DS_B = "urn:ngsi-ld:Dataset:gps"


def _vehicle() -> dict[str, Any]:
    return entity(ID, "Vehicle", brandName="Mercedes", speed=prop(55, unitCode="KMH"))


def _multi() -> dict[str, Any]:
    return entity(
        ID,
        "Vehicle",
        speed=[prop(55), prop(56, datasetId=DS_A), prop(54, datasetId=DS_B)],
    )


def _names(names: list[str]) -> list[str]:
    # UpdateResult names (clause 5.2.18): City OS gives them expanded, as the ETSI suite
    # expects; the short term is accepted too.
    return [n.removeprefix(DEFAULT_VOCAB) for n in names]


@pytest.fixture
async def vehicle(client: httpx.AsyncClient) -> dict[str, Any]:
    await create(client, _vehicle())
    return _vehicle()


# -- append (POST .../attrs) ------------------------------------------------------------


async def test_append_adds_and_overwrites(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    body = {"speed": prop(80), "color": prop("red")}
    response = await client.post(f"{API}/entities/{ID}/attrs", json=body)
    assert response.status_code == 204
    stored = await retrieve(client, ID)
    assert stored["speed"] == prop(80)
    assert stored["color"] == prop("red")
    assert stored["brandName"] == prop("Mercedes")


async def test_append_no_overwrite_reports_existing_attributes(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    body = {"speed": prop(80), "color": prop("red")}
    response = await client.post(
        f"{API}/entities/{ID}/attrs", params={"options": "noOverwrite"}, json=body
    )
    assert response.status_code == 207
    result = response.json()
    assert _names(result["updated"]) == ["color"]
    [not_updated] = result["notUpdated"]
    assert _names([not_updated["attributeName"]]) == ["speed"]
    assert not_updated["reason"]
    stored = await retrieve(client, ID)
    assert stored["speed"] == prop(55, unitCode="KMH")
    assert stored["color"] == prop("red")


async def test_append_to_unknown_entity_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/entities/urn:ngsi-ld:Vehicle:none/attrs", json={"speed": prop(1)}
    )
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


# -- update (PATCH .../attrs) -----------------------------------------------------------


async def test_update_changes_only_existing_attributes(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    response = await client.patch(f"{API}/entities/{ID}/attrs", json={"speed": prop(60)})
    assert response.status_code == 204
    assert (await retrieve(client, ID))["speed"] == prop(60)


async def test_update_adds_a_missing_attribute(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    # The ETSI suite (011_01_03, 046_23 to 046_25) expects PATCH .../attrs to add
    # attributes the Entity lacks, so City OS does.
    response = await client.patch(
        f"{API}/entities/{ID}/attrs", json={"speed": prop(60), "color": prop("red")}
    )
    assert response.status_code == 204
    stored = await retrieve(client, ID)
    assert stored["speed"] == prop(60)
    assert stored["color"] == prop("red")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/attrs", {"speed": prop("urn:ngsi-ld:null")}),
        ("PATCH", "/attrs/speed", {"value": "urn:ngsi-ld:null"}),
        ("PATCH", "", {"speed": "urn:ngsi-ld:null"}),
    ],
    ids=["update", "partial-update", "merge"],
)
async def test_ngsi_ld_null_deletes_the_attribute(
    client: httpx.AsyncClient, vehicle: dict[str, Any], method: str, path: str, body: dict[str, Any]
) -> None:
    response = await client.request(method, f"{API}/entities/{ID}{path}", json=body)
    assert response.status_code == 204, response.text
    assert await retrieve(client, ID) == entity(ID, "Vehicle", brandName="Mercedes")


# -- partial update, replace and delete of one attribute --------------------------------


async def test_partial_update_changes_the_given_members(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    response = await client.patch(f"{API}/entities/{ID}/attrs/speed", json={"value": 70})
    assert response.status_code == 204
    assert (await retrieve(client, ID))["speed"] == prop(70, unitCode="KMH")


async def test_partial_update_of_a_dataset_instance(client: httpx.AsyncClient) -> None:
    await create(client, _multi())
    response = await client.patch(
        f"{API}/entities/{ID}/attrs/speed", json={"value": 99, "datasetId": DS_A}
    )
    assert response.status_code == 204
    speeds = (await retrieve(client, ID))["speed"]
    assert prop(99, datasetId=DS_A) in speeds
    assert prop(55) in speeds and prop(54, datasetId=DS_B) in speeds


@pytest.mark.parametrize(
    ("attr", "body"),
    [
        ("color", {"value": "red"}),
        ("speed", {"value": 1, "datasetId": "urn:ngsi-ld:Dataset:unknown"}),
    ],
)
async def test_partial_update_of_a_missing_attribute_is_not_found(
    client: httpx.AsyncClient, vehicle: dict[str, Any], attr: str, body: dict[str, Any]
) -> None:
    response = await client.patch(f"{API}/entities/{ID}/attrs/{attr}", json=body)
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"
    assert await retrieve(client, ID) == _vehicle()


async def test_replace_attribute(client: httpx.AsyncClient, vehicle: dict[str, Any]) -> None:
    response = await client.put(
        f"{API}/entities/{ID}/attrs/speed", json=prop(10, observedAt="2026-02-01T00:00:00Z")
    )
    assert response.status_code == 204
    assert (await retrieve(client, ID))["speed"] == prop(10, observedAt="2026-02-01T00:00:00Z")


async def test_delete_attribute(client: httpx.AsyncClient, vehicle: dict[str, Any]) -> None:
    assert (await client.delete(f"{API}/entities/{ID}/attrs/speed")).status_code == 204
    assert "speed" not in await retrieve(client, ID)
    response = await client.delete(f"{API}/entities/{ID}/attrs/speed")
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


# -- multi-attribute instances ----------------------------------------------------------


async def test_multi_attribute_instances_round_trip(client: httpx.AsyncClient) -> None:
    await create(client, _multi())
    speeds = (await retrieve(client, ID))["speed"]
    assert sorted(speeds, key=lambda s: s.get("datasetId", "")) == sorted(
        _multi()["speed"], key=lambda s: s.get("datasetId", "")
    )


@pytest.mark.parametrize(
    ("params", "left"),
    [
        ({}, [prop(56, datasetId=DS_A), prop(54, datasetId=DS_B)]),
        ({"datasetId": DS_A}, [prop(55), prop(54, datasetId=DS_B)]),
        ({"datasetId": DS_B}, [prop(55), prop(56, datasetId=DS_A)]),
        ({"deleteAll": "true"}, None),
    ],
)
async def test_delete_attribute_instances(
    client: httpx.AsyncClient, params: dict[str, str], left: list[Any] | None
) -> None:
    await create(client, _multi())
    response = await client.delete(f"{API}/entities/{ID}/attrs/speed", params=params)
    assert response.status_code == 204, response.text
    stored = await retrieve(client, ID)
    if left is None:
        assert "speed" not in stored
    else:
        assert sorted(stored["speed"], key=str) == sorted(left, key=str)


async def test_delete_unknown_dataset_instance_is_not_found(client: httpx.AsyncClient) -> None:
    await create(client, _multi())
    response = await client.delete(
        f"{API}/entities/{ID}/attrs/speed", params={"datasetId": "urn:ngsi-ld:Dataset:x"}
    )
    assert response.status_code == 404
    assert len((await retrieve(client, ID))["speed"]) == 3


async def test_append_adds_a_dataset_instance_beside_the_default(
    client: httpx.AsyncClient, vehicle: dict[str, Any]
) -> None:
    response = await client.post(
        f"{API}/entities/{ID}/attrs", json={"speed": prop(57, datasetId=DS_A)}
    )
    assert response.status_code == 204
    speeds = (await retrieve(client, ID))["speed"]
    assert prop(55, unitCode="KMH") in speeds
    assert prop(57, datasetId=DS_A) in speeds


async def test_two_instances_with_one_dataset_id_are_refused(client: httpx.AsyncClient) -> None:
    body = entity(ID, "Vehicle", speed=[prop(1, datasetId=DS_A), prop(2, datasetId=DS_A)])
    response = await client.post(f"{API}/entities", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


async def test_relationship_instances_by_dataset_id(client: httpx.AsyncClient) -> None:
    body = entity(
        ID,
        "Vehicle",
        isParked=[rel("urn:ngsi-ld:Parking:1"), rel("urn:ngsi-ld:Parking:2", datasetId=DS_A)],
    )
    await create(client, body)
    assert sorted((await retrieve(client, ID))["isParked"], key=str) == sorted(
        body["isParked"], key=str
    )
