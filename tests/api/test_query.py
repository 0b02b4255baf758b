"""Entity queries: GET /entities and POST /entityOperations/query (GS CIM 009 V1.8.1 clauses
5.7.2, 6.4.3.2, 6.23) with ``type`` (4.17), ``q`` (4.9), ``scopeQ`` (4.19), geo-queries
(4.10), projection, paging and tenants (4.14)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from .helpers import API, ERRORS, create, entity, ids, point, prop, query, rel

W1, W2, W3 = (f"urn:ngsi-ld:WeatherObserved:{n}" for n in (1, 2, 3))
S1 = "urn:ngsi-ld:Sensor:1"
B1, B2 = "urn:ngsi-ld:Building:1", "urn:ngsi-ld:Building:2"
ALL = sorted([W1, W2, W3, S1, B1, B2])
TAKAMATSU = [134.05, 34.34]
KAGAWA = [[[133.5, 34.0], [134.5, 34.0], [134.5, 34.6], [133.5, 34.6], [133.5, 34.0]]]
KYOTO_BLOCK = [[[135.7, 34.9], [135.8, 34.9], [135.8, 35.1], [135.7, 35.1], [135.7, 34.9]]]

ENTITIES: list[dict[str, Any]] = [
    entity(
        W1,
        "WeatherObserved",
        temperature=prop(3.3, observedAt="2026-01-01T00:00:00Z"),
        name="Valladolid",
        address={"city": "Valladolid", "country": "ES"},
        location=point(-4.754444444, 41.640833333),
    )
    | {"scope": "/Spain/Valladolid"},
    entity(
        W2,
        "WeatherObserved",
        temperature=prop(25, observedAt="2026-06-01T00:00:00Z", accuracy=prop(0.5)),
        name="Takamatsu",
        address={"city": "Takamatsu", "country": "JP"},
        location=point(*TAKAMATSU),
    )
    | {"scope": "/Japan/Kagawa/Takamatsu"},
    entity(
        W3,
        "WeatherObserved",
        temperature=prop(15, observedAt="2026-04-01T00:00:00Z", unitCode="CEL"),
        name="Kyoto",
        address={"city": "Kyoto", "country": "JP"},
        location=point(135.76, 35.01),
    )
    | {"scope": ["/Japan/Kyoto", "/Heritage"]},
    entity(S1, "Sensor", temperature=prop(40), controlledBy=rel(B1), location=point(134.06, 34.35)),
    entity(
        B1,
        "Building",
        location={"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": KYOTO_BLOCK}},
    ),
    entity(B2, "Building", name="Annex") | {"type": ["Building", "Sensor"]},
]


@pytest.fixture
async def city(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for body in ENTITIES:
        await create(client, body)
    return client


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "WeatherObserved"}, [W1, W2, W3]),
        ({"type": "Building"}, [B1, B2]),
        ({"type": "WeatherObserved,Sensor"}, [W1, W2, W3, S1, B2]),
        ({"type": "WeatherObserved|Sensor"}, [W1, W2, W3, S1, B2]),
        ({"type": "(Building;Sensor)"}, [B2]),
        ({"type": "(Building;Sensor)|WeatherObserved"}, [W1, W2, W3, B2]),
        ({"type": "Nothing"}, []),
        ({"type": "https://uri.etsi.org/ngsi-ld/default-context/Sensor"}, [S1, B2]),
        ({"id": f"{W1},{W3}", "type": "WeatherObserved"}, [W1, W3]),
        ({"id": f"{W1},{S1}", "type": "WeatherObserved,Sensor"}, [W1, S1]),
        ({"id": W2, "type": "Sensor"}, []),
        ({"idPattern": "^urn:ngsi-ld:WeatherObserved:[12]$", "type": "WeatherObserved"}, [W1, W2]),
        ({"idPattern": "Building", "type": "Sensor"}, [B2]),
    ],
)
async def test_type_and_id_selection(
    city: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert ids(await query(city, **params)) == sorted(expected)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("temperature>20", [W2, S1]),
        ("temperature>=25", [W2, S1]),
        ("temperature<10", [W1]),
        ("temperature<=15", [W1, W3]),
        ("temperature==15", [W3]),
        ("temperature!=15", [W1, W2, S1]),
        ("temperature==10..30", [W2, W3]),
        ("temperature==3.3,40", [W1, S1]),
        ('name=="Kyoto","Takamatsu"', [W2, W3]),
        ('name!="Kyoto"', [W1, W2, B2]),
        ('name~="^Ta"', [W2]),
        ('name~="(?i)^kyo"', [W3]),
        ('address[city]=="Takamatsu"', [W2]),
        ('address[country]=="JP"', [W2, W3]),
        ("temperature.observedAt>=2026-03-01T00:00:00Z", [W2, W3]),
        ("temperature.observedAt<2026-03-01T00:00:00Z", [W1]),
        ("temperature.accuracy<1", [W2]),
        ('temperature.unitCode=="CEL"', [W3]),
        ("controlledBy", [S1]),
        (f'controlledBy=="{B1}"', [S1]),
        ('temperature>20;name=="Takamatsu"', [W2]),
        ('temperature<10|name=="Kyoto"', [W1, W3]),
        ("(temperature<10|temperature>30);location", [W1, S1]),
        ('(name=="Kyoto"|name=="Valladolid");temperature<5', [W1]),
        ('name=="Annex"|(temperature>20;temperature<30)', [W2, B2]),
    ],
)
async def test_q(city: httpx.AsyncClient, q: str, expected: list[str]) -> None:
    assert ids(await query(city, q=q)) == sorted(expected)


@pytest.mark.parametrize(
    ("scope_q", "expected"),
    [
        ("/Spain/Valladolid", [W1]),
        ("/Japan/#", [W2, W3]),
        ("/Japan/+", [W3]),
        ("/Japan/+/Takamatsu", [W2]),
        ("/Japan/Kyoto,/Spain/#", [W1, W3]),
        ("/Heritage;/Japan/#", [W3]),
        ("/#", [W1, W2, W3]),
    ],
)
async def test_scope_q(city: httpx.AsyncClient, scope_q: str, expected: list[str]) -> None:
    assert ids(await query(city, type="WeatherObserved,Sensor,Building", scopeQ=scope_q)) == sorted(
        expected
    )


def _geo(georel: str, geometry: str, coordinates: Any) -> dict[str, str]:
    return {"georel": georel, "geometry": geometry, "coordinates": json.dumps(coordinates)}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (_geo("near;maxDistance==2000", "Point", TAKAMATSU), [W2, S1]),
        (_geo("near;maxDistance==10", "Point", TAKAMATSU), [W2]),
        (_geo("near;minDistance==1000000", "Point", TAKAMATSU), [W1]),
        (_geo("within", "Polygon", KAGAWA), [W2, S1]),
        (_geo("intersects", "Point", [135.76, 35.01]), [W3, B1]),
        (_geo("disjoint", "Polygon", KAGAWA), [W1, W3, B1]),
        (_geo("contains", "Point", [135.75, 35.0]), [B1]),
    ],
)
async def test_geo_query(
    city: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert ids(await query(city, **params)) == sorted(expected)


async def test_near_is_sorted_by_distance(city: httpx.AsyncClient) -> None:
    found = await query(city, **_geo("near;maxDistance==1000000", "Point", [134.06, 34.35]))
    assert [e["id"] for e in found] == [S1, W2, B1, W3]


async def test_geo_query_on_another_geo_property(client: httpx.AsyncClient) -> None:
    await create(
        client,
        entity("urn:ngsi-ld:Site:1", "Site", location=point(0, 0), entrance=point(*TAKAMATSU)),
    )
    params = _geo("near;maxDistance==100", "Point", TAKAMATSU)
    assert ids(await query(client, **params, geoproperty="entrance")) == ["urn:ngsi-ld:Site:1"]
    assert ids(await query(client, **params)) == []


@pytest.mark.parametrize(
    ("params", "expected_ids", "allowed"),
    [
        ({"attrs": "controlledBy"}, [S1], {"id", "type", "controlledBy"}),
        (
            {"type": "WeatherObserved", "attrs": "name"},
            [W1, W2, W3],
            {"id", "type", "scope", "name"},
        ),
        (
            {"attrs": "controlledBy,name"},
            [S1, W1, W2, W3, B2],
            {"id", "type", "scope", "name", "controlledBy"},
        ),
        ({"type": "Sensor", "pick": "id,temperature"}, [S1, B2], {"id", "temperature"}),
        ({"type": "Building", "omit": "type,location"}, [B1, B2], {"id", "name"}),
    ],
)
async def test_projection(
    city: httpx.AsyncClient, params: dict[str, str], expected_ids: list[str], allowed: set[str]
) -> None:
    found = await query(city, **params)
    assert ids(found) == sorted(expected_ids)
    assert set().union(*(set(e) for e in found)) == allowed


async def test_paging_and_count(city: httpx.AsyncClient) -> None:
    response = await city.get(
        f"{API}/entities", params={"type": "WeatherObserved", "limit": "2", "count": "true"}
    )
    assert response.status_code == 200
    assert response.headers["ngsild-results-count"] == "3"
    assert len(response.json()) == 2
    seen: list[str] = []
    for offset in range(4):
        seen += [
            e["id"]
            for e in await query(city, type="WeatherObserved", limit="1", offset=str(offset))
        ]
    assert sorted(seen) == [W1, W2, W3]
    only_count = await city.get(
        f"{API}/entities", params={"type": "Building", "limit": "0", "count": "true"}
    )
    assert only_count.json() == []
    assert only_count.headers["ngsild-results-count"] == "2"
    assert (
        "ngsild-results-count"
        not in (await city.get(f"{API}/entities", params={"type": "Building"})).headers
    )


async def test_default_limit_applies(client: httpx.AsyncClient, settings: Any) -> None:
    for n in range(settings.default_limit + 5):
        await create(client, entity(f"urn:ngsi-ld:Thing:{n:03}"))
    assert len(await query(client, type="Thing")) == settings.default_limit
    assert len(await query(client, type="Thing", limit="100")) == settings.default_limit + 5


# -- POST /entityOperations/query -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"entities": [{"type": "WeatherObserved"}], "q": "temperature>10"}, [W2, W3]),
        ({"entities": [{"type": "Sensor"}, {"id": W1, "type": "WeatherObserved"}]}, [S1, B2, W1]),
        ({"entities": [{"idPattern": ":[23]$", "type": "WeatherObserved"}]}, [W2, W3]),
        ({"entities": [{"type": "WeatherObserved"}], "scopeQ": "/Japan/#"}, [W2, W3]),
        (
            {
                "geoQ": {
                    "geometry": "Point",
                    "coordinates": TAKAMATSU,
                    "georel": "near;maxDistance==2000",
                }
            },
            [W2, S1],
        ),
        (
            {
                "geoQ": {"geometry": "Polygon", "coordinates": str(KAGAWA), "georel": "within"},
                "q": "temperature>30",
            },
            [S1],
        ),
        ({"attrs": ["controlledBy"]}, [S1]),
    ],
)
async def test_post_query(
    city: httpx.AsyncClient, body: dict[str, Any], expected: list[str]
) -> None:
    response = await city.post(f"{API}/entityOperations/query", json={"type": "Query", **body})
    assert response.status_code == 200, response.text
    assert ids(response.json()) == sorted(expected)


async def test_post_query_pages_and_counts(city: httpx.AsyncClient) -> None:
    body = {"type": "Query", "entities": [{"type": "WeatherObserved"}]}
    response = await city.post(
        f"{API}/entityOperations/query", params={"limit": "1", "count": "true"}, json=body
    )
    assert response.status_code == 200
    assert len(response.json()) == 1
    assert response.headers["ngsild-results-count"] == "3"


# -- tenants ----------------------------------------------------------------------------


async def test_tenants_are_isolated(client: httpx.AsyncClient) -> None:
    a, b = {"NGSILD-Tenant": "takamatsu"}, {"NGSILD-Tenant": "kyoto"}
    await create(client, entity("urn:ngsi-ld:Thing:1", name="A"), headers=a)
    await create(client, entity("urn:ngsi-ld:Thing:1", name="B"), headers=b)
    await create(client, entity("urn:ngsi-ld:Thing:2", name="default"))
    for headers, name in ((a, "A"), (b, "B")):
        response = await client.get(f"{API}/entities", params={"type": "Thing"}, headers=headers)
        assert [(e["id"], e["name"]["value"]) for e in response.json()] == [
            ("urn:ngsi-ld:Thing:1", name)
        ]
    assert ids(await query(client, type="Thing")) == ["urn:ngsi-ld:Thing:2"]
    assert (await client.get(f"{API}/entities/urn:ngsi-ld:Thing:2", headers=a)).status_code == 404
    assert (
        await client.delete(f"{API}/entities/urn:ngsi-ld:Thing:1", headers=a)
    ).status_code == 204
    response = await client.get(f"{API}/entities/urn:ngsi-ld:Thing:1", headers=b)
    assert response.json()["name"]["value"] == "B"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/entities?type=Thing", None),
        ("GET", "/entities/urn:ngsi-ld:Thing:1", None),
        ("POST", "/entityOperations/query", {"type": "Query", "entities": [{"type": "Thing"}]}),
        ("GET", "/types", None),
        ("GET", "/attributes", None),
    ],
)
async def test_unknown_tenant_on_read_is_nonexistent_tenant(
    city: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    response = await city.request(
        method, API + path, json=body, headers={"NGSILD-Tenant": "nowhere"}
    )
    assert response.status_code == 404
    problem = response.json()
    assert problem["type"] == ERRORS + "NonexistentTenant"
    assert "nowhere" in problem["detail"]


async def test_create_in_a_tenant_answers_with_the_tenant(client: httpx.AsyncClient) -> None:
    response = await create(
        client, entity("urn:ngsi-ld:Thing:1"), headers={"NGSILD-Tenant": "kagawa"}
    )
    assert response.headers["ngsild-tenant"] == "kagawa"
