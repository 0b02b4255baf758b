"""Smoke tests: ``cityos serve`` as a subprocess, called over a real socket.

The durability test kills the server with SIGKILL right after 201s and restarts it on the
same data directory: every acknowledged Entity must still be there (an acknowledged write
is durable, ``cityos.storage.base``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import API, Server, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("serve") / "data")
    try:
        yield running
    finally:
        running.stop()


def _thing(n: int) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Thing:{n:04}",
        "type": "Thing",
        "n": {"type": "Property", "value": n},
    }


def test_create_and_retrieve_over_a_socket(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        body = _thing(1) | {
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [134.05, 34.34]},
            }
        }
        created = client.post(f"{API}/entities", json=body)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"{API}/entities/{body['id']}"
        response = client.get(created.headers["location"])
        assert response.status_code == 200
        assert response.json() == body
        assert client.get(f"{API}/entities/{body['id']}/").status_code == 200


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_post_without_content_length_is_length_required(server: Server) -> None:
    request = (
        f"POST {API}/entities HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    status, headers, body = _raw(server.port, request)
    assert status == 411
    assert headers["content-type"] == "application/json"
    problem = json.loads(body)
    assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
    assert problem["title"] and problem["detail"]


async def _create_all(url: str, count: int, kill_after: int, server: Server) -> list[str]:
    acknowledged: list[str] = []
    limits = httpx.Limits(max_connections=50)

    async def one(client: httpx.AsyncClient, n: int) -> None:
        try:
            response = await client.post(f"{API}/entities", json=_thing(n))
        except httpx.TransportError:
            return  # in flight when the server died: never acknowledged
        if response.status_code == 201:
            acknowledged.append(_thing(n)["id"])
            if len(acknowledged) == kill_after:
                server.process.send_signal(signal.SIGKILL)  # no await between the 201 and the kill

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))
    return acknowledged


@pytest.mark.parametrize("kill_after", [200, 120])
def test_acknowledged_entities_survive_kill_9(tmp_path: Path, kill_after: int) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        acknowledged = asyncio.run(_create_all(first.url, 200, kill_after, first))
        first.kill()
    finally:
        first.stop()
    assert len(acknowledged) >= kill_after
    assert first.process.returncode == -signal.SIGKILL
    second = start_server(data_dir)
    try:
        with httpx.Client(base_url=second.url) as client:
            response = client.get(
                f"{API}/entities", params={"type": "Thing", "limit": "1000", "count": "true"}
            )
            assert response.status_code == 200
            stored = {e["id"]: e for e in response.json()}
            assert set(acknowledged) <= set(stored)
            assert int(response.headers["ngsild-results-count"]) == len(stored)
            for entity_id in acknowledged:
                n = int(entity_id.rsplit(":", 1)[1])
                assert stored[entity_id] == _thing(n)
    finally:
        second.stop()
