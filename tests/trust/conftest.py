"""A City OS with authentication on, a real local OIDC issuer, and the tenant Takamatsu
with a policy, data of every classification and principals of every kind.

Each test runs on SQLite and on PostgreSQL (``backend``). The issuer is a real HTTP server
serving JWKS (tests/oidc_issuer.py); tokens are signed by it and verified by City OS over
HTTP, exactly as with Keycloak. API keys are created through the admin API over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import postgres_server
import pytest
from aiohttp import web
from oidc_issuer import OidcIssuer

from cityos.app import build_app
from cityos.config import Settings
from cityos.storage.postgres import PostgresStore
from cityos.storage.sqlite.store import SQLiteStore

BASE_URL = "http://cityos.test"
API = "/ngsi-ld/v1"
TENANT = "takamatsu"
LD = {"NGSILD-Tenant": TENANT}
V2 = {"Fiware-Service": TENANT}
PERSON = "urn:ngsi-ld:Person:child1"
OTHER_PERSON = "urn:ngsi-ld:Person:child2"

POLICY: dict[str, Any] = {
    "publishOpenData": True,
    "grants": [
        {"roles": ["viewer"], "operations": ["read", "subscribe"]},
        {"roles": ["editor"], "operations": ["read", "write"], "types": ["WaterObserved"]},
        {"roles": ["remover"], "operations": ["delete"], "types": ["WaterObserved"]},
        {"roles": ["shelter"], "operations": ["read"], "types": ["Shelter"]},
        {"roles": ["watch"], "operations": ["read", "subscribe"], "types": ["ChildTag"]},
        {
            "roles": ["kagawa-view"],
            "operations": ["read"],
            "types": ["Sensor"],
            "fromTenants": ["kagawa"],
        },
    ],
    "classification": {
        "types": {"WaterObserved": "open", "Shelter": "closed", "ChildTag": "personal"},
        "attributes": {"operatorPhone": "closed"},
    },
    "dataSubject": {"attribute": "dataSubject"},
}

# Every value a denied caller must never see carries a marker that a leak check looks for.
ENTITIES: list[dict[str, Any]] = [
    {
        "id": "urn:ngsi-ld:WaterObserved:river1",
        "type": "WaterObserved",
        "waterLevel": {"type": "Property", "value": 3.2},
        "operatorPhone": {"type": "Property", "value": "SECRET-phone-087"},
    },
    {
        "id": "urn:ngsi-ld:Shelter:s1",
        "type": "Shelter",
        "capacity": {"type": "Property", "value": "SECRET-capacity-450"},
    },
    {
        "id": "urn:ngsi-ld:Sensor:n1",
        "type": "Sensor",
        "battery": {"type": "Property", "value": "LIMITED-battery-80"},
    },
    {
        "id": "urn:ngsi-ld:ChildTag:t1",
        "type": "ChildTag",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [134.04, 34.34]},
        },
        "note": {"type": "Property", "value": "SECRET-child1-note"},
        "dataSubject": {"type": "Relationship", "object": PERSON},
    },
    {
        "id": "urn:ngsi-ld:ChildTag:t2",
        "type": "ChildTag",
        "note": {"type": "Property", "value": "SECRET-child2-note"},
        "dataSubject": {"type": "Relationship", "object": OTHER_PERSON},
    },
]


@dataclass
class City:
    client: httpx.AsyncClient
    issuer: OidcIssuer
    app: Any
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def who(self, name: str) -> dict[str, str]:
        return dict(self.headers[name])


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server.server() as url, postgres_server.database(url) as database:
        yield database


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _store(backend: str, settings: Settings, request: pytest.FixtureRequest) -> Any:
    if backend == "sqlite":
        return SQLiteStore(settings.sqlite_path, durable=False, history=True)
    url: str = request.getfixturevalue("postgres_url")
    postgres_server.empty(url)
    return PostgresStore(url, durable=False, history=True)


def token_headers(issuer: OidcIssuer, sub: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.token(sub, aud="cityos", **claims)}


@pytest.fixture
async def city(
    tmp_path: Path, issuer: OidcIssuer, backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[City]:
    issuers = tmp_path / "issuers.toml"
    issuers.write_text(
        f'[[issuer]]\nissuer = "{issuer.issuer}"\naudience = "cityos"\n', encoding="utf-8"
    )
    settings = Settings(data_dir=tmp_path, durable=False, auth=True, auth_issuers=str(issuers))
    app = build_app(settings, _store(backend, settings, request))
    await app.state.startup()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        town = City(client, issuer, app)
        tok = lambda sub, **kw: token_headers(issuer, sub, **kw)  # noqa: E731
        town.headers = {
            "anonymous": {},
            "admin": tok("mayor", tenants=[TENANT], roles=["admin"]),
            "viewer": tok("clerk", tenants=[TENANT], roles=["viewer"]),
            "editor": tok("river-office", tenants=[TENANT], roles=["editor"]),
            "remover": tok("janitor", tenants=[TENANT], roles=["remover"]),
            "shelter": tok("bousai", tenants=[TENANT], roles=["shelter"]),
            "watch": tok("svc", tenants=[TENANT], roles=["watch"], azp="mimamori"),
            "guardian": tok("hanako", tenants=[TENANT], roles=[], persons=[PERSON]),
            "outsider": tok("kagawa-admin", tenants=["kagawa"], roles=["admin"]),
            "neighbour": tok("kagawa-clerk", tenants=["kagawa"], roles=["kagawa-view"]),
        }
        admin = {**town.headers["admin"], **LD}
        r = await client.put("/cityos/v1/policy", json=POLICY, headers=admin)
        assert r.status_code == 204, r.text
        for entity in ENTITIES:
            r = await client.post(f"{API}/entities", json=entity, headers=admin)
            assert r.status_code == 201, r.text
        try:
            yield town
        finally:
            await app.state.shutdown()


@dataclass
class Inbox:
    url: str
    received: list[Any] = field(default_factory=list)

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} notifications arrived")
            await asyncio.sleep(0.01)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    """A real HTTP receiver of notifications on a free loopback port."""
    box = Inbox("")

    async def handle(request: web.Request) -> web.Response:
        box.received.append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/notify", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    box.url = f"http://127.0.0.1:{port}/notify"
    try:
        yield box
    finally:
        await runner.cleanup()
