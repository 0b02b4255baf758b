"""``cityos import --from-orion`` as a process, reading a real NGSI-v2 server over HTTP.

The Orion is played by a second ``cityos serve`` (its /v2 API is Orion-compatible) and,
for Entities Orion holds but City OS cannot map, by a small local server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import Server, start_server

SERVICE = {"Fiware-Service": "Takamatsu", "Fiware-ServicePath": "/river"}


def _gauge(n: int) -> dict[str, Any]:
    return {
        "id": f"gauge-{n:04}",
        "type": "WaterLevelGauge",
        "level": {
            "type": "Number",
            "value": n / 100,
            "metadata": {"unit": {"type": "Text", "value": "m"}},
        },
        "observed": {"type": "DateTime", "value": "2026-11-01T00:00:00.000Z"},
        "location": {
            "type": "geo:json",
            "value": {"type": "Point", "coordinates": [134.05, 34.34]},
        },
    }


@pytest.fixture(scope="module")
def orion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("orion") / "data")
    try:
        with httpx.Client(base_url=server.url, headers=SERVICE) as client:
            for start in range(0, 1200, 300):
                batch = {
                    "actionType": "append",
                    "entities": [_gauge(n) for n in range(start, start + 300)],
                }
                assert client.post("/v2/op/update", json=batch).status_code == 204
            park = {"Fiware-Service": "Takamatsu", "Fiware-ServicePath": "/park"}
            park_entity = {
                "id": "bench-1",
                "type": "Bench",
                "free": {"type": "Boolean", "value": True},
            }
            assert client.post("/v2/entities", json=park_entity, headers=park).status_code == 201
        yield server
    finally:
        server.stop()


def _import(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "cityos",
        "import",
        "--from-orion",
        url,
        "--data-dir",
        str(data_dir),
    ]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def test_a_service_path_is_imported_page_by_page_and_kept_as_scope(
    orion: Server, tmp_path: Path
) -> None:
    data = tmp_path / "cityos"
    done = _import(orion.url, data, "--service", "Takamatsu", "--service-path", "/river")
    assert done.returncode == 0, done.stderr
    assert "imported 1200 of 1200 Entities" in done.stdout
    again = _import(orion.url, data, "--service", "Takamatsu", "--service-path", "/river")
    assert again.returncode == 0 and "imported 1200 of 1200" in again.stdout  # updates

    city = start_server(data)
    try:
        listed = httpx.get(
            f"{city.url}/v2/entities", params={"options": "count", "limit": "1"}, headers=SERVICE
        )
        assert listed.headers["Fiware-Total-Count"] == "1200"
        mine = httpx.get(f"{city.url}/v2/entities/gauge-0042", headers=SERVICE).json()
        theirs = httpx.get(f"{orion.url}/v2/entities/gauge-0042", headers=SERVICE).json()
        assert mine == theirs
        ld = httpx.get(
            f"{city.url}/ngsi-ld/v1/entities/urn:ngsi-v2:gauge-0042",
            headers={"NGSILD-Tenant": "takamatsu"},
        ).json()
        assert ld["scope"] == "/river"
        assert ld["location"]["value"] == {"type": "Point", "coordinates": [134.05, 34.34]}
        park = httpx.get(
            f"{city.url}/v2/entities",
            headers={"Fiware-Service": "Takamatsu", "Fiware-ServicePath": "/park"},
        )
        assert park.json() == []  # only the path asked for was imported
    finally:
        city.stop()


class _Orion(BaseHTTPRequestHandler):
    """An Orion holding one Entity City OS can map and one it cannot."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps(
            [
                {"id": "ok-1", "type": "Thing", "n": {"type": "Number", "value": 1}},
                {"id": "bad(1)", "type": "Thing", "n": {"type": "Number", "value": 2}},
            ]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Fiware-Total-Count", "2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def test_an_entity_that_cannot_be_mapped_is_reported_and_the_rest_imported(
    tmp_path: Path,
) -> None:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _Orion)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{fake.server_address[1]}"
        done = _import(url, tmp_path / "cityos")
        assert done.returncode == 1
        assert "imported 1 of 2 Entities" in done.stdout
        assert "failed bad(1):" in done.stderr
    finally:
        fake.shutdown()
        fake.server_close()


def test_an_unreachable_orion_is_a_clear_error(tmp_path: Path) -> None:
    done = _import("http://127.0.0.1:9", tmp_path / "cityos")
    assert done.returncode == 1
    assert "Error:" in done.stderr
