"""Context source registrations over HTTP (GS CIM 009 V1.8.1 clauses 5.9, 5.10, 6.8-6.9):
register, retrieve, query, update and delete, with names expanded by the request's
@context and compacted with the reader's, per tenant, across a restart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from cityos.config import Settings

from .helpers import API, CORE_CONTEXT, DEFAULT_VOCAB, ERRORS, client_for

REGS = f"{API}/csourceRegistrations"
RIVER = "urn:ngsi-ld:ContextSourceRegistration:river"
LD = {"Content-Type": "application/ld+json"}
EX = "https://example.org/"
INLINE = [{"WaterLevel": EX + "WaterLevel", "level": EX + "level"}, CORE_CONTEXT]
FUTURE = "2099-01-01T00:00:00Z"
DROP = object()  # a member left out of the body


def registration(reg_id: str = RIVER, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": reg_id,
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "WaterLevel"}], "propertyNames": ["level"]}],
        "endpoint": "http://town-b.example:8000",
    }
    body.update(members)
    return body


def _link(url: str) -> dict[str, str]:
    return {
        "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    }


async def register(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> str:
    response = await client.post(REGS, json=body, **kwargs)
    assert response.status_code == 201, response.text
    location: str = response.headers["location"]
    return location.rsplit("/", 1)[1]


async def get(client: httpx.AsyncClient, reg_id: str = RIVER, **kwargs: Any) -> dict[str, Any]:
    response = await client.get(f"{REGS}/{reg_id}", **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def found(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get(REGS, params=params)
    assert response.status_code == 200, response.text
    return sorted(r["id"] for r in response.json())


def assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + kind
    assert body["status"] == status
    assert body["title"] and body["detail"]


# -- register and retrieve ---------------------------------------------------------------


async def test_register_then_retrieve_with_defaults(client: httpx.AsyncClient) -> None:
    response = await client.post(REGS, json=registration(csourceProperty="town-b"))
    assert response.status_code == 201 and response.content == b""
    assert response.headers["location"] == f"{REGS}/{RIVER}"
    assert await get(client) == {
        **registration(csourceProperty="town-b"),
        "mode": "inclusive",
        "operations": ["federationOps"],
    }
    timed = await get(client, params={"options": "sysAttrs"})
    assert timed["createdAt"] == timed["modifiedAt"]


async def test_every_member_is_kept_as_given(client: httpx.AsyncClient) -> None:
    members = {
        "registrationName": "Town B river levels",
        "description": "Water levels of the rivers of town B",
        "mode": "redirect",
        "operations": ["retrieveOps", "queryTemporal"],
        "expiresAt": FUTURE,
        "location": {"type": "Point", "coordinates": [134.05, 34.34]},
        "observationSpace": {"type": "Point", "coordinates": [134.0, 34.3]},
        "observationInterval": {"startAt": "2020-01-01T00:00:00Z"},
        "contextSourceInfo": [{"key": "X-Town", "value": "B"}],
        "management": {"localOnly": True, "cacheDuration": "PT1M", "timeout": 500, "cooldown": 10},
        "scope": ["/Kagawa/TownB"],
        "tenant": "river",
    }
    await register(client, registration(**members))
    assert await get(client) == registration(**members)


async def test_an_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    body = registration()
    del body["id"]
    reg_id = await register(client, body)
    assert reg_id.startswith("urn:ngsi-ld:ContextSourceRegistration:")
    assert (await get(client, reg_id))["id"] == reg_id


async def test_an_existing_id_is_already_exists(client: httpx.AsyncClient) -> None:
    await register(client, registration())
    again = await client.post(REGS, json=registration(endpoint="http://other.example"))
    assert_problem(again, 409, "AlreadyExists")
    assert (await get(client))["endpoint"] == "http://town-b.example:8000"


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("no-type", {"type": DROP}),
        ("wrong-type", {"type": "Registration"}),
        ("bad-id", {"id": "not a uri"}),
        ("no-information", {"information": DROP}),
        ("null-information", {"information": None}),
        ("empty-information", {"information": []}),
        ("empty-information-item", {"information": [{}]}),
        ("unknown-information-member", {"information": [{"entity": [{"type": "A"}]}]}),
        ("entity-without-type", {"information": [{"entities": [{"id": "urn:a:1"}]}]}),
        ("entity-bad-id", {"information": [{"entities": [{"type": "A", "id": "x y"}]}]}),
        ("entity-bad-pattern", {"information": [{"entities": [{"type": "A", "idPattern": "("}]}]}),
        ("empty-property-names", {"information": [{"propertyNames": []}]}),
        ("no-endpoint", {"endpoint": DROP}),
        ("endpoint-not-http", {"endpoint": "ftp://town-b.example"}),
        ("bad-mode", {"mode": "shared"}),
        ("unknown-operation", {"operations": ["queryEntity", "teleport"]}),
        ("operations-not-array", {"operations": "queryEntity"}),
        ("expired", {"expiresAt": "2001-01-01T00:00:00Z"}),
        ("expires-not-datetime", {"expiresAt": " 2099-01-01T00:00:00Z"}),
        ("bad-location", {"location": {"type": "Point", "coordinates": [200]}}),
        ("geoproperty-location", {"location": {"type": "GeoProperty", "value": {}}}),
        ("interval-no-start", {"observationInterval": {"endAt": FUTURE}}),
        (
            "interval-backwards",
            {"managementInterval": {"startAt": FUTURE, "endAt": "2020-01-01T00:00:00Z"}},
        ),
        ("bad-context-source-info", {"contextSourceInfo": [{"key": "X"}]}),
        ("management-unknown", {"management": {"retries": 3}}),
        ("management-timeout", {"management": {"timeout": -1}}),
        ("management-cache", {"management": {"cacheDuration": "one minute"}}),
        ("bad-scope", {"scope": "Kagawa"}),
        ("empty-name", {"registrationName": ""}),
        ("null-member", {"description": None}),
        ("bad-property-name", {"bad name": 1}),
    ],
)
async def test_invalid_registrations_are_bad_request_data(
    client: httpx.AsyncClient, case: str, change: dict[str, Any]
) -> None:
    body = {**registration(), **change}
    response = await client.post(REGS, json={k: v for k, v in body.items() if v is not DROP})
    assert_problem(response, 400, "BadRequestData")
    assert (await client.get(f"{REGS}/{RIVER}")).status_code == 404, case


@pytest.mark.parametrize(
    ("case", "request_kwargs", "kind"),
    [
        ("invalid-json", {"content": b'{"id": ,}', "headers": {"Content-Type": "application/json"}},
         "InvalidRequest"),
        ("not-an-object", {"json": [registration()]}, "InvalidRequest"),
        ("ld-without-context", {"json": registration(), "headers": LD}, "BadRequestData"),
        ("json-with-context", {"json": {**registration(), "@context": INLINE}}, "BadRequestData"),
        ("ld-with-link", {"json": {**registration(), "@context": INLINE},
                          "headers": {**LD, **_link(CORE_CONTEXT)}}, "BadRequestData"),
    ],
)  # fmt: skip
async def test_bodies_and_contexts_are_checked(
    client: httpx.AsyncClient, case: str, request_kwargs: dict[str, Any], kind: str
) -> None:
    assert_problem(await client.post(REGS, **request_kwargs), 400, kind)
    assert (await client.get(f"{REGS}/{RIVER}")).status_code == 404, case


async def test_unsupported_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(REGS, content=b"<x/>", headers={"Content-Type": "text/xml"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        (f"{REGS}/not-a-uri", 400, "BadRequestData"),
        (f"{REGS}/{RIVER}", 404, "ResourceNotFound"),
    ],
)
async def test_retrieve_errors(
    client: httpx.AsyncClient, path: str, status: int, kind: str
) -> None:
    assert_problem(await client.get(path), status, kind)


@pytest.mark.parametrize("accept", ["application/xml", "application/geo+json"])
async def test_unacceptable_media_types_are_406(client: httpx.AsyncClient, accept: str) -> None:
    await register(client, registration())
    headers = {"Accept": accept}
    assert (await client.get(f"{REGS}/{RIVER}", headers=headers)).status_code == 406
    listed = await client.get(REGS, params={"type": "WaterLevel"}, headers=headers)
    assert listed.status_code == 406


# -- @context ------------------------------------------------------------------------------


async def test_names_are_expanded_and_compacted_like_entities(client: httpx.AsyncClient) -> None:
    body = registration(
        information=[{"entities": [{"type": "WaterLevel"}], "propertyNames": ["level", "flow"]}],
        level="a registration property",
    )
    await register(client, {**body, "@context": INLINE}, headers=LD)
    expanded = await get(client)
    assert expanded["information"] == [
        {"entities": [{"type": EX + "WaterLevel"}], "propertyNames": [EX + "level", "flow"]}
    ]
    assert expanded[EX + "level"] == "a registration property"
    url = await _host(client, {"Pegel": EX + "WaterLevel", "stand": EX + "level"})
    german = await get(client, headers=_link(url))
    assert german["information"][0] == {
        "entities": [{"type": "Pegel"}],
        "propertyNames": ["stand", "flow"],
    }
    assert german["stand"] == "a registration property"
    assert "Link" in (await client.get(f"{REGS}/{RIVER}", headers=_link(url))).headers


async def test_core_context_names_match_their_expanded_form(client: httpx.AsyncClient) -> None:
    await register(client, registration())
    assert await found(client, type="WaterLevel") == [RIVER]
    assert await found(client, type=DEFAULT_VOCAB + "WaterLevel") == [RIVER]
    assert await found(client, type=EX + "WaterLevel") == []
    url = await _host(client, {"level": EX + "level"})
    assert await found(client, attrs="level") == [RIVER]
    response = await client.get(REGS, params={"attrs": "level"}, headers=_link(url))
    assert response.json() == []


async def test_ld_json_responses_carry_the_context_in_the_body(client: httpx.AsyncClient) -> None:
    await register(client, registration())
    one = await get(client, headers={"Accept": "application/ld+json"})
    assert one["@context"] == CORE_CONTEXT
    listed = await client.get(
        REGS, params={"type": "WaterLevel"}, headers={"Accept": "application/ld+json"}
    )
    assert [r["@context"] for r in listed.json()] == [CORE_CONTEXT]


async def _host(client: httpx.AsyncClient, context: dict[str, Any]) -> str:
    response = await client.post(f"{API}/jsonldContexts", json={"@context": context})
    assert response.status_code == 201, response.text
    details = await client.get(response.headers["location"], params={"details": "true"})
    url: str = details.json()["URL"]
    return url


# -- query (clauses 5.10.2, 5.12) ----------------------------------------------------------

SOURCES: dict[str, dict[str, Any]] = {
    "river": registration(
        "urn:ngsi-ld:ContextSourceRegistration:river",
        information=[
            {"entities": [{"type": "WaterLevel", "id": "urn:ngsi-ld:WaterLevel:001"}]},
            {"entities": [{"type": "Rain", "idPattern": "^urn:ngsi-ld:Rain:b"}]},
        ],
        location={"type": "Point", "coordinates": [134.05, 34.34]},
        town="B",
    ),
    "parking": registration(
        "urn:ngsi-ld:ContextSourceRegistration:parking",
        information=[
            {
                "entities": [{"type": "OffStreetParking"}],
                "propertyNames": ["availableSpotNumber"],
                "relationshipNames": ["refPointOfInterest"],
            }
        ],
        scope="/Kagawa/TownC",
        town="C",
    ),
    # Without entities: a source of temperatures of any Entity.
    "anything": registration(
        "urn:ngsi-ld:ContextSourceRegistration:anything",
        information=[{"propertyNames": ["temperature"]}],
        operationSpace={
            "type": "Polygon",
            "coordinates": [[[134.0, 34.3], [134.1, 34.3], [134.1, 34.4], [134.0, 34.3]]],
        },
        scope="/Kagawa/TownB",
    ),
    # With time intervals: a source of history, found by temporal queries only.
    "history": registration(
        "urn:ngsi-ld:ContextSourceRegistration:history",
        information=[{"entities": [{"type": "WaterLevel"}]}],
        observationInterval={"startAt": "2020-01-01T00:00:00Z", "endAt": "2021-01-01T00:00:00Z"},
        managementInterval={"startAt": "2022-01-01T00:00:00Z"},
    ),
}


@pytest.fixture
async def sources(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for body in SOURCES.values():
        await register(client, copy.deepcopy(body))
    return client


def _ids(*names: str) -> list[str]:
    return sorted(f"urn:ngsi-ld:ContextSourceRegistration:{n}" for n in names)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # A RegistrationInfo without entities matches any type (clause 5.12).
        ({"type": "WaterLevel"}, ["anything", "river"]),
        ({"type": "WaterLevel,OffStreetParking"}, ["anything", "parking", "river"]),
        ({"type": "WaterLevel;Rain"}, ["anything"]),
        ({"type": "Rain", "id": "urn:ngsi-ld:Rain:b1"}, ["anything", "river"]),
        ({"type": "Rain", "id": "urn:ngsi-ld:Rain:c1"}, ["anything"]),
        ({"type": "WaterLevel", "id": "urn:ngsi-ld:WaterLevel:002"}, ["anything"]),
        ({"type": "WaterLevel", "idPattern": "001$"}, ["anything", "river"]),
        ({"type": "WaterLevel", "idPattern": "002$"}, ["anything"]),
        ({"type": "Rain", "idPattern": "anything"}, ["anything", "river"]),
        # One without propertyNames and relationshipNames matches any Attribute.
        ({"attrs": "temperature"}, ["anything", "river"]),
        ({"attrs": "availableSpotNumber,humidity"}, ["parking", "river"]),
        ({"type": "OffStreetParking", "attrs": "refPointOfInterest"}, ["parking"]),
        ({"type": "OffStreetParking", "attrs": "humidity"}, []),
        # The Attributes a q names are matched like attrs (clause 5.10.2.4).
        ({"q": "humidity>20"}, ["river"]),
        ({"type": "OffStreetParking", "q": "availableSpotNumber>0"}, ["parking"]),
        ({"attrs": "temperature", "csf": 'town=="B"'}, ["river"]),
        ({"attrs": "availableSpotNumber,temperature", "scopeQ": "/Kagawa/#"},
         ["anything", "parking"]),
    ],
)  # fmt: skip
async def test_query_matches_information(
    sources: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await found(sources, **params) == _ids(*expected)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"georel": "near;maxDistance==2000", "coordinates": "[134.06,34.34]"}, ["river"]),
        ({"georel": "near;maxDistance==200", "coordinates": "[134.06,34.34]"}, []),
        (
            {"georel": "within", "geometry": "Polygon",
             "coordinates": "[[[134,34],[135,34],[135,35],[134,35],[134,34]]]"},
            ["river"],
        ),
        (
            {"georel": "intersects", "geometry": "Point", "coordinates": "[134.09,34.31]",
             "geoproperty": "operationSpace"},
            ["anything"],
        ),
        # An area that meets the query polygon may hold Entities within it (clause 5.10.2.4).
        (
            {"georel": "within", "geometry": "Polygon", "geoproperty": "operationSpace",
             "coordinates": "[[[134.05,34.2],[134.2,34.2],[134.2,34.5],[134.05,34.5],[134.05,34.2]]]"},
            ["anything"],
        ),
        ({"georel": "near;maxDistance==2000", "coordinates": "[0,0]"}, []),
        (
            {"georel": "near;maxDistance==2000", "coordinates": "[134.06,34.34]",
             "geoproperty": "observationSpace"},
            [],
        ),
    ],
)  # fmt: skip
async def test_query_matches_geometries(
    sources: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    query = {"geometry": "Point", "attrs": "temperature", **params}
    assert await found(sources, **query) == _ids(*expected)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["anything", "river"]),
        ({"timerel": "before", "timeAt": "2020-06-01T00:00:00Z"}, ["history"]),
        ({"timerel": "before", "timeAt": "2019-06-01T00:00:00Z"}, []),
        ({"timerel": "after", "timeAt": "2020-12-01T00:00:00Z"}, ["history"]),
        ({"timerel": "after", "timeAt": "2021-06-01T00:00:00Z"}, []),
        (
            {"timerel": "between", "timeAt": "2019-01-01T00:00:00Z",
             "endTimeAt": "2020-02-01T00:00:00Z"},
            ["history"],
        ),
        ({"timerel": "after", "timeAt": "2030-01-01T00:00:00Z", "timeproperty": "modifiedAt"},
         ["history"]),
        ({"timerel": "before", "timeAt": "2021-06-01T00:00:00Z", "timeproperty": "createdAt"},
         []),
    ],
)  # fmt: skip
async def test_query_matches_time_intervals(
    sources: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await found(sources, attrs="temperature", **params) == _ids(*expected)


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({}, "BadRequestData"),
        ({"id": RIVER}, "BadRequestData"),
        ({"type": "A", "id": "not a uri"}, "BadRequestData"),
        ({"type": "A", "idPattern": "("}, "BadRequestData"),
        ({"q": "(level"}, "BadRequestData"),
        ({"type": "A", "csf": "town=="}, "BadRequestData"),
        ({"type": "A;;B"}, "BadRequestData"),
        ({"georel": "within"}, "BadRequestData"),
        ({"type": "A", "timerel": "before"}, "BadRequestData"),
        ({"type": "A", "timerel": "after", "timeAt": "yesterday"}, "BadRequestData"),
        ({"type": "A", "limit": "-1"}, "BadRequestData"),
        ({"type": "A", "options": "keyValues"}, "InvalidRequest"),
        ({"type": "A", "geoQ": "x"}, "InvalidRequest"),
    ],
)
async def test_invalid_queries(
    client: httpx.AsyncClient, params: dict[str, str], kind: str
) -> None:
    assert_problem(await client.get(REGS, params=params), 400, kind)


async def test_expired_registrations_are_not_discovered(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await register(client, registration(expiresAt=FUTURE))
    assert await found(client, type="WaterLevel") == [RIVER]

    def expire(doc: dict[str, Any]) -> dict[str, Any]:
        # The store holds what the API accepted; only time passing makes it expire.
        doc["members"]["expiresAt"] = "2001-01-01T00:00:00Z"
        return doc

    await app.state.services.store.update_registration("", RIVER, expire)
    assert await found(client, type="WaterLevel") == []
    assert (await get(client))["expiresAt"] == "2001-01-01T00:00:00Z"


async def test_query_pages_with_count_and_links(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await register(client, registration(f"urn:ngsi-ld:ContextSourceRegistration:{n}"))
    response = await client.get(
        REGS, params={"type": "WaterLevel", "limit": "2", "offset": "2", "count": "true"}
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [
        "urn:ngsi-ld:ContextSourceRegistration:2",
        "urn:ngsi-ld:ContextSourceRegistration:3",
    ]
    assert response.headers["NGSILD-Results-Count"] == "5"
    links = response.headers["Link"].split(",")
    assert f'<{REGS}?type=WaterLevel&count=true&limit=2&offset=0>;rel="prev"' in links[0]
    assert f'<{REGS}?type=WaterLevel&count=true&limit=2&offset=4>;rel="next"' in links[1]
    only_count = await client.get(
        REGS, params={"type": "WaterLevel", "limit": "0", "count": "true"}
    )
    assert only_count.json() == [] and only_count.headers["NGSILD-Results-Count"] == "5"


# -- update and delete -----------------------------------------------------------------------


async def test_update_merges_the_fragment(client: httpx.AsyncClient) -> None:
    await register(client, registration(expiresAt=FUTURE, town="B"))
    before = await get(client, params={"options": "sysAttrs"})
    fragment = {"endpoint": "http://town-b.example:9000", "expiresAt": None, "town": None}
    response = await client.patch(f"{REGS}/{RIVER}", json={**fragment, "mode": "redirect"})
    assert response.status_code == 204 and response.content == b""
    after = await get(client, params={"options": "sysAttrs"})
    assert after["endpoint"] == "http://town-b.example:9000" and after["mode"] == "redirect"
    assert "expiresAt" not in after and "town" not in after
    assert after["information"] == before["information"]
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


async def test_update_expands_names_with_its_own_context(client: httpx.AsyncClient) -> None:
    await register(client, registration())
    fragment = {"information": [{"entities": [{"type": "WaterLevel"}]}], "@context": INLINE}
    response = await client.patch(f"{REGS}/{RIVER}", json=fragment, headers=LD)
    assert response.status_code == 204
    assert (await get(client))["information"] == [{"entities": [{"type": EX + "WaterLevel"}]}]


@pytest.mark.parametrize(
    ("fragment", "status", "kind"),
    [
        ({"type": "Building"}, 400, "BadRequestData"),
        ({"id": "urn:ngsi-ld:ContextSourceRegistration:other"}, 400, "BadRequestData"),
        ({"information": None}, 400, "BadRequestData"),
        ({"endpoint": "urn:ngsi-ld:null"}, 400, "BadRequestData"),
        ({"mode": "shared"}, 400, "BadRequestData"),
        ({"expiresAt": "2001-01-01T00:00:00Z"}, 400, "BadRequestData"),
        ({}, 400, "BadRequestData"),
        ([{"endpoint": "http://x.example"}], 400, "InvalidRequest"),
    ],
)
async def test_invalid_updates_change_nothing(
    client: httpx.AsyncClient, fragment: Any, status: int, kind: str
) -> None:
    await register(client, registration())
    before = await get(client, params={"options": "sysAttrs"})
    assert_problem(await client.patch(f"{REGS}/{RIVER}", json=fragment), status, kind)
    assert await get(client, params={"options": "sysAttrs"}) == before


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("PATCH", f"{REGS}/{RIVER}", 404, "ResourceNotFound"),
        ("PATCH", f"{REGS}/invalidURI", 400, "BadRequestData"),
        ("DELETE", f"{REGS}/{RIVER}", 404, "ResourceNotFound"),
        ("DELETE", f"{REGS}/invalidURI", 400, "BadRequestData"),
    ],
)
async def test_update_and_delete_need_a_known_uri(
    client: httpx.AsyncClient, method: str, path: str, status: int, kind: str
) -> None:
    response = await client.request(method, path, json={"endpoint": "http://x.example"})
    assert_problem(response, status, kind)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_update_and_delete_need_an_id(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, f"{REGS}/", json={"endpoint": "http://x.example"})
    assert response.status_code == 405


async def test_delete(client: httpx.AsyncClient) -> None:
    await register(client, registration())
    response = await client.delete(f"{REGS}/{RIVER}")
    assert response.status_code == 204 and response.content == b""
    assert_problem(await client.get(f"{REGS}/{RIVER}"), 404, "ResourceNotFound")
    assert await found(client, type="WaterLevel") == []


# -- tenants and restarts ------------------------------------------------------------------


async def test_registrations_belong_to_their_tenant(client: httpx.AsyncClient) -> None:
    town_b = {"NGSILD-Tenant": "townb"}
    await register(client, registration(endpoint="http://b.example"), headers=town_b)
    await register(client, registration(endpoint="http://default.example"))
    assert (await get(client, headers=town_b))["endpoint"] == "http://b.example"
    assert (await get(client))["endpoint"] == "http://default.example"
    other = {"NGSILD-Tenant": "townc"}
    assert (await client.get(f"{REGS}/{RIVER}", headers=other)).status_code == 404
    listed = await client.get(REGS, params={"type": "WaterLevel"}, headers=other)
    assert listed.json() == []
    assert (await client.delete(f"{REGS}/{RIVER}", headers=town_b)).status_code == 204
    assert (await get(client))["endpoint"] == "http://default.example"


async def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, durable=True)
    async with client_for(settings) as client:
        await register(client, {**registration(), "@context": INLINE}, headers=LD)
        await client.patch(f"{REGS}/{RIVER}", json={"registrationName": "Town B"})
        before = await get(client, params={"options": "sysAttrs"})
    async with client_for(settings) as client:
        assert await get(client, params={"options": "sysAttrs"}) == before
        assert await found(client, type=EX + "WaterLevel") == [RIVER]


async def test_modes_are_checked_as_clause_4_3_6_3_says(client: httpx.AsyncClient) -> None:
    gauge = "urn:ngsi-ld:WaterLevel:b-1"
    by_type = registration(mode="exclusive")  # a type-only group cannot be exclusive
    response = await client.post(REGS, json=by_type)
    assert response.status_code == 400 and "by id" in response.json()["detail"]
    no_attrs = registration(
        mode="exclusive", information=[{"entities": [{"type": "WaterLevel", "id": gauge}]}]
    )
    response = await client.post(REGS, json=no_attrs)
    assert response.status_code == 400 and "Attributes" in response.json()["detail"]
    writer = registration(mode="auxiliary", operations=["retrieveOps", "updateAttrs"])
    response = await client.post(REGS, json=writer)
    assert response.status_code == 400 and "updateAttrs" in response.json()["detail"]
    assert (await client.get(REGS, params={"type": "WaterLevel"})).json() == []


async def test_exclusive_and_redirect_conflicts_are_409(client: httpx.AsyncClient) -> None:
    gauge = "urn:ngsi-ld:WaterLevel:b-1"
    held = {"id": gauge, "type": "WaterLevel", "level": {"type": "Property", "value": 1}}
    assert (await client.post(f"{API}/entities", json=held)).status_code == 201
    info = [{"entities": [{"type": "WaterLevel", "id": gauge}], "propertyNames": ["level"]}]
    over_local = registration(RIVER + "-1", mode="exclusive", information=info)
    response = await client.post(REGS, json=over_local)
    assert response.status_code == 409 and "level" in response.json()["detail"]
    redirect = registration(RIVER + "-2", mode="redirect", information=info)
    assert (await client.post(REGS, json=redirect)).status_code == 409
    other = [{"entities": [{"type": "WaterLevel", "id": gauge}], "propertyNames": ["flow"]}]
    first = registration(RIVER + "-3", mode="exclusive", information=other)
    assert (await client.post(REGS, json=first)).status_code == 201
    second = registration(RIVER + "-4", mode="exclusive", information=other)
    response = await client.post(REGS, json=second)
    assert response.status_code == 409 and RIVER + "-3" in response.json()["detail"]
