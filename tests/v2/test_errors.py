"""``/version``, the /v2 entry point and Orion's error format with Orion's status codes.

Every malformed request answers ``{"error", "description"}`` and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from cityos.errors import BadRequestData, CityOSError, InternalError
from cityos.v2.errors import orion_error

from .helpers import create, error, get, room


async def test_version_is_shaped_like_orions(client: httpx.AsyncClient) -> None:
    body = (await client.get("/version")).json()
    assert body["orion"]["version"].count(".") == 2
    assert {"uptime", "git_hash", "compile_time", "release_date", "doc"} <= set(body["orion"])
    assert "cityos" in body  # the NGSI-LD members stay


async def test_entry_point_lists_the_resources(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2")
    assert response.json()["entities_url"] == "/v2/entities"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "name"),
    [
        ("PUT", "/v2/entities", {"json": {}}, 405, "MethodNotAllowed"),
        ("PATCH", "/v2/types", {}, 405, "MethodNotAllowed"),
        ("GET", "/v2/nonsense", {}, 400, "BadRequest"),
        ("GET", "/v2/entities/Room1", {}, 404, "NotFound"),
        (
            "POST",
            "/v2/entities",
            {"content": b"{bad", "headers": {"content-type": "application/json"}},
            400,
            "ParseError",
        ),
        (
            "POST",
            "/v2/entities",
            {"content": b"<a/>", "headers": {"content-type": "application/xml"}},
            415,
            "UnsupportedMediaType",
        ),
        ("GET", "/v2/entities", {"headers": {"accept": "application/xml"}}, 406, "NotAcceptable"),
        (
            "POST",
            "/v2/entities",
            {"content": b"", "headers": {"content-type": "application/json"}},
            411,
            "ContentLengthRequired",
        ),
        ("GET", "/v2/entities", {"params": {"limit": "1001"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"params": {"limit": "0"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"params": {"options": "sideways"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"headers": {"fiware-service": "bad-name!"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"headers": {"fiware-servicepath": "no/slash"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"params": {"q": "a=='x"}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"params": {"idPattern": "(("}}, 400, "BadRequest"),
        ("GET", "/v2/entities", {"params": {"georel": "near"}}, 400, "BadRequest"),
    ],
)
async def test_malformed_requests_get_orions_error(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict, status: int, name: str
) -> None:
    error(await client.request(method, path, **kwargs), status, name)


async def test_a_body_without_length_is_411(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b"{}"

    request = client.build_request("POST", "/v2/entities", content=chunks())
    request.headers["content-type"] = "application/json"
    del request.headers["transfer-encoding"]
    error(await client.send(request), 411, "ContentLengthRequired")


async def test_a_body_past_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = {"id": "Big", "blob": {"value": "x" * (17 * 1024 * 1024)}}
    error(await client.post("/v2/entities", json=big), 413, "RequestEntityTooLarge")
    error(await client.get("/v2/entities/Big"), 404, "NotFound")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"type": "Room"},
        {"id": "bad id"},
        {"id": "Room#1"},
        {"id": "Room1", "type": "Ro/om"},
        {"id": "Room1", "dateCreated": {"value": 1}},
        {"id": "Room1", "scope": {"value": 1}},
        {"id": "Room1", "t": {"value": 1, "extra": 2}},
        {"id": "Room1", "t": {"value": 1, "metadata": {"datasetId": {"value": "x"}}}},
        {"id": "Room1", "t": {"value": 1, "metadata": []}},
        {"id": "Room1", "t": {"type": "DateTime", "value": "yesterday"}},
        {"id": "Room1", "t": {"type": "geo:point", "value": "91, 0"}},
        {"id": "Room1", "t": {"type": "geo:json", "value": {"type": "Point"}}},
        {"id": "Room1", "t": {"value": 1, "metadata": {"unitCode": {"value": 3}}}},
    ],
)
async def test_an_invalid_entity_is_400_and_creates_nothing(
    client: httpx.AsyncClient, body: object
) -> None:
    error(await client.post("/v2/entities", json=body), 400, "BadRequest")
    assert (await client.get("/v2/entities")).json() == []


async def test_creating_an_existing_entity_is_422_already_exists(client: httpx.AsyncClient) -> None:
    await create(client, room())
    response = await client.post("/v2/entities", json=room(temperature=99))
    assert error(response, 422, "Unprocessable") == "Already Exists"
    assert (await get(client, "Room1"))["temperature"]["value"] == 21.5


def test_unexpected_errors_are_500_with_a_safe_message() -> None:
    assert orion_error(RuntimeError("secret detail"))[0:2] == (500, "InternalServerError")
    assert "secret" not in orion_error(RuntimeError("secret detail"))[2]
    assert orion_error(InternalError("x"))[0] == 500
    assert orion_error(BadRequestData("x")) == (400, "BadRequest", "x")
    assert orion_error(CityOSError("x"))[0] == 500


async def test_statistics(client: httpx.AsyncClient) -> None:
    body = (await client.get("/statistics")).json()
    assert body["uptime_in_secs"] >= 0


async def test_registrations_are_not_kept_yet(client: httpx.AsyncClient) -> None:
    listed = await client.get("/v2/registrations", params={"options": "count"})
    assert (listed.json(), listed.headers["fiware-total-count"]) == ([], "0")
    body = {
        "dataProvided": {"entities": [{"id": "Room1", "type": "Room"}]},
        "provider": {"http": {"url": "http://x"}},
    }
    error(await client.post("/v2/registrations", json=body), 501, "NotImplemented")
    error(await client.get("/v2/registrations/abc"), 404, "NotFound")


async def test_responses_carry_a_correlator(client: httpx.AsyncClient) -> None:
    generated = await client.get("/v2/entities")
    assert len(generated.headers["fiware-correlator"]) == 36
    echoed = await client.get("/v2/entities/Nope", headers={"fiware-correlator": "abc-1"})
    assert echoed.headers["fiware-correlator"] == "abc-1"
