"""Notifications never silently stop (issue #3): ``cityos serve`` is killed with SIGKILL
while the notifications of acknowledged changes are still pending (their endpoint is
down), restarted on the same data directory, and every one of them is delivered once the
endpoint is up, in the order of the changes, each with the id a receiver de-duplicates by.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import API, free_port, start_server

GAUGE = "urn:ngsi-ld:WaterLevel:kill9"


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        _Receiver.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver_port() -> Iterator[int]:
    _Receiver.received = []
    yield free_port()


def test_pending_notifications_survive_kill_9(tmp_path: Path, receiver_port: int) -> None:
    data = tmp_path / "data"
    endpoint = f"http://127.0.0.1:{receiver_port}/notify"  # nobody listens yet
    first = start_server(data)
    try:
        subscription = {
            "id": "urn:ngsi-ld:Subscription:kill9",
            "type": "Subscription",
            "entities": [{"type": "WaterLevel"}],
            "notification": {"endpoint": {"uri": endpoint}},
        }
        with httpx.Client(base_url=first.url) as client:
            assert client.post(f"{API}/subscriptions", json=subscription).status_code == 201
            gauge = {"id": GAUGE, "type": "WaterLevel", "level": {"type": "Property", "value": 0}}
            assert client.post(f"{API}/entities", json=gauge).status_code == 201
            for level in range(1, 10):
                update = {"level": {"type": "Property", "value": level}}
                response = client.patch(f"{API}/entities/{GAUGE}/attrs", json=update)
                assert response.status_code == 204
    finally:
        first.kill()  # SIGKILL while the notifications wait for their retries
        first.stop()  # closes its log

    receiver = ThreadingHTTPServer(("127.0.0.1", receiver_port), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    second = start_server(data)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_levels()) < 10:
            time.sleep(0.2)
        assert _levels() == list(range(10))  # every change, in the order of the changes
        ids = [n["id"] for n in _Receiver.received]
        assert len(set(ids)) == 10  # one id per notification, repeated only on redelivery
        status = httpx.get(f"{second.url}{API}/subscriptions/urn:ngsi-ld:Subscription:kill9")
        assert status.json()["notification"]["status"] in ("ok", "failed")
    finally:
        second.stop()
        receiver.shutdown()
        receiver.server_close()


def _levels() -> list[int]:
    """Each notified level once, in the order first received."""
    seen: list[int] = []
    for notification in list(_Receiver.received):
        for entity in notification["data"]:
            if entity["id"] == GAUGE and entity["level"]["value"] not in seen:
                seen.append(entity["level"]["value"])
    return seen
