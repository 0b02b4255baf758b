"""@context handling on the entity API (GS CIM 009 V1.8.1 clauses 5.5.7, 6.3.5): an inline
``@context`` with application/ld+json, a ``Link`` header with application/json, and
responses compacted with the requester's context. No network: inline objects and contexts
hosted by this City OS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API, CORE_CONTEXT, DEFAULT_VOCAB, ERRORS, create, prop, query, retrieve

LD = {"Content-Type": "application/ld+json"}
TEMPERATURE_IRI = "https://example.org/temperature"
SENSOR_IRI = "https://example.org/Sensor"
INLINE = [{"temp": TEMPERATURE_IRI, "Sensor": SENSOR_IRI}, CORE_CONTEXT]


def _sensor(entity_id: str = "urn:ngsi-ld:Sensor:ld") -> dict[str, Any]:
    return {"id": entity_id, "type": "Sensor", "temp": prop(21.5), "@context": INLINE}


def _link(url: str) -> dict[str, str]:
    return {
        "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    }


async def _host(client: httpx.AsyncClient, context: dict[str, Any]) -> str:
    response = await client.post(f"{API}/jsonldContexts", json={"@context": context})
    assert response.status_code == 201, response.text
    details = await client.get(response.headers["location"], params={"details": "true"})
    url: str = details.json()["URL"]
    return url


async def test_inline_context_expands_names_seen_expanded_without_it(
    client: httpx.AsyncClient,
) -> None:
    await create(client, _sensor(), headers=LD)
    stored = await retrieve(client, "urn:ngsi-ld:Sensor:ld")
    assert stored == {
        "id": "urn:ngsi-ld:Sensor:ld",
        "type": SENSOR_IRI,
        TEMPERATURE_IRI: prop(21.5),
    }


async def test_another_context_compacts_to_its_own_terms(client: httpx.AsyncClient) -> None:
    await create(client, _sensor(), headers=LD)
    url = await _host(client, {"temperature": TEMPERATURE_IRI, "Thermometer": SENSOR_IRI})
    response = await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:ld", headers=_link(url))
    assert response.status_code == 200
    assert response.json() == {
        "id": "urn:ngsi-ld:Sensor:ld",
        "type": "Thermometer",
        "temperature": prop(21.5),
    }
    assert url in response.headers["link"]


async def test_query_terms_are_expanded_with_the_link_context(client: httpx.AsyncClient) -> None:
    await create(client, _sensor(), headers=LD)
    await create(client, {"id": "urn:ngsi-ld:Sensor:plain", "type": "Sensor", "temp": prop(30)})
    url = await _host(client, {"temp": TEMPERATURE_IRI, "Sensor": SENSOR_IRI})
    response = await client.get(
        f"{API}/entities", params={"type": "Sensor", "q": "temp>20"}, headers=_link(url)
    )
    assert response.status_code == 200
    assert [e["id"] for e in response.json()] == ["urn:ngsi-ld:Sensor:ld"]
    # Without the context the same words mean the default-vocabulary IRIs.
    assert [e["id"] for e in await query(client, type="Sensor", q="temp>20")] == [
        "urn:ngsi-ld:Sensor:plain"
    ]
    assert [e["id"] for e in await query(client, type=SENSOR_IRI)] == ["urn:ngsi-ld:Sensor:ld"]


async def test_link_context_on_create_with_application_json(client: httpx.AsyncClient) -> None:
    url = await _host(client, {"temp": TEMPERATURE_IRI})
    body = {"id": "urn:ngsi-ld:Sensor:link", "type": "Sensor", "temp": prop(1)}
    await create(client, body, headers=_link(url))
    stored = await retrieve(client, "urn:ngsi-ld:Sensor:link")
    assert stored[TEMPERATURE_IRI] == prop(1)
    assert stored["type"] == "Sensor"


async def test_json_ld_response_carries_the_requested_context(client: httpx.AsyncClient) -> None:
    await create(client, _sensor(), headers=LD)
    url = await _host(client, {"temp": TEMPERATURE_IRI})
    response = await client.get(
        f"{API}/entities/urn:ngsi-ld:Sensor:ld",
        headers={**_link(url), "Accept": "application/ld+json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    body = response.json()
    assert body["@context"] == url
    assert body["temp"] == prop(21.5)


async def test_default_vocabulary_applies_without_a_context(client: httpx.AsyncClient) -> None:
    await create(client, {"id": "urn:ngsi-ld:Sensor:d", "type": "Sensor", "temp": prop(1)})
    url = await _host(client, {"x": "https://example.org/x"})
    response = await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:d", headers=_link(url))
    assert response.json()["temp"] == prop(1)
    response = await client.get(f"{API}/types/{DEFAULT_VOCAB}Sensor")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({**LD, **_link(CORE_CONTEXT)}, _sensor(), id="link-with-ld+json"),
        pytest.param({"Content-Type": "application/json"}, _sensor(), id="@context-with-json"),
        pytest.param(
            LD,
            {k: v for k, v in _sensor().items() if k != "@context"},
            id="ld+json-without-@context",
        ),
    ],
)
async def test_misplaced_contexts_are_bad_request_data(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(f"{API}/entities", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert (await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:ld")).status_code == 404
