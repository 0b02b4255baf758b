"""Batch operations under /entityOperations (GS CIM 009 V1.8.1 clauses 5.6.7-5.6.10, 5.6.20,
6.14-6.18): 201/204 when every Entity succeeds, else 207 with a BatchOperationResult
(clause 5.2.16) whose errors carry ProblemDetails. Each Entity is applied whole or not at all,
and one failing Entity never stops the others."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API, CORE_CONTEXT, ERRORS, create, entity, prop, rel, retrieve, sdm_example

OPS = f"{API}/entityOperations"
A, B, C = (f"urn:ngsi-ld:Thing:{x}" for x in "abc")
SDM = [
    "Building/Building",
    "Transportation/CrowdFlowObserved",
    "Parking/OffStreetParking",
    "Weather/WeatherObserved",
]


def _invalid(entity_id: str) -> dict[str, Any]:
    """Valid but for its last attribute: nothing of it may be stored."""
    return entity(entity_id, good=prop(1), bad=rel("not a uri"))


def _errors(body: dict[str, Any]) -> dict[str, str]:
    out = {}
    for error in body["errors"]:
        problem = error["error"]
        assert {"type", "title", "status", "detail"} <= set(problem), problem
        assert problem["detail"]
        out[error["entityId"]] = problem["type"].removeprefix(ERRORS)
    return out


async def _status(client: httpx.AsyncClient, entity_id: str) -> int:
    return (await client.get(f"{API}/entities/{entity_id}")).status_code


# -- create -----------------------------------------------------------------------------


async def test_create_smart_data_models_in_one_batch(client: httpx.AsyncClient) -> None:
    bodies = [sdm_example(p) for p in SDM]
    response = await client.post(f"{OPS}/create", json=bodies)
    assert response.status_code == 201
    assert sorted(response.json()) == sorted(b["id"] for b in bodies)
    for body in bodies:
        assert await retrieve(client, body["id"]) == body


async def test_create_reports_each_failure_and_keeps_the_rest(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, name="original"))
    batch = [
        entity(A, name="again"),
        _invalid(B),
        entity(C, name="new"),
        {"type": "NoId"},
        entity(C),
    ]
    response = await client.post(f"{OPS}/create", json=batch)
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [C]
    errors = {e["entityId"]: e["error"]["type"].removeprefix(ERRORS) for e in body["errors"]}
    assert errors[A] == "AlreadyExists"
    assert errors[B] == "BadRequestData"
    assert sorted(_errors(body).values()) == sorted(
        ["AlreadyExists", "BadRequestData", "BadRequestData", "AlreadyExists"]
    )
    assert (await retrieve(client, A))["name"] == prop("original")
    assert await _status(client, B) == 404
    assert await retrieve(client, C) == entity(C, name="new")


# -- upsert -----------------------------------------------------------------------------


async def test_upsert_creates_and_replaces(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, name="old", extra=1))
    response = await client.post(f"{OPS}/upsert", json=[entity(A, name="new"), entity(B, name="b")])
    assert response.status_code == 201
    assert response.json() == [B]
    assert await retrieve(client, A) == entity(A, name="new")
    assert await retrieve(client, B) == entity(B, name="b")


async def test_upsert_with_update_keeps_other_attributes(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, name="old", extra=1))
    response = await client.post(
        f"{OPS}/upsert", params={"options": "update"}, json=[entity(A, name="new")]
    )
    assert response.status_code == 204
    assert await retrieve(client, A) == entity(A, name="new", extra=1)


@pytest.mark.parametrize("options", ["replace", "update"])
async def test_upsert_of_existing_entities_only_is_no_content(
    client: httpx.AsyncClient, options: str
) -> None:
    await create(client, entity(A))
    await create(client, entity(B))
    response = await client.post(
        f"{OPS}/upsert", params={"options": options}, json=[entity(A, n=1), entity(B, n=2)]
    )
    assert response.status_code == 204
    assert response.content == b""
    assert (await retrieve(client, B))["n"] == prop(2)


async def test_upsert_with_an_invalid_entity(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, name="kept"))
    response = await client.post(f"{OPS}/upsert", json=[_invalid(A), entity(C)])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [C]
    assert _errors(body) == {A: "BadRequestData"}
    assert await retrieve(client, A) == entity(A, name="kept")


# -- update -----------------------------------------------------------------------------


async def test_update_appends_and_overwrites(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, n=1))
    await create(client, entity(B, n=1))
    response = await client.post(
        f"{OPS}/update", json=[{"id": A, "n": prop(2)}, {"id": B, "m": prop(3)}]
    )
    assert response.status_code == 204
    assert await retrieve(client, A) == entity(A, n=2)
    assert await retrieve(client, B) == entity(B, n=1, m=3)


async def test_update_no_overwrite_keeps_existing_values(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, n=1))
    response = await client.post(
        f"{OPS}/update",
        params={"options": "noOverwrite"},
        json=[{"id": A, "n": prop(2), "m": prop(3)}],
    )
    # City OS reports the Entity whose attributes were not all updated as an error (207);
    # either way noOverwrite never overwrites.
    assert response.status_code in (204, 207)
    assert (await retrieve(client, A))["n"] == prop(1)


async def test_update_does_not_half_apply_and_does_not_stop_others(
    client: httpx.AsyncClient,
) -> None:
    await create(client, entity(A, n=1))
    await create(client, entity(B, n=1))
    batch = [
        {"id": A, "n": prop(2), "bad": rel("not a uri")},
        {"id": "urn:ngsi-ld:Thing:missing", "n": prop(2)},
        {"id": B, "n": prop(2)},
    ]
    response = await client.post(f"{OPS}/update", json=batch)
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [B]
    assert _errors(body) == {A: "BadRequestData", "urn:ngsi-ld:Thing:missing": "ResourceNotFound"}
    assert await retrieve(client, A) == entity(A, n=1)
    assert await retrieve(client, B) == entity(B, n=2)


# -- merge ------------------------------------------------------------------------------


async def test_merge_changes_and_deletes_with_null(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, n=prop(1, unitCode="CEL"), gone=1))
    await create(client, entity(B, n=1))
    batch = [{"id": A, "n": {"value": 5}, "gone": "urn:ngsi-ld:null"}, {"id": B, "m": prop(2)}]
    response = await client.post(f"{OPS}/merge", json=batch)
    assert response.status_code == 204
    assert await retrieve(client, A) == entity(A, n=prop(5, unitCode="CEL"))
    assert await retrieve(client, B) == entity(B, n=1, m=2)


async def test_merge_of_unknown_entity_is_reported(client: httpx.AsyncClient) -> None:
    await create(client, entity(A, n=1))
    response = await client.post(
        f"{OPS}/merge", json=[{"id": C, "n": prop(1)}, {"id": A, "n": prop(9)}]
    )
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [A]
    assert _errors(body) == {C: "ResourceNotFound"}
    assert await _status(client, C) == 404


# -- delete -----------------------------------------------------------------------------


async def test_delete(client: httpx.AsyncClient) -> None:
    await create(client, entity(A))
    await create(client, entity(B))
    response = await client.post(f"{OPS}/delete", json=[A, B])
    assert response.status_code == 204
    assert await _status(client, A) == 404
    assert await _status(client, B) == 404


async def test_delete_reports_unknown_and_invalid_ids(client: httpx.AsyncClient) -> None:
    await create(client, entity(A))
    response = await client.post(f"{OPS}/delete", json=[C, A, "not a uri"])
    assert response.status_code == 207
    body = response.json()
    assert body["success"] == [A]
    assert _errors(body) == {C: "ResourceNotFound", "not a uri": "BadRequestData"}
    assert await _status(client, A) == 404


# -- request shape ----------------------------------------------------------------------


@pytest.mark.parametrize("op", ["create", "upsert", "update", "merge", "delete"])
@pytest.mark.parametrize("body", [[], {"id": A, "type": "Thing"}, "text"])
async def test_batch_needs_a_non_empty_array(client: httpx.AsyncClient, op: str, body: Any) -> None:
    response = await client.post(f"{OPS}/{op}", json=body)
    assert response.status_code == 400
    assert response.json()["type"] in (ERRORS + "BadRequestData", ERRORS + "InvalidRequest")


async def test_upsert_refuses_replace_and_update_together(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{OPS}/upsert", params={"options": "replace,update"}, json=[entity(A)]
    )
    assert response.status_code == 400
    assert await _status(client, A) == 404


async def test_each_item_brings_its_own_context(client: httpx.AsyncClient) -> None:
    ctx = [{"temp": "https://example.org/temperature"}, CORE_CONTEXT]
    batch = [
        entity(A, temp=1) | {"@context": ctx},
        entity(B, temp=2) | {"@context": CORE_CONTEXT},
        entity(C, temp=3) | {"@context": "http://127.0.0.1:9/ctx.jsonld"},
    ]
    response = await client.post(
        f"{OPS}/create", json=batch, headers={"Content-Type": "application/ld+json"}
    )
    assert response.status_code == 207
    body = response.json()
    assert sorted(body["success"]) == [A, B]
    assert _errors(body) == {C: "LdContextNotAvailable"}
    assert (await retrieve(client, A))["https://example.org/temperature"] == prop(1)
    assert (await retrieve(client, B))["temp"] == prop(2)
    assert await _status(client, C) == 404
