"""Real outside world for notification delivery: aiohttp receivers and a Mosquitto broker.

``receivers`` starts HTTP receivers on ephemeral ports; each path answers as scripted.
``mqtt_broker`` uses the Mosquitto on 127.0.0.1:1883 when one listens, else starts
``mosquitto`` on a free port; ``auth_broker`` always starts one that requires a password.
``attempts`` records what a Deliverer reports; ``deliverers`` builds started ones with
short timeouts and backoffs and stops them afterwards.
"""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from cityos.notify import Attempt, Deliverer, Delivery

FAST = {"max_attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05}


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_delivery(key: int, uri: str, entity: str = "urn:ngsi-ld:Room:1", **kw: Any) -> Delivery:
    body = b'{"id":"urn:ngsi-ld:Notification:%d","type":"Notification","key":%d,"entity":"%s"}'
    return Delivery(
        key=key,
        tenant=kw.pop("tenant", "city"),
        subscription_id=kw.pop("subscription_id", "urn:ngsi-ld:Subscription:1"),
        entity_id=entity,
        uri=uri,
        headers=kw.pop("headers", {"Content-Type": "application/json"}),
        body=body % (key, key, entity.encode()),
        **kw,
    )


# HTTP receivers


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST. ``script(path, 500, 500)`` answers 500 twice, then 204."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    hanging: set[str] = field(default_factory=set)
    delay: float = 0.0

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *statuses: int) -> None:
        self.scripts[path] = list(statuses)

    def paths(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Request(request.path, dict(request.headers), await request.read()))
        if request.path in self.hanging:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        statuses = self.scripts.get(request.path)
        return web.Response(status=statuses.pop(0) if statuses else 204)


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[], Any]]:
    runners: list[web.AppRunner] = []

    async def start() -> Receiver:
        receiver = Receiver()
        app = web.Application()

        async def dispatch(request: web.Request) -> web.Response:
            # Looked up per request, so a test can replace ``receiver.handle``.
            return await receiver.handle(request)

        app.router.add_post("/{tail:.*}", dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        receiver.port = runner.addresses[0][1]
        runners.append(runner)
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def receiver(receivers: Callable[[], Any]) -> Receiver:
    result: Receiver = await receivers()
    return result


# Deliverers


class Attempts(list[Attempt]):
    """An ``on_attempt`` callback that keeps what it is given."""

    def __call__(self, attempt: Attempt) -> None:
        self.append(attempt)

    def of(self, key: int) -> list[Attempt]:
        return [a for a in self if a.delivery.key == key]

    def finals(self) -> list[Attempt]:
        return [a for a in self if a.final]

    async def wait_finals(self, count: int, timeout: float = 5.0) -> None:
        await wait_until(lambda: len(self.finals()) >= count, timeout)


@pytest.fixture
def attempts() -> Attempts:
    return Attempts()


@pytest.fixture
async def deliverers(attempts: Attempts) -> AsyncIterator[Callable[..., Any]]:
    started: list[Deliverer] = []

    async def start(**options: Any) -> Deliverer:
        deliverer = Deliverer(options.pop("on_attempt", attempts), **{**FAST, **options})
        await deliverer.start()
        started.append(deliverer)
        return deliverer

    yield start
    for deliverer in started:
        await deliverer.stop()


# MQTT brokers


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"No MQTT broker listens on 127.0.0.1:1883 and `{name}` is not installed; "
            "install Mosquitto (apt-get install mosquitto) to run the MQTT tests."
        )
    return path


def start_mosquitto(port: int, config: Path | None = None) -> subprocess.Popen[bytes]:
    """Run ``mosquitto`` on ``port`` (or with ``config``) until it listens."""
    binary = _binary("mosquitto")
    argv = [binary, "-c", str(config)] if config else [binary, "-p", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"mosquitto did not start: {err.decode(errors='replace')}")
        time.sleep(0.02)
    return process


def stop_mosquitto(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.communicate(timeout=5)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., int]]:
    """Starts ``mosquitto`` on a free port, with ``config`` ("{port}" filled in) if given."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: str | None = None) -> int:
        port, path = free_port(), None
        if config is not None:
            path = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
            path.write_text(config.replace("{port}", str(port)))
        processes.append(start_mosquitto(port, path))
        return port

    yield start
    for process in processes:
        stop_mosquitto(process)


@pytest.fixture(scope="session")
def mqtt_broker(mosquitto: Callable[..., int]) -> int:
    """Port of an anonymous Mosquitto on 127.0.0.1."""
    return 1883 if _listening(1883) else mosquitto()


@pytest.fixture(scope="session")
def auth_broker(
    mosquitto: Callable[..., int], tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, str, str]:
    """Port, user and password of a Mosquitto that refuses anonymous clients."""
    passwords: Path = tmp_path_factory.mktemp("passwords") / "passwords"
    user, password = "cityos", "s3cret:with@odd/chars"
    subprocess.run(
        [_binary("mosquitto_passwd"), "-b", "-c", str(passwords), user, password], check=True
    )
    # Started as root, Mosquitto would switch to its own user, who cannot read tmp_path.
    config = (
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwords}\nuser {getpass.getuser()}\n"
    )
    return mosquitto(config), user, password


class Subscriber:
    """A paho client subscribed to ``topic`` at QoS 2, keeping every message it gets."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=2)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, message: self.messages.append(message)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(5), "subscription to the test broker failed"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def topic() -> str:
    return f"cityos/test/{uuid.uuid4().hex}"


@pytest.fixture
def subscriber(mqtt_broker: int, topic: str) -> Iterator[Subscriber]:
    subscriber = Subscriber(mqtt_broker, topic)
    yield subscriber
    subscriber.close()
