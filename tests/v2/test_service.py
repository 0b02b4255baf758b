"""Fiware-Service (the tenant, shared with NGSILD-Tenant) and Fiware-ServicePath (the scope)."""

from __future__ import annotations

import httpx
import pytest

from cityos.errors import BadRequestData
from cityos.v2.servicepath import read_paths, write_path

from .helpers import LD, create, error, ids, room

PATHS = {
    "Root": None,
    "A": "/Madrid",
    "B": "/Madrid/Gardens",
    "C": "/Madrid/Gardens/North",
    "D": "/Tokyo",
}


@pytest.fixture
async def scoped(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for entity_id, path in PATHS.items():
        headers = {"fiware-servicepath": path} if path else {}
        await create(client, room(entity_id), headers=headers)
    return client


async def read(client: httpx.AsyncClient, path: str | None) -> list[str]:
    headers = {} if path is None else {"fiware-servicepath": path}
    response = await client.get("/v2/entities", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (None, ["A", "B", "C", "D", "Root"]),
        ("/#", ["A", "B", "C", "D", "Root"]),
        ("/", ["Root"]),
        ("/Madrid", ["A"]),
        ("/Madrid/", ["A"]),
        ("/Madrid/#", ["A", "B", "C"]),
        ("/Madrid/Gardens/#", ["B", "C"]),
        ("/Madrid/Gardens/North, /Tokyo", ["C", "D"]),
        ("/, /Tokyo", ["D", "Root"]),
        ("/Nowhere", []),
    ],
)
async def test_reads_follow_the_service_path(
    scoped: httpx.AsyncClient, path: str | None, expected: list[str]
) -> None:
    assert await read(scoped, path) == expected


async def test_root_reads_page_and_count_after_filtering(scoped: httpx.AsyncClient) -> None:
    headers = {"fiware-servicepath": "/, /Madrid/#"}
    response = await scoped.get(
        "/v2/entities", headers=headers, params={"limit": "2", "offset": "1", "options": "count"}
    )
    assert response.headers["fiware-total-count"] == "4"
    assert [e["id"] for e in response.json()] == ["A", "B"]  # Root, A, B, C in creation order


async def test_the_service_path_is_the_ngsi_ld_scope(scoped: httpx.AsyncClient) -> None:
    entity = (await scoped.get(f"{LD}/entities/urn:ngsi-v2:C")).json()
    assert entity["scope"] == "/Madrid/Gardens/North"
    root = (await scoped.get(f"{LD}/entities/urn:ngsi-v2:Root")).json()
    assert "scope" not in root
    found = await scoped.get(f"{LD}/entities", params={"type": "Room", "scopeQ": "/Madrid/#"})
    assert sorted(e["id"] for e in found.json()) == [
        "urn:ngsi-v2:A",
        "urn:ngsi-v2:B",
        "urn:ngsi-v2:C",
    ]


async def test_writes_and_single_reads_stay_in_their_path(scoped: httpx.AsyncClient) -> None:
    other = {"fiware-servicepath": "/Tokyo"}
    error(await scoped.get("/v2/entities/A", headers=other), 404, "NotFound")
    error(
        await scoped.patch(
            "/v2/entities/A/attrs", json={"temperature": {"value": 1}}, headers=other
        ),
        404,
        "NotFound",
    )
    error(
        await scoped.delete("/v2/entities/A", headers={"fiware-servicepath": "/"}), 404, "NotFound"
    )
    own = {"fiware-servicepath": "/Madrid"}
    assert (
        await scoped.patch("/v2/entities/A/attrs", json={"temperature": {"value": 1}}, headers=own)
    ).status_code == 204
    assert (await scoped.delete("/v2/entities/A")).status_code == 204  # no header: any path


@pytest.mark.parametrize(
    "path", ["/a/#", "/a,/b", "/a b", "/" + "/".join("x" * 11), "/" + "x" * 51]
)
async def test_invalid_write_paths_are_400(client: httpx.AsyncClient, path: str) -> None:
    error(
        await client.post("/v2/entities", json=room(), headers={"fiware-servicepath": path}),
        400,
        "BadRequest",
    )
    assert await ids(client) == []


def test_path_parsing() -> None:
    assert write_path(None) is None and write_path("/") is None
    assert write_path("/A/B/") == "/A/B"
    assert read_paths("/A/#").scope_q is not None
    assert read_paths("/, /A").needs_check
    assert not read_paths(None).needs_check
    with pytest.raises(BadRequestData):
        read_paths(",".join(["/a"] * 11))
    with pytest.raises(BadRequestData):
        write_path("//A")


async def test_fiware_service_is_the_ngsi_ld_tenant(client: httpx.AsyncClient) -> None:
    await create(client, room(), headers={"fiware-service": "Takamatsu"})
    assert await ids(client) == []
    response = await client.get("/v2/entities", headers={"fiware-service": "takamatsu"})
    assert [e["id"] for e in response.json()] == ["Room1"]
    ld = await client.get(
        f"{LD}/entities/urn:ngsi-v2:Room1", headers={"NGSILD-Tenant": "takamatsu"}
    )
    assert ld.status_code == 200
    await client.post(
        f"{LD}/entities",
        json={"id": "urn:ngsi-ld:Car:1", "type": "Car"},
        headers={"NGSILD-Tenant": "takamatsu"},
    )
    both = await client.get("/v2/entities", headers={"fiware-service": "takamatsu"})
    assert sorted(e["id"] for e in both.json()) == ["Room1", "urn:ngsi-ld:Car:1"]


async def test_single_reads_take_read_paths(scoped: httpx.AsyncClient) -> None:
    below = {"fiware-servicepath": "/Madrid/#"}
    assert (await scoped.get("/v2/entities/C", headers=below)).status_code == 200
    assert (await scoped.get("/v2/entities/C/attrs/temperature", headers=below)).status_code == 200
    error(await scoped.get("/v2/entities/D", headers=below), 404, "NotFound")


async def test_batch_writes_stay_in_their_path(scoped: httpx.AsyncClient) -> None:
    body = {"actionType": "update", "entities": [{"id": "A", "temperature": {"value": 5}}]}
    response = await scoped.post(
        "/v2/op/update", json=body, headers={"fiware-servicepath": "/Tokyo"}
    )
    error(response, 404, "NotFound")
    body["actionType"] = "append"
    body["entities"].append({"id": "New", "type": "Room"})
    await scoped.post("/v2/op/update", json=body, headers={"fiware-servicepath": "/Madrid"})
    assert await read(scoped, "/Madrid") == ["A", "New"]
