"""Entity CRUD and representations: /ngsi-ld/v1/entities/{id} (GS CIM 009 V1.8.1 clauses
5.6.1, 5.6.6, 5.6.17, 5.6.18, 5.7.1, 4.5)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import API, ERRORS, create, entity, point, prop, rel, retrieve, sdm_example

BUILDING = "Building/Building"
BUILDING_ID = "urn:ngsi-ld:Building:building-a85e3da145c1"
SDM_EXAMPLES = [
    "Building/Building",
    "Transportation/CrowdFlowObserved",
    "Parking/OffStreetParking",
    "Weather/WeatherObserved",
]


def _sensor(entity_id: str = "urn:ngsi-ld:Sensor:1") -> dict[str, Any]:
    return entity(
        entity_id,
        "Sensor",
        temperature=prop(20.5, unitCode="CEL", observedAt="2026-01-01T00:00:00Z"),
        name="Sensor one",
        isIn=rel("urn:ngsi-ld:Building:1"),
        location=point(134.05, 34.34),
    )


# -- create -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SDM_EXAMPLES)
async def test_smart_data_models_examples_round_trip_normalized(
    client: httpx.AsyncClient, path: str
) -> None:
    body = sdm_example(path)
    response = await client.post(f"{API}/entities", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{API}/entities/{body['id']}"
    assert await retrieve(client, body["id"]) == body


async def test_create_with_the_same_id_twice_is_already_exists(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    response = await client.post(f"{API}/entities", json=_sensor() | {"name": prop("other")})
    assert response.status_code == 409
    assert response.json()["type"] == ERRORS + "AlreadyExists"
    assert (await retrieve(client, "urn:ngsi-ld:Sensor:1"))["name"] == prop("Sensor one")


async def test_upstream_water_observed_example_is_refused_for_its_non_uri_relationship(
    client: httpx.AsyncClient,
) -> None:
    # The upstream example gives dateObserved as a Relationship to a DateTime, not a URI.
    response = await client.post(f"{API}/entities", json=sdm_example("Environment/WaterObserved"))
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert "dateObserved" in response.json()["detail"]


@pytest.mark.parametrize(
    "entity_id",
    [
        "urn:ngsi-ld:Thing:a#b",
        "urn:ngsi-ld:Thing:a?b",
        "urn:ngsi-ld:Thing:高松",
        "https://example.org/things/1",
        "urn:ngsi-ld:Thing:a/b",
    ],
)
async def test_location_of_any_uri_id_can_be_retrieved(
    client: httpx.AsyncClient, entity_id: str
) -> None:
    body = entity(entity_id, n=1)
    location = (await create(client, body)).headers["location"]
    response = await client.get(location)
    assert response.status_code == 200, response.text
    assert response.json() == body
    assert (await client.delete(location)).status_code == 204


@pytest.mark.parametrize(
    "attribute",
    [prop("urn:ngsi-ld:null"), rel("urn:ngsi-ld:null")],
    ids=["property", "relationship"],
)
async def test_ngsi_ld_null_on_create_is_bad_request_data(
    client: httpx.AsyncClient, attribute: dict[str, Any]
) -> None:
    response = await client.post(
        f"{API}/entities", json=entity("urn:ngsi-ld:Thing:null", x=attribute)
    )
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert (await client.get(f"{API}/entities/urn:ngsi-ld:Thing:null")).status_code == 404


async def test_delete_entity_then_it_is_gone(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    assert (await client.delete(f"{API}/entities/urn:ngsi-ld:Sensor:1")).status_code == 204
    response = await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:1")
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"
    assert (await client.delete(f"{API}/entities/urn:ngsi-ld:Sensor:1")).status_code == 404


# -- representations --------------------------------------------------------------------


async def test_retrieve_normalized_is_what_was_sent(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    assert await retrieve(client, "urn:ngsi-ld:Sensor:1") == _sensor()


CONCISE_SENSOR = {
    "id": "urn:ngsi-ld:Sensor:1",
    "type": "Sensor",
    "temperature": {"value": 20.5, "unitCode": "CEL", "observedAt": "2026-01-01T00:00:00Z"},
    "name": "Sensor one",
    "isIn": {"object": "urn:ngsi-ld:Building:1"},
    "location": {"value": {"type": "Point", "coordinates": [134.05, 34.34]}},
}
KEY_VALUES_SENSOR = {
    "id": "urn:ngsi-ld:Sensor:1",
    "type": "Sensor",
    "temperature": 20.5,
    "name": "Sensor one",
    "isIn": "urn:ngsi-ld:Building:1",
    "location": {"type": "Point", "coordinates": [134.05, 34.34]},
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"options": "concise"}, CONCISE_SENSOR),
        ({"format": "concise"}, CONCISE_SENSOR),
        ({"options": "keyValues"}, KEY_VALUES_SENSOR),
        ({"options": "simplified"}, KEY_VALUES_SENSOR),
        ({"format": "simplified"}, KEY_VALUES_SENSOR),
        ({"format": "keyValues"}, KEY_VALUES_SENSOR),
        ({"format": "normalized"}, _sensor()),
    ],
)
async def test_retrieve_representations(
    client: httpx.AsyncClient, params: dict[str, str], expected: dict[str, Any]
) -> None:
    await create(client, _sensor())
    assert await retrieve(client, "urn:ngsi-ld:Sensor:1", **params) == expected


async def test_concise_output_posted_back_gives_the_same_entity(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    concise = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="concise")
    await create(client, concise | {"id": "urn:ngsi-ld:Sensor:copy"})
    copy = await retrieve(client, "urn:ngsi-ld:Sensor:copy")
    assert copy == _sensor("urn:ngsi-ld:Sensor:copy")


async def test_sys_attrs_on_entity_and_attributes(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    body = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="sysAttrs")
    assert body["createdAt"] == body["modifiedAt"]
    for name in ("temperature", "name", "isIn", "location"):
        assert body[name]["createdAt"].endswith("Z")
        assert body[name]["modifiedAt"] >= body[name]["createdAt"]
    plain = await retrieve(client, "urn:ngsi-ld:Sensor:1")
    assert "createdAt" not in plain and "createdAt" not in plain["temperature"]


async def test_update_moves_modified_at_and_keeps_created_at(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    before = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="sysAttrs")
    response = await client.patch(
        f"{API}/entities/urn:ngsi-ld:Sensor:1/attrs", json={"temperature": prop(21.0)}
    )
    assert response.status_code == 204
    after = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    assert after["temperature"]["createdAt"] == before["temperature"]["createdAt"]
    assert after["temperature"]["modifiedAt"] > before["temperature"]["modifiedAt"]
    assert after["name"]["modifiedAt"] == before["name"]["modifiedAt"]


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"attrs": "temperature"}, {"id", "type", "temperature"}),
        ({"attrs": "temperature,isIn"}, {"id", "type", "temperature", "isIn"}),
        ({"pick": "id,temperature"}, {"id", "temperature"}),
        ({"pick": "type,name"}, {"type", "name"}),
        ({"omit": "location,name"}, {"id", "type", "temperature", "isIn"}),
        ({"omit": "id,type"}, {"temperature", "name", "isIn", "location"}),
    ],
)
async def test_attrs_pick_and_omit_project_the_entity(
    client: httpx.AsyncClient, params: dict[str, str], keys: set[str]
) -> None:
    await create(client, _sensor())
    body = await retrieve(client, "urn:ngsi-ld:Sensor:1", **params)
    assert set(body) == keys
    if "temperature" in keys:
        assert body["temperature"] == _sensor()["temperature"]


TOWER = entity(
    "urn:ngsi-ld:PointOfInterest:tower",
    "PointOfInterest",
    name={
        "type": "LanguageProperty",
        "languageMap": {"en": "Symbol Tower", "ja": "シンボルタワー", "fr": "Tour"},
    },
)


@pytest.mark.parametrize(
    ("lang", "value", "tag"),
    [
        ("ja", "シンボルタワー", "ja"),
        ("fr", "Tour", "fr"),
        ("en-GB", "Symbol Tower", "en"),
        ("de,fr", "Tour", "fr"),
    ],
)
async def test_lang_turns_a_language_property_into_a_property(
    client: httpx.AsyncClient, lang: str, value: str, tag: str
) -> None:
    await create(client, TOWER)
    body = await retrieve(client, TOWER["id"], lang=lang)
    assert body["name"] == {"type": "Property", "value": value, "lang": tag}
    key_values = await retrieve(client, TOWER["id"], lang=lang, options="keyValues")
    assert key_values["name"] == value


async def test_retrieve_as_json_ld_has_the_context_in_the_body(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    response = await client.get(
        f"{API}/entities/urn:ngsi-ld:Sensor:1", headers={"Accept": "application/ld+json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    assert "link" not in response.headers
    body = response.json()
    assert (
        body.pop("@context") == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    )
    assert body == _sensor()


# -- replace and merge ------------------------------------------------------------------


async def test_replace_entity_drops_attributes_not_given(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    before = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="sysAttrs")
    replacement = entity("urn:ngsi-ld:Sensor:1", "Sensor", humidity=prop(40))
    response = await client.put(f"{API}/entities/urn:ngsi-ld:Sensor:1", json=replacement)
    assert response.status_code == 204
    assert await retrieve(client, "urn:ngsi-ld:Sensor:1") == replacement
    after = await retrieve(client, "urn:ngsi-ld:Sensor:1", options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]


async def test_replace_unknown_entity_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"{API}/entities/urn:ngsi-ld:Sensor:nope", json=entity("urn:ngsi-ld:Sensor:nope")
    )
    assert response.status_code == 404


async def test_merge_entity_adds_changes_and_null_deletes(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    patch = {
        "temperature": {"value": 22.0},
        "name": "urn:ngsi-ld:null",
        "isIn": {"type": "Property", "value": "urn:ngsi-ld:null"},
        "humidity": prop(55),
    }
    response = await client.patch(f"{API}/entities/urn:ngsi-ld:Sensor:1", json=patch)
    assert response.status_code == 204
    body = await retrieve(client, "urn:ngsi-ld:Sensor:1")
    # clause 5.6.17: merged members keep what was not given (unitCode, observedAt).
    assert body["temperature"] == prop(22.0, unitCode="CEL", observedAt="2026-01-01T00:00:00Z")
    assert "name" not in body and "isIn" not in body
    assert body["humidity"] == prop(55)
    assert body["location"] == _sensor()["location"]


async def test_merge_entity_merges_sub_properties(client: httpx.AsyncClient) -> None:
    start = entity(
        "urn:ngsi-ld:Sensor:2", temperature=prop(1, accuracy=prop(0.5), source=prop("a"))
    )
    await create(client, start)
    patch = {
        "temperature": {
            "type": "Property",
            "value": 2,
            "accuracy": prop(0.1),
            "source": "urn:ngsi-ld:null",
        }
    }
    assert (
        await client.patch(f"{API}/entities/urn:ngsi-ld:Sensor:2", json=patch)
    ).status_code == 204
    assert (await retrieve(client, "urn:ngsi-ld:Sensor:2"))["temperature"] == prop(
        2, accuracy=prop(0.1)
    )


async def test_merge_with_merge_patch_content_type(client: httpx.AsyncClient) -> None:
    await create(client, _sensor())
    response = await client.patch(
        f"{API}/entities/urn:ngsi-ld:Sensor:1",
        content=b'{"name": "renamed"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 204
    assert (await retrieve(client, "urn:ngsi-ld:Sensor:1"))["name"] == prop("renamed")


async def test_merge_unknown_entity_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{API}/entities/urn:ngsi-ld:Sensor:nope", json={"name": "x"})
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


# -- GeoJSON ----------------------------------------------------------------------------


async def test_retrieve_as_geojson_is_a_feature(client: httpx.AsyncClient) -> None:
    await create(client, sdm_example(BUILDING))
    response = await client.get(
        f"{API}/entities/{BUILDING_ID}", headers={"Accept": "application/geo+json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    feature = response.json()
    assert feature["type"] == "Feature"
    assert feature["id"] == BUILDING_ID
    assert feature["geometry"] == sdm_example(BUILDING)["location"]["value"]
    assert feature["properties"]["type"] == "Building"
    assert feature["properties"]["floorsAboveGround"] == prop(7)


async def test_geojson_geometry_property_picks_another_geo_property(
    client: httpx.AsyncClient,
) -> None:
    site = entity("urn:ngsi-ld:Site:1", "Site", location=point(1, 2), entrance=point(3, 4))
    await create(client, site)
    response = await client.get(
        f"{API}/entities",
        params={"type": "Site", "geometryProperty": "entrance"},
        headers={"Accept": "application/geo+json"},
    )
    assert response.status_code == 200
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    [feature] = collection["features"]
    assert feature["geometry"] == {"type": "Point", "coordinates": [3, 4]}
