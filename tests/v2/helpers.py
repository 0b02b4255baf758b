"""Builders and small request helpers shared by the NGSI-v2 tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from cityos.app import build_app
from cityos.config import Settings
from cityos.core.contexts import ContextRegistry
from cityos.storage.sqlite.store import SQLiteStore
from cityos.v2.ids import IdMapping
from cityos.v2.names import Names

LD = "/ngsi-ld/v1"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


class _NoContexts:
    """A context store with nothing in it: the core context alone, for unit tests."""

    async def save_context(self, entry: object) -> None: ...
    async def delete_context(self, url: str) -> None: ...
    async def load_contexts(self) -> list[Any]:
        return []


async def _no_fetch(url: str) -> bytes:
    raise AssertionError(f"unit tests fetch no @context ({url})")


def default_names() -> Names:
    """The v2 names of the default settings: the core context, prefix urn:ngsi-v2:."""
    registry = ContextRegistry(_NoContexts(), _no_fetch)
    return Names(registry.default, IdMapping("urn:ngsi-v2:"))


@contextlib.asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on ``settings``' SQLite file, started and stopped (a restart is two)."""
    app = build_app(settings, SQLiteStore(settings.sqlite_path, durable=settings.durable))
    await app.state.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cityos.test") as client:
            yield client
    finally:
        await app.state.shutdown()


def room(entity_id: str = "Room1", temperature: Any = 21.5, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": entity_id,
        "type": "Room",
        "temperature": {"type": "Number", "value": temperature},
    }
    body.update(attrs)
    return body


async def create(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    response = await client.post("/v2/entities", json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response


async def get(client: httpx.AsyncClient, entity_id: str, **kwargs: Any) -> Any:
    response = await client.get(f"/v2/entities/{entity_id}", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/v2/entities", params=params)
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json())


def error(response: httpx.Response, status: int, name: str) -> str:
    """Asserts Orion's error shape; returns the description."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "description"}, body
    assert body["error"] == name, body
    assert isinstance(body["description"], str) and body["description"]
    return str(body["description"])
