"""Notification receivers, each in its own process so the driver's load never slows them:

- :class:`HttpSpec`: an aiohttp low-level server on one or more loopback ports that answers
  every POST with 204, plus optional *silent* endpoints: TCP servers that accept
  connections and read requests but never answer (a dead subscriber).
- :class:`MqttSpec`: a paho-mqtt client subscribed with QoS 1 to a topic filter; each
  message is ``{"metadata": {...}, "body": <Notification>}`` (GS CIM 009 clause 7.2).

Both keep one :data:`Record` per notified Entity, stamped with ``time.monotonic()`` on
arrival (CLOCK_MONOTONIC is system-wide on Linux, so the driver can subtract its own
readings), and count notifications in shared memory, which the driver reads live
(:attr:`Receiver.count`) to hold back its updates when delivery falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from bench.engine import run_with_loop
from bench.procfs import cpu_seconds
from bench.server import HOST, _prepare_child

__all__ = ["HttpSpec", "Inbox", "MqttSpec", "Receiver", "ReceiverFailed", "Record"]

Record = tuple[float, str, str, int, str]
"""(arrival monotonic s, subscriptionId, Entity id, sequence number, Notification id)."""

_START_TIMEOUT_S = 30.0
_MAX_SAMPLES = 5


class ReceiverFailed(RuntimeError):
    """A receiver process did not start (e.g. the MQTT broker cannot be reached)."""


@dataclass(frozen=True)
class HttpSpec:
    ports: int = 1
    silent_ports: int = 0
    attribute: str = "temperature"


@dataclass(frozen=True)
class MqttSpec:
    broker: str
    """``mqtt://host:port``"""
    topic_filter: str
    attribute: str = "temperature"


@dataclass
class Inbox:
    """What a receiver got since it was last asked; ``records`` hold one item per Entity."""

    records: list[Record] = field(default_factory=list)
    malformed: int = 0
    samples: list[str] = field(default_factory=list)
    silent_connections: int = 0
    silent_requests: int = 0


class Receiver:
    """Handle on a receiver process; use it as a context manager so the process stops."""

    def __init__(self, spec: HttpSpec | MqttSpec) -> None:
        context = get_context("spawn")
        self._counter = context.RawValue("q", 0)
        self._conn, child = context.Pipe()
        target = _run_http if isinstance(spec, HttpSpec) else _run_mqtt
        self._process = context.Process(
            target=target, args=(spec, self._counter, child), daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(_START_TIMEOUT_S):
            self.stop()
            raise ReceiverFailed(f"the receiver did not start within {_START_TIMEOUT_S:.0f} s")
        hello = self._conn.recv()
        if "error" in hello:
            self.stop()
            raise ReceiverFailed(f"the receiver did not start: {hello['error']}")
        self.http_ports: list[int] = hello.get("http", [])
        self.silent_ports: list[int] = hello.get("silent", [])

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def count(self) -> int:
        """Notifications received so far (malformed ones too)."""
        return int(self._counter.value)

    def http_uri(self, index: int) -> str:
        return f"http://{HOST}:{self.http_ports[index % len(self.http_ports)]}/notify"

    def silent_uri(self, index: int) -> str:
        return f"http://{HOST}:{self.silent_ports[index]}/notify"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self._process.pid) if self._process.pid else 0.0

    async def take(self) -> Inbox:
        """Everything received since the last call."""
        return await asyncio.to_thread(self._ask, "take")

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError, BrokenPipeError):
            self._conn.send("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def _ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()


class _Collector:
    """Turns arriving Notifications into records; shared by the HTTP and MQTT receivers.

    The MQTT client calls :meth:`add` on paho's network thread while the main thread
    takes, so the swap is locked.
    """

    def __init__(self, counter: Any, attribute: str) -> None:
        self._counter = counter
        self._attribute = attribute
        self._lock = threading.Lock()
        self.inbox = Inbox()

    def add(self, payload: bytes | bytearray, arrival: float, in_body: bool = False) -> None:
        try:
            notification = orjson.loads(payload)
            if in_body:
                notification = notification["body"]
            subscription_id, notification_id = notification["subscriptionId"], notification["id"]
            items = [
                (arrival, subscription_id, entity["id"], int(entity[self._attribute]["value"]))
                for entity in notification["data"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._malformed(f"{exc!r} in {payload[:200]!r}")
        else:
            with self._lock:
                self.inbox.records += [(*item, notification_id) for item in items]
        self._counter.value += 1

    def take(self) -> Inbox:
        with self._lock:
            inbox, self.inbox = self.inbox, Inbox()
        return inbox

    def _malformed(self, message: str) -> None:
        with self._lock:
            self.inbox.malformed += 1
            if len(self.inbox.samples) < _MAX_SAMPLES:
                self.inbox.samples.append(message)


# -- HTTP receiver process ------------------------------------------------------------------


def _run_http(spec: HttpSpec, counter: Any, conn: Connection) -> None:
    _prepare_child(None)  # SIGTERM when the driver dies
    run_with_loop(_serve_http(spec, counter, conn))


async def _serve_http(spec: HttpSpec, counter: Any, conn: Connection) -> None:
    collector = _Collector(counter, spec.attribute)
    silent = _Silent()

    async def answer(request: web.BaseRequest) -> web.Response:
        payload = await request.read()
        collector.add(payload, time.monotonic())
        return web.Response(status=204)

    loop = asyncio.get_running_loop()
    handler = web.Server(answer, access_log=None)
    servers = [await loop.create_server(handler, HOST, 0) for _ in range(spec.ports)]
    holders = [await asyncio.start_server(silent.hold, HOST, 0) for _ in range(spec.silent_ports)]
    conn.send({"http": _ports(servers), "silent": _ports(holders)})
    while await asyncio.to_thread(_next_command, conn) == "take":
        inbox = collector.take()
        inbox.silent_connections, inbox.silent_requests = silent.connections, silent.requests
        conn.send(inbox)
    await handler.shutdown(1.0)


class _Silent:
    """A dead endpoint: accepts, reads and counts requests, never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while chunk := await reader.read(65536):
            self.requests += chunk.count(b"POST ")
        writer.close()


def _ports(servers: list[asyncio.Server]) -> list[int]:
    return [int(server.sockets[0].getsockname()[1]) for server in servers]


def _next_command(conn: Connection) -> str:
    try:
        return str(conn.recv())
    except EOFError:  # the driver is gone
        return "stop"


# -- MQTT receiver process ------------------------------------------------------------------


def _run_mqtt(spec: MqttSpec, counter: Any, conn: Connection) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    _prepare_child(None)
    collector = _Collector(counter, spec.attribute)
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cityos-bench-{time.time_ns()}")
    client.on_connect = lambda c, userdata, flags, code, props: c.subscribe(spec.topic_filter, 1)
    client.on_subscribe = lambda c, userdata, mid, codes, props: subscribed.set()
    client.on_message = lambda c, userdata, message: collector.add(
        message.payload, time.monotonic(), in_body=True
    )
    broker = urlsplit(spec.broker)
    try:
        client.connect(broker.hostname or HOST, broker.port or 1883)
    except OSError as exc:
        conn.send({"error": f"cannot connect to the MQTT broker {spec.broker}: {exc}"})
        return
    client.loop_start()
    if not subscribed.wait(10):
        conn.send({"error": f"no SUBACK from {spec.broker} for {spec.topic_filter}"})
        return
    conn.send({})
    while _next_command(conn) == "take":
        conn.send(collector.take())
    client.disconnect()
    client.loop_stop()
