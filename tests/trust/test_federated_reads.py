"""Data another city answers through a context source registration reaches a caller only
as this City OS's policy lets it see it, like local data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from .conftest import API, LD, City

REMOTE = {
    "id": "urn:ngsi-ld:WaterObserved:kagawa-river",
    "type": "WaterObserved",
    "waterLevel": {"type": "Property", "value": 1.7},
    "operatorPhone": {"type": "Property", "value": "SECRET-remote-phone"},
}


@pytest.fixture
async def neighbour_city() -> AsyncIterator[str]:
    """The other city: a real HTTP server answering NGSI-LD Entity queries."""

    async def entities(request: web.Request) -> web.Response:
        return web.json_response([REMOTE])

    async def entity(request: web.Request) -> web.Response:
        return web.json_response(REMOTE)

    app = web.Application()
    app.router.add_get(f"{API}/entities", entities)
    app.router.add_get(f"{API}/entities/{{entity_id}}", entity)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_remote_entities_are_filtered_by_the_local_policy(
    city: City, neighbour_city: str
) -> None:
    admin = {**city.who("admin"), **LD}
    registration = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "WaterObserved"}]}],
        "endpoint": neighbour_city,
    }
    r = await city.client.post(f"{API}/csourceRegistrations", json=registration, headers=admin)
    assert r.status_code == 201, r.text
    # a viewer may read WaterObserved but not the closed operatorPhone: here nor there
    viewer = {**city.who("viewer"), **LD}
    r = await city.client.get(f"{API}/entities", params={"type": "WaterObserved"}, headers=viewer)
    assert r.status_code == 200, r.text
    ids = {e["id"] for e in r.json()}
    assert REMOTE["id"] in ids
    assert "SECRET-remote-phone" not in r.text and "SECRET-phone-087" not in r.text
    r = await city.client.get(f"{API}/entities/{REMOTE['id']}", headers=viewer)
    assert r.status_code == 200, r.text
    assert "waterLevel" in r.json() and "operatorPhone" not in r.json()
    # the administrator (who may read closed data) sees the remote value
    r = await city.client.get(f"{API}/entities/{REMOTE['id']}", headers=admin)
    assert r.json()["operatorPhone"]["value"] == "SECRET-remote-phone"
