"""GET /v2/entities: id, idPattern, type, typePattern, q, mq, geo-queries, orderBy, paging."""

from __future__ import annotations

import httpx
import pytest

from .helpers import create, error, ids, room

ROOMS = [
    room("Room1", 10, name={"value": "kitchen"}, color={"value": "black"},
         address={"value": {"city": "Takamatsu", "zip": 760}},
         seen={"type": "DateTime", "value": "2024-01-01T00:00:00Z"},
         refBuilding={"type": "Relationship", "value": "Building1"},
         location={"type": "geo:point", "value": "34.3428, 134.0466"}),
    room("Room2", 20, name={"value": "hall"}, color={"value": "red"},
         address={"value": {"city": "Osaka", "zip": 530}},
         seen={"type": "DateTime", "value": "2024-06-01T00:00:00Z"},
         refBuilding={"type": "Relationship", "value": "Building2"},
         location={"type": "geo:point", "value": "34.6937, 135.5023"}),
    room("Room3", 30, color={"value": "light,green"},
         location={"type": "geo:point", "value": "35.6812, 139.7671"}),
    {"id": "Car1", "type": "Car", "speed": {"value": 50, "metadata": {"accuracy": {"value": 0.9}, "unitCode": {"value": "KMH"}}}},
    {"id": "Car2", "type": "Car", "speed": {"value": 80, "metadata": {"accuracy": {"value": 0.5}}}},
]  # fmt: skip


@pytest.fixture
async def rooms(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for body in ROOMS:
        await create(client, body)
    return client


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["Car1", "Car2", "Room1", "Room2", "Room3"]),
        ({"id": "Room1,Car2"}, ["Car2", "Room1"]),
        ({"idPattern": "^Room[12]"}, ["Room1", "Room2"]),
        ({"idPattern": "2$"}, ["Car2", "Room2"]),
        ({"type": "Car"}, ["Car1", "Car2"]),
        ({"type": "Car,Room", "id": "Car1,Room3"}, ["Car1", "Room3"]),
        ({"typePattern": "^R"}, ["Room1", "Room2", "Room3"]),
        ({"typePattern": "^Z"}, []),
        ({"q": "temperature>15"}, ["Room2", "Room3"]),
        ({"q": "temperature>=20;temperature<30"}, ["Room2"]),
        ({"q": "temperature==10..20"}, ["Room1", "Room2"]),
        ({"q": "temperature!=10..20"}, ["Room3"]),
        ({"q": "temperature==10,30"}, ["Room1", "Room3"]),
        ({"q": "temperature:20"}, ["Room2"]),
        ({"q": "color==black,red"}, ["Room1", "Room2"]),
        ({"q": "color!=black,red"}, ["Room3"]),
        ({"q": "color=='light,green'"}, ["Room3"]),
        ({"q": "name~=it"}, ["Room1"]),
        ({"q": "name"}, ["Room1", "Room2"]),
        ({"q": "!name", "type": "Room"}, ["Room3"]),
        ({"q": "address.city==Osaka"}, ["Room2"]),
        ({"q": "address.zip<700"}, ["Room2"]),
        ({"q": "seen>2024-03-01T00:00:00Z"}, ["Room2"]),
        ({"q": "refBuilding==Building2"}, ["Room2"]),
        ({"mq": "speed.accuracy>0.8"}, ["Car1"]),
        ({"mq": "speed.unitCode==KMH"}, ["Car1"]),
        ({"mq": "speed.accuracy"}, ["Car1", "Car2"]),
        (
            {
                "georel": "near;maxDistance:200000",
                "geometry": "point",
                "coords": "34.3428,134.0466",
            },
            ["Room1", "Room2"],
        ),
        (
            {
                "georel": "near;minDistance:200000",
                "geometry": "point",
                "coords": "34.3428,134.0466",
            },
            ["Room3"],
        ),
        ({"georel": "coveredBy", "geometry": "box", "coords": "34,133;35,136"}, ["Room1", "Room2"]),
        (
            {
                "georel": "coveredBy",
                "geometry": "polygon",
                "coords": "34,133;34,136;35,136;35,133;34,133",
            },
            ["Room1", "Room2"],
        ),
        ({"georel": "intersects", "geometry": "point", "coords": "35.6812,139.7671"}, ["Room3"]),
        ({"georel": "equals", "geometry": "point", "coords": "35.6812,139.7671"}, ["Room3"]),
        (
            {"georel": "disjoint", "geometry": "point", "coords": "35.6812,139.7671"},
            ["Room1", "Room2"],
        ),
        (
            {
                "georel": "intersects",
                "geometry": "line",
                "coords": "34.3428,134.0466;34.6937,135.5023",
            },
            ["Room1", "Room2"],
        ),
    ],
)
async def test_selection(
    rooms: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await ids(rooms, **params) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"id": "Room1", "idPattern": "R"},
        {"type": "Room", "typePattern": "R"},
        {"q": "dateModified>2020-01-01"},
        {"q": "temperature>1,2"},
        {"mq": "speed"},
        {"georel": "near;maxDistance:10", "geometry": "box", "coords": "1,1;2,2"},
        {"georel": "within", "geometry": "point", "coords": "1,1"},
        {"georel": "coveredBy", "geometry": "circle", "coords": "1,1"},
        {"georel": "coveredBy", "geometry": "point", "coords": "north"},
        {"orderBy": "temperature,,name"},
        {"offset": "-1"},
    ],
)
async def test_invalid_selections_are_400(rooms: httpx.AsyncClient, params: dict[str, str]) -> None:
    error(await rooms.get("/v2/entities", params=params), 400, "BadRequest")


async def test_order_by_limit_offset_and_count(rooms: httpx.AsyncClient) -> None:
    params = {
        "type": "Room",
        "orderBy": "!temperature",
        "limit": "2",
        "offset": "1",
        "options": "count",
    }
    response = await rooms.get("/v2/entities", params=params)
    assert response.headers["fiware-total-count"] == "3"
    assert [e["id"] for e in response.json()] == ["Room2", "Room1"]
    by_id = await rooms.get(
        "/v2/entities", params={"orderBy": "id", "type": "Car", "attrs": "speed"}
    )
    assert [e["id"] for e in by_id.json()] == ["Car1", "Car2"]
    by_date = await rooms.get("/v2/entities", params={"orderBy": "!dateCreated", "limit": "1"})
    assert [e["id"] for e in by_date.json()] == ["Car2"]


async def test_default_page_is_20_and_creation_ordered(client: httpx.AsyncClient) -> None:
    for i in range(25):
        await create(client, {"id": f"E{i:02d}"})
    response = await client.get("/v2/entities", params={"options": "count"})
    assert [e["id"] for e in response.json()] == [f"E{i:02d}" for i in range(20)]
    assert response.headers["fiware-total-count"] == "25"


async def test_query_representations(rooms: httpx.AsyncClient) -> None:
    params = {"type": "Car", "attrs": "speed", "options": "keyValues"}
    assert (await rooms.get("/v2/entities", params=params)).json() == [
        {"id": "Car1", "type": "Car", "speed": 50},
        {"id": "Car2", "type": "Car", "speed": 80},
    ]
    params["options"] = "values"
    assert (await rooms.get("/v2/entities", params=params)).json() == [[50], [80]]
    params = {"type": "Car", "metadata": "unitCode"}
    cars = (await rooms.get("/v2/entities", params=params)).json()
    assert cars[0]["speed"]["metadata"] == {"unitCode": {"type": "Text", "value": "KMH"}}
    assert cars[1]["speed"]["metadata"] == {}
