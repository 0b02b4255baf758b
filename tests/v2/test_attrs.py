"""/v2/entities/{id}/attrs/{attr} and /v2/entities/{id}/attrs/{attr}/value."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cityos.errors import BadRequestData
from cityos.v2.attrs_api import text_value

from .helpers import create, error, get, room

URL = "/v2/entities/Room1/attrs/temperature"


async def test_get_attribute(client: httpx.AsyncClient) -> None:
    await create(client, room(temperature=20))
    assert (await client.get(URL)).json() == {"type": "Number", "value": 20, "metadata": {}}
    error(await client.get("/v2/entities/Room1/attrs/ghost"), 404, "NotFound")
    error(await client.get("/v2/entities/Nope/attrs/temperature"), 404, "NotFound")


async def test_put_attribute_replaces_value_type_and_metadata(client: httpx.AsyncClient) -> None:
    await create(client, room(temperature=20))
    body = {"type": "Float", "value": 25.0, "metadata": {"unitCode": {"value": "CEL"}}}
    assert (await client.put(URL, json=body)).status_code == 204
    assert (await client.get(URL)).json() == {
        "type": "Float",
        "value": 25.0,
        "metadata": {"unitCode": {"type": "Text", "value": "CEL"}},
    }
    error(await client.put("/v2/entities/Room1/attrs/ghost", json=body), 404, "NotFound")


async def test_delete_attribute(client: httpx.AsyncClient) -> None:
    await create(client, room(name={"value": "x"}))
    assert (await client.delete(URL)).status_code == 204
    assert "temperature" not in await get(client, "Room1")
    error(await client.delete(URL), 404, "NotFound")


@pytest.mark.parametrize(
    ("value", "accept", "media", "text"),
    [
        (20, "text/plain", "text/plain", "20"),
        ("warm", "text/plain", "text/plain", '"warm"'),
        (True, "*/*", "text/plain", "true"),
        ({"a": 1}, "application/json", "application/json", '{"a":1}'),
        ([1, 2], "*/*", "application/json", "[1,2]"),
    ],
)
async def test_get_value(
    client: httpx.AsyncClient, value: Any, accept: str, media: str, text: str
) -> None:
    await create(client, room(temperature=value))
    response = await client.get(URL + "/value", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.text == text


async def test_get_value_with_an_unacceptable_accept_is_406(client: httpx.AsyncClient) -> None:
    await create(client, room())
    error(await client.get(URL + "/value", headers={"accept": "image/png"}), 406, "NotAcceptable")


@pytest.mark.parametrize(
    ("content", "media", "expected"),
    [
        ("30", "text/plain", 30),
        ("30.5", "text/plain", 30.5),
        ('"hot"', "text/plain", "hot"),
        ("true", "text/plain", True),
        ("null", "text/plain", None),
        ('{"a": [1]}', "application/json", {"a": [1]}),
    ],
)
async def test_put_value_keeps_type_and_metadata(
    client: httpx.AsyncClient, content: str, media: str, expected: Any
) -> None:
    temperature = {"type": "Celsius", "value": 1, "metadata": {"m": {"value": 2}}}
    await create(client, room() | {"temperature": temperature})
    response = await client.put(URL + "/value", content=content, headers={"content-type": media})
    assert response.status_code == 204, response.text
    attribute = (await client.get(URL)).json()
    assert attribute == {
        "type": "Celsius",
        "value": expected,
        "metadata": {"m": {"type": "Number", "value": 2}},
    }


async def test_put_value_of_a_geo_point_stays_a_geo_point(client: httpx.AsyncClient) -> None:
    await create(client, {"id": "Room1", "location": {"type": "geo:point", "value": "1, 2"}})
    url = "/v2/entities/Room1/attrs/location/value"
    await client.put(url, content='"3, 4"', headers={"content-type": "text/plain"})
    assert (await get(client, "Room1"))["location"]["value"] == "3, 4"
    response = await client.put(url, content='"north"', headers={"content-type": "text/plain"})
    error(response, 400, "BadRequest")
    assert (await get(client, "Room1"))["location"]["value"] == "3, 4"


async def test_put_value_rejects_text_that_is_not_a_value(client: httpx.AsyncClient) -> None:
    await create(client, room())
    response = await client.put(
        URL + "/value", content="warm", headers={"content-type": "text/plain"}
    )
    error(response, 400, "BadRequest")
    error(
        await client.put(URL + "/value", content="1", headers={"content-type": "image/png"}),
        415,
        "UnsupportedMediaType",
    )
    assert (await get(client, "Room1"))["temperature"]["value"] == 21.5


def test_text_value_rules() -> None:
    assert text_value(' "a b" ') == "a b"
    assert text_value("-1e3") == -1000.0
    with pytest.raises(BadRequestData):
        text_value("1,5")
