"""One persistent MQTT connection per broker login, bridged from paho-mqtt's thread to asyncio.

paho-mqtt runs the socket on its own network thread (``loop_start``) and reconnects
after a loss. Its callbacks run on that thread, so every piece of state they share with
the event loop is guarded by one lock, and futures are settled only through
``loop.call_soon_threadsafe``.

A publish counts as delivered when paho reports it: for QoS 1 and 2 on the broker's
PUBACK or PUBCOMP, for QoS 0 once the message is written to the socket. The
acknowledgement can arrive before ``publish()`` has returned its message id to us, so an
early one is parked in ``_early`` until the publisher collects it.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cityos.notify.transport import DeliveryFailed

__all__ = ["BrokerLogin", "MqttConnection"]

# paho's default of 20 unacknowledged messages would cap throughput per broker.
_MAX_INFLIGHT = 1000
_KEEPALIVE_S = 30
# paho retries a lost or refused connection after 1, 2, 4 ... up to 10 s.
_RECONNECT_DELAY_S = (1, 10)


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """What makes two endpoints share a connection."""

    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    version: MQTTProtocolVersion


class MqttConnection:
    """A paho client for one :class:`BrokerLogin`, used from the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, login: BrokerLogin) -> None:
        self._loop = loop
        self._login = login
        self._lock = threading.Lock()
        self._started = False
        self._connected = False
        self._error: str | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._early: dict[int, str | None] = {}
        self._ready: list[tuple[asyncio.Future[None], str | None]] = []
        self._client = self._make_client()

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish and wait for the acknowledgement; raises :class:`DeliveryFailed`."""
        await self._ensure_connected()
        try:
            info = self._client.publish(topic, payload, qos)
        except ValueError as exc:
            raise DeliveryFailed(f"MQTT publish refused: {exc}", retryable=False) from None
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # paho saw the connection drop before its on_disconnect callback told us.
            raise DeliveryFailed(f"not connected to MQTT broker {self._address}")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise DeliveryFailed(f"MQTT publish failed: {paho.error_string(info.rc)}")
        ack = self._ack_future(info.mid)
        try:
            await ack
        finally:
            with self._lock:
                if self._acks.get(info.mid) is ack:
                    del self._acks[info.mid]

    def close(self) -> None:
        """Disconnect and stop paho's thread; blocks, so call it in a worker thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()

    async def _ensure_connected(self) -> None:
        with self._lock:
            if self._connected:
                return
            # While paho retries in the background, fail fast with what went wrong last.
            if self._started and self._error is not None:
                raise DeliveryFailed(self._error)
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            start, self._started = not self._started, True
        if start:
            self._client.connect_async(self._login.host, self._login.port, _KEEPALIVE_S)
            self._client.loop_start()
        try:
            await waiter
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _ack_future(self, mid: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        with self._lock:
            if mid in self._early:
                _settle(future, self._early.pop(mid))
            else:
                self._acks[mid] = future
        return future

    def _make_client(self) -> paho.Client:
        login = self._login
        client_id = f"cityos-notify-{uuid.uuid4().hex[:12]}"
        if login.version == MQTTProtocolVersion.MQTTv5:
            # MQTT 5 has clean_start instead; paho refuses clean_session there.
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id, protocol=login.version)
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id, clean_session=True, protocol=login.version
            )
        client.max_inflight_messages_set(_MAX_INFLIGHT)
        client.reconnect_delay_set(*_RECONNECT_DELAY_S)
        if login.username is not None:
            client.username_pw_set(login.username, login.password)
        if login.tls:
            # mqtts brokers are verified against the system CA store.
            client.tls_set_context(ssl.create_default_context())
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # The callbacks below run on paho's network thread.

    def _on_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            self._set_outcome(
                False, f"MQTT broker {self._address} refused the connection: {reason}"
            )
        else:
            self._set_outcome(True, None)

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        self._set_outcome(False, f"cannot connect to MQTT broker {self._address}")

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        error = f"connection to MQTT broker {self._address} lost: {reason}"
        with self._lock:
            # After a refused CONNACK keep the refusal, the more useful of the two.
            if self._connected:
                self._error = error
            self._connected = False
            in_flight, self._acks = list(self._acks.values()), {}
            self._early.clear()
        for future in in_flight:
            self._settle_soon(future, error)

    def _on_publish(
        self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Properties
    ) -> None:
        error = f"MQTT broker refused the message: {reason}" if reason.is_failure else None
        with self._lock:
            future = self._acks.pop(mid, None)
            if future is None:
                self._early[mid] = error
                return
        self._settle_soon(future, error)

    def _set_outcome(self, connected: bool, error: str | None) -> None:
        with self._lock:
            self._connected, self._error = connected, error
            waiters, self._waiters = self._waiters, []
            if connected:
                self._early.clear()
        for waiter in waiters:
            self._settle_soon(waiter, error)

    def _settle_soon(self, future: asyncio.Future[None], error: str | None) -> None:
        # Acknowledgements arrive in bursts; waking the event loop once per burst rather
        # than once per message is what lets one connection carry thousands per second.
        with self._lock:
            self._ready.append((future, error))
            if len(self._ready) > 1:
                return
        try:
            self._loop.call_soon_threadsafe(self._settle_ready)
        except RuntimeError:
            # The event loop is closed: nobody is waiting for these futures any more.
            pass

    def _settle_ready(self) -> None:
        """Runs on the event loop, scheduled by :meth:`_settle_soon`."""
        with self._lock:
            ready, self._ready = self._ready, []
        for future, error in ready:
            _settle(future, error)

    @property
    def _address(self) -> str:
        return f"{self._login.host}:{self._login.port}"


def _settle(future: asyncio.Future[None], error: str | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryFailed(error))
