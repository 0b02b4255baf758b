"""Context source registration subscriptions over HTTP (GS CIM 009 V1.8.1 clause 5.11):
create, retrieve, query, update and delete, their ProblemDetails, per tenant and across a
restart. What they notify is in tests/notify/test_csource_notifications.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cityos.config import Settings

from .helpers import API, CORE_CONTEXT, ERRORS, client_for

SUBS = f"{API}/csourceSubscriptions"
SUB = "urn:ngsi-ld:Subscription:rivers"
LD = {"Content-Type": "application/ld+json"}
EX = "https://example.org/"


def subscription(sub_id: str | None = SUB, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "WaterLevel"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }
    if sub_id is not None:
        body["id"] = sub_id
    body.update(members)
    return body


async def create(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    response = await client.post(SUBS, json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response


async def retrieve(client: httpx.AsyncClient, sub_id: str = SUB, **kwargs: Any) -> Any:
    response = await client.get(f"{SUBS}/{sub_id}", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + kind
    assert body["title"] and body["detail"]


async def test_create_then_retrieve(client: httpx.AsyncClient) -> None:
    response = await create(client, subscription(watchedAttributes=["level"]))
    assert response.headers["Location"] == f"{SUBS}/{SUB}"
    assert response.content == b""
    body = await retrieve(client)
    assert body == {
        "id": SUB,
        "type": "Subscription",
        "entities": [{"type": "WaterLevel"}],
        "watchedAttributes": ["level"],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
        "status": "active",
    }


async def test_an_id_is_generated_when_none_is_given(client: httpx.AsyncClient) -> None:
    response = await create(client, subscription(None))
    location = response.headers["Location"]
    assert location.startswith(f"{SUBS}/urn:ngsi-ld:Subscription:")
    body = (await client.get(location)).json()
    assert location.endswith(body["id"])


@pytest.mark.parametrize(
    ("members", "status"),
    [({"isActive": False}, "paused"), ({"expiresAt": "2099-01-01T00:00:00Z"}, "active")],
)
async def test_status_follows_is_active(
    client: httpx.AsyncClient, members: dict[str, Any], status: str
) -> None:
    await create(client, subscription(**members))
    body = await retrieve(client)
    assert body["status"] == status
    assert {k: body[k] for k in members} == members


async def test_an_existing_id_is_already_exists(client: httpx.AsyncClient) -> None:
    await create(client, subscription())
    problem(await client.post(SUBS, json=subscription()), 409, "AlreadyExists")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(subscription(notification=None), id="no notification"),
        pytest.param(subscription(type="RandomType"), id="not a Subscription"),
        pytest.param(subscription(watchedAttributes=[]), id="empty watchedAttributes"),
        pytest.param(subscription(entities=None), id="neither entities nor watchedAttributes"),
        pytest.param(subscription(expiresAt="2018-08-01T22:07:00Z"), id="expired"),
        pytest.param(subscription(q="level>"), id="invalid q"),
        pytest.param(subscription(temporalQ={"timeAt": "2020-01-01T00:00:00Z"}), id="no timerel"),
        pytest.param(subscription(temporalQ="after"), id="temporalQ not an object"),
        pytest.param(subscription(geoQ={"georel": "near"}), id="incomplete geoQ"),
        pytest.param(subscription(id="not a uri"), id="invalid id"),
    ],
)
async def test_invalid_subscriptions_are_bad_request_data(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    problem(await client.post(SUBS, json=body), 400, "BadRequestData")


async def test_a_body_that_is_not_json_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        SUBS, content=b'{"type": "Subscription",,}', headers={"Content-Type": "application/json"}
    )
    problem(response, 400, "InvalidRequest")


@pytest.mark.parametrize(
    ("method", "sub_id", "status", "kind"),
    [
        ("GET", "invalidUri", 400, "BadRequestData"),
        ("GET", "urn:ngsi-ld:Subscription:unknown", 404, "ResourceNotFound"),
        ("DELETE", "invalidUri", 400, "BadRequestData"),
        ("DELETE", "urn:ngsi-ld:Subscription:unknown", 404, "ResourceNotFound"),
        ("PATCH", "invalidUri", 400, "BadRequestData"),
        ("PATCH", "urn:ngsi-ld:Subscription:unknown", 404, "ResourceNotFound"),
    ],
)
async def test_unknown_and_invalid_ids(
    client: httpx.AsyncClient, method: str, sub_id: str, status: int, kind: str
) -> None:
    body = {"isActive": False} if method == "PATCH" else None
    response = await client.request(method, f"{SUBS}/{sub_id}", json=body)
    problem(response, status, kind)


async def test_query_pages_with_links_and_count(client: httpx.AsyncClient) -> None:
    ids = [f"urn:ngsi-ld:Subscription:{n}" for n in range(3)]
    for sub_id in ids:
        await create(client, subscription(sub_id))
    response = await client.get(SUBS, params={"limit": 1, "offset": 1, "count": "true"})
    assert response.status_code == 200
    assert [s["id"] for s in response.json()] == ids[1:2]
    assert response.headers["NGSILD-Results-Count"] == "3"
    links = response.headers["Link"].split(",")
    assert f'<{SUBS}?limit=1&offset=0>;rel="prev";type="application/ld+json"' in links
    assert f'<{SUBS}?limit=1&offset=2>;rel="next";type="application/ld+json"' in links
    everything = (await client.get(SUBS, params={"limit": 15})).json()
    assert [s["id"] for s in everything] == ids


@pytest.mark.parametrize("params", [{"limit": "-5"}, {"offset": "-3"}, {"limit": "0"}])
async def test_query_with_invalid_paging_is_bad_request_data(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    problem(await client.get(SUBS, params=params), 400, "BadRequestData")


async def test_query_rejects_unknown_parameters(client: httpx.AsyncClient) -> None:
    problem(await client.get(SUBS, params={"page": "2"}), 400, "InvalidRequest")


async def test_update_replaces_the_members_given(client: httpx.AsyncClient) -> None:
    await create(client, subscription())
    endpoint = {"uri": "http://my.second.endpoint.org/notify", "accept": "application/json"}
    response = await client.patch(f"{SUBS}/{SUB}", json={"notification": {"endpoint": endpoint}})
    assert response.status_code == 204, response.text
    assert response.content == b""
    body = await retrieve(client)
    assert body["notification"] == {"endpoint": endpoint}
    assert body["entities"] == [{"type": "WaterLevel"}]


async def test_update_keeps_the_names_of_members_it_does_not_give(
    client: httpx.AsyncClient,
) -> None:
    """The entity type was expanded with the @context of the creation; a PATCH without one
    leaves it alone (it used to be expanded again with the core @context)."""
    inline = [{"WaterLevel": EX + "WaterLevel"}, CORE_CONTEXT]
    await create(client, subscription(**{"@context": inline}), headers=LD)
    response = await client.patch(f"{SUBS}/{SUB}", json={"isActive": False})
    assert response.status_code == 204, response.text
    body = await retrieve(client)
    assert body["entities"] == [{"type": EX + "WaterLevel"}]
    assert body["status"] == "paused"


@pytest.mark.parametrize(
    ("fragment", "kind"),
    [
        ({"type": None}, "BadRequestData"),
        ({"notification": {"format": "keyValues"}}, "BadRequestData"),
        ({"expiresAt": "2020-08-01T22:07:00Z"}, "BadRequestData"),
        ({"id": "urn:ngsi-ld:Subscription:other"}, "BadRequestData"),
        ({}, "BadRequestData"),
    ],
)
async def test_invalid_fragments(
    client: httpx.AsyncClient, fragment: dict[str, Any], kind: str
) -> None:
    await create(client, subscription())
    problem(await client.patch(f"{SUBS}/{SUB}", json=fragment), 400, kind)
    assert (await retrieve(client))["status"] == "active"


async def test_update_with_invalid_json_is_invalid_request(client: httpx.AsyncClient) -> None:
    """Even without a Content-Type (the conformance suite sends none), a body that is not
    JSON is reported as such."""
    await create(client, subscription())
    response = await client.patch(f"{SUBS}/{SUB}", content=b'{"notification": {,,}}')
    problem(response, 400, "InvalidRequest")


async def test_delete(client: httpx.AsyncClient) -> None:
    await create(client, subscription())
    response = await client.delete(f"{SUBS}/{SUB}")
    assert response.status_code == 204
    assert response.content == b""
    problem(await client.get(f"{SUBS}/{SUB}"), 404, "ResourceNotFound")


async def test_subscriptions_are_per_tenant(client: httpx.AsyncClient) -> None:
    await create(client, subscription(), headers={"NGSILD-Tenant": "town-a"})
    problem(await client.get(f"{SUBS}/{SUB}"), 404, "ResourceNotFound")
    assert (await client.get(SUBS)).json() == []
    body = await retrieve(client, headers={"NGSILD-Tenant": "town-a"})
    assert body["id"] == SUB
    await create(client, subscription())  # the same id in another tenant is another one


async def test_entity_subscriptions_and_csource_subscriptions_are_apart(
    client: httpx.AsyncClient,
) -> None:
    await create(client, subscription())
    assert (await client.get(f"{API}/subscriptions")).json() == []
    response = await client.post(f"{API}/subscriptions", json=subscription())
    assert response.status_code == 201, response.text


async def test_subscriptions_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, durable=False)
    async with client_for(settings) as client:
        await create(client, subscription(isActive=False, temporalQ=_AFTER))
    async with client_for(settings) as client:
        body = await retrieve(client)
    assert body["status"] == "paused"
    assert body["temporalQ"] == _AFTER


_AFTER = {"timerel": "after", "timeAt": "2020-06-01T22:07:00Z", "timeproperty": "createdAt"}
