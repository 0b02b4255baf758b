"""The @context registry, /jsonldContexts (GS CIM 009 V1.8.1 clauses 5.13, 6.29-6.30), and
remote @context fetching (clause 5.5.7): fetched once from a real local HTTP server, then
served from the cache; an unreachable URL is LdContextNotAvailable."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cityos.config import Settings

from .helpers import API, CORE_CONTEXT, ERRORS, client_for, create, prop, retrieve

CONTEXTS = f"{API}/jsonldContexts"
TEMPERATURE_IRI = "https://example.org/temperature"
UNREACHABLE = "http://127.0.0.1:9/ctx.jsonld"
CORE_PREFIX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v"


async def _cached(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The Cached contexts other than the built-in core ones."""
    response = await client.get(CONTEXTS, params={"kind": "Cached", "details": "true"})
    return [d for d in response.json() if not d["URL"].startswith(CORE_PREFIX)]


def _link(url: str) -> dict[str, str]:
    return {
        "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    }


@dataclass
class ContextServer:
    """A real HTTP server on an ephemeral port that serves one @context and counts requests."""

    document: dict[str, Any] = field(
        default_factory=lambda: {"@context": {"temp": TEMPERATURE_IRI}}
    )
    hits: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/ctx.jsonld") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def context_server() -> Iterator[ContextServer]:
    state = ContextServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.hits.append(self.path)
            if self.path != "/ctx.jsonld":
                self.send_error(404)
                return
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/ld+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- the registry -----------------------------------------------------------------------


async def test_core_context_is_listed(client: httpx.AsyncClient) -> None:
    response = await client.get(CONTEXTS)
    assert response.status_code == 200
    assert CORE_CONTEXT in response.json()
    details = (await client.get(CONTEXTS, params={"details": "true"})).json()
    core = next(d for d in details if d["URL"] == CORE_CONTEXT)
    assert core["kind"] == "Cached"  # shipped with City OS, as if fetched once
    assert core["localId"]


async def test_host_retrieve_and_delete_a_context(client: httpx.AsyncClient) -> None:
    document = {"temp": TEMPERATURE_IRI, "Sensor": "https://example.org/Sensor"}
    response = await client.post(CONTEXTS, json={"@context": document})
    assert response.status_code == 201
    location = response.headers["location"]
    assert location.startswith(f"{CONTEXTS}/")
    served = await client.get(location)
    assert served.status_code == 200
    assert served.json() == {"@context": document}
    details = (await client.get(location, params={"details": "true"})).json()
    assert details["kind"] == "Hosted"
    assert details["localId"] == location.rsplit("/", 1)[1]
    assert details["createdAt"]
    assert details["URL"] in (await client.get(CONTEXTS)).json()
    assert [
        d["URL"]
        for d in (await client.get(CONTEXTS, params={"kind": "Hosted", "details": "true"})).json()
    ] == [details["URL"]]
    assert (await client.delete(location)).status_code == 204
    gone = await client.get(location)
    assert gone.status_code == 404
    assert gone.json()["type"] == ERRORS + "ResourceNotFound"
    assert details["URL"] not in (await client.get(CONTEXTS)).json()


@pytest.mark.parametrize(
    ("kind", "core_listed"), [("Cached", True), ("Hosted", False), ("ImplicitlyCreated", False)]
)
async def test_kind_filter(client: httpx.AsyncClient, kind: str, core_listed: bool) -> None:
    await client.post(CONTEXTS, json={"@context": {"a": "https://example.org/a"}})
    response = await client.get(CONTEXTS, params={"kind": kind, "details": "true"})
    assert response.status_code == 200
    assert {d["kind"] for d in response.json()} <= {kind}
    assert (CORE_CONTEXT in [d["URL"] for d in response.json()]) is core_listed


async def test_core_context_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    core_id = next(
        d["localId"]
        for d in (await client.get(CONTEXTS, params={"details": "true"})).json()
        if d["URL"] == CORE_CONTEXT
    )
    response = await client.delete(f"{CONTEXTS}/{core_id}")
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert CORE_CONTEXT in (await client.get(CONTEXTS)).json()


async def test_hosted_context_survives_a_restart(settings: Settings) -> None:
    async with client_for(settings) as client:
        location = (
            await client.post(CONTEXTS, json={"@context": {"temp": TEMPERATURE_IRI}})
        ).headers["location"]
    async with client_for(settings) as client:
        assert (await client.get(location)).json() == {"@context": {"temp": TEMPERATURE_IRI}}


# -- remote contexts --------------------------------------------------------------------


async def test_unreachable_context_is_ld_context_not_available(client: httpx.AsyncClient) -> None:
    body = {
        "id": "urn:ngsi-ld:Sensor:1",
        "type": "Sensor",
        "temp": prop(1),
        "@context": [UNREACHABLE, CORE_CONTEXT],
    }
    response = await client.post(
        f"{API}/entities", json=body, headers={"Content-Type": "application/ld+json"}
    )
    assert response.status_code == 503
    problem = response.json()
    assert problem["type"] == ERRORS + "LdContextNotAvailable"
    assert UNREACHABLE in problem["detail"]
    assert (await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:1")).status_code == 404
    query = await client.get(
        f"{API}/entities", params={"type": "Sensor"}, headers=_link(UNREACHABLE)
    )
    assert query.status_code == 503


async def test_context_answering_404_is_ld_context_not_available(
    client: httpx.AsyncClient, context_server: ContextServer
) -> None:
    response = await client.get(
        f"{API}/entities",
        params={"type": "Sensor"},
        headers=_link(context_server.url("/missing.jsonld")),
    )
    assert response.status_code == 503
    assert response.json()["type"] == ERRORS + "LdContextNotAvailable"


async def test_remote_context_is_fetched_once_and_cached(
    client: httpx.AsyncClient, context_server: ContextServer
) -> None:
    url = context_server.url()
    body = {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "temp": prop(21)}
    await create(client, body, headers=_link(url))
    for _ in range(3):
        response = await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:1", headers=_link(url))
        assert response.json()["temp"] == prop(21)
    assert context_server.hits == ["/ctx.jsonld"]
    assert TEMPERATURE_IRI in await retrieve(client, "urn:ngsi-ld:Sensor:1")
    [cached] = await _cached(client)
    assert cached["URL"] == url
    assert cached["numberOfHits"] >= 3
    assert cached["lastUsage"] >= cached["createdAt"]


async def test_cached_context_survives_a_restart(
    settings: Settings, context_server: ContextServer
) -> None:
    url = context_server.url()
    async with client_for(settings) as client:
        await create(
            client,
            {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "temp": prop(1)},
            headers=_link(url),
        )
    async with client_for(settings) as client:
        response = await client.get(f"{API}/entities/urn:ngsi-ld:Sensor:1", headers=_link(url))
        assert response.json()["temp"] == prop(1)
    assert context_server.hits == ["/ctx.jsonld"]


async def test_reload_fetches_again(
    client: httpx.AsyncClient, context_server: ContextServer
) -> None:
    url = context_server.url()
    await client.get(f"{API}/entities", params={"type": "Sensor"}, headers=_link(url))
    [cached] = await _cached(client)
    context_server.document = {"@context": {"temp": "https://example.org/other"}}
    response = await client.delete(f"{CONTEXTS}/{cached['localId']}", params={"reload": "true"})
    assert response.status_code == 204
    assert context_server.hits == ["/ctx.jsonld", "/ctx.jsonld"]
    served = await client.get(f"{CONTEXTS}/{cached['localId']}")
    assert served.json() == {"@context": {"temp": "https://example.org/other"}}
