"""Builders and small request helpers shared by the API tests."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from postgres_server import open_test_store

from cityos.app import build_app
from cityos.config import Settings

BASE_URL = "http://cityos.test"
API = "/ngsi-ld/v1"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
# shared/ sits beside the repository, in CI as here.
SDM = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "smart-data-models"


@contextlib.asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on its own store (see postgres_server.open_test_store), for tests that
    need custom Settings."""
    store = open_test_store(settings)
    app = build_app(settings, store)
    await app.state.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
    finally:
        await app.state.shutdown()


def prop(value: Any, **meta: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **meta}


def rel(obj: Any, **meta: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, **meta}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def entity(entity_id: str, entity_type: str = "Thing", **attrs: Any) -> dict[str, Any]:
    """A normalized Entity; values that are not already attributes become Properties."""
    body: dict[str, Any] = {"id": entity_id, "type": entity_type}
    for name, value in attrs.items():
        body[name] = value if _is_attribute(value) else prop(value)
    return body


def _is_attribute(value: Any) -> bool:
    if isinstance(value, dict):
        return "type" in value
    if isinstance(value, list) and value:
        return all(isinstance(v, dict) and "type" in v for v in value)
    return False


def sdm_example(path: str) -> dict[str, Any]:
    """A Smart Data Models NGSI-LD normalized example without its remote @context, so the
    core context (and its default vocabulary) applies."""
    body: dict[str, Any] = json.loads((SDM / path / "example-normalized.jsonld").read_text())
    body.pop("@context", None)
    return copy.deepcopy(body)


async def create(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    response = await client.post(f"{API}/entities", json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response


async def retrieve(client: httpx.AsyncClient, entity_id: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"{API}/entities/{entity_id}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def query(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/entities", params=params)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def ids(entities: list[dict[str, Any]]) -> list[str]:
    return sorted(e["id"] for e in entities)
