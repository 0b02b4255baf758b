"""MQTT notification transport (GS CIM 009 V1.8.1 clause 7, "API MQTT Notification Binding").

Clause 7.2 defines the Endpoint URI ``mqtt[s]://[user][:password]@host[:port]/topic[/sub]*``
(ports 1883 and 8883 by default, ``mqtts`` is MQTT over TLS) and the message: a JSON
object whose ``body`` is the Notification and whose ``metadata`` holds what HTTP would
send as headers (Content-Type, Link, receiverInfo, ...). The endpoint's notifierInfo
picks the protocol version (``MQTT-Version``: ``mqtt3.1.1`` or ``mqtt5.0``) and the QoS
(``MQTT-QoS``: 0, 1 or 2).

Each broker login (host, port, TLS, credentials, version) gets one persistent connection,
an :class:`MqttConnection`, which paho-mqtt keeps alive and reconnects on its own
network thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import orjson
from paho.mqtt.enums import MQTTProtocolVersion

from cityos.notify.mqtt_connection import BrokerLogin, MqttConnection
from cityos.notify.transport import DEFAULT_PORTS, DeliveryFailed

if TYPE_CHECKING:
    from cityos.notify.delivery import Delivery

__all__ = [
    "MqttEndpoint",
    "MqttTransport",
    "mqtt_message",
    "parse_mqtt_endpoint",
    "parse_notifier_info",
]

_VERSIONS = {"mqtt3.1.1": MQTTProtocolVersion.MQTTv311, "mqtt5.0": MQTTProtocolVersion.MQTTv5}
_DEFAULT_VERSION = "mqtt3.1.1"


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """An ``mqtt://`` or ``mqtts://`` Endpoint URI, taken apart."""

    tls: bool
    host: str
    port: int
    topic: str
    username: str | None = None
    password: str | None = None


def parse_mqtt_endpoint(uri: str) -> MqttEndpoint:
    """Split an MQTT Endpoint URI (clause 7.2); raises ValueError when it is not one."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{uri!r} is not an mqtt:// or mqtts:// URI")
    if not parts.hostname:
        raise ValueError(f"MQTT endpoint {uri!r} has no host")
    topic = unquote(parts.path[1:])
    if not topic:
        raise ValueError(f"MQTT endpoint {uri!r} has no topic")
    # An unescaped "#" ends the URI path, so look for it in the whole URI.
    if "+" in topic or "#" in topic or "#" in uri:
        raise ValueError(f"MQTT topic in {uri!r} contains a wildcard")
    return MqttEndpoint(
        tls=scheme == "mqtts",
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[scheme],
        topic=topic,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def parse_notifier_info(notifier_info: Mapping[str, str]) -> tuple[int, MQTTProtocolVersion]:
    """QoS and protocol version from an Endpoint's notifierInfo; raises ValueError."""
    qos_text = notifier_info.get("MQTT-QoS", "0").strip()
    if qos_text not in ("0", "1", "2"):
        raise ValueError(f"MQTT-QoS {qos_text!r} is not 0, 1 or 2")
    version_text = notifier_info.get("MQTT-Version", _DEFAULT_VERSION).strip().lower()
    version = _VERSIONS.get(version_text)
    if version is None:
        raise ValueError(f"MQTT-Version {version_text!r} is not mqtt3.1.1 or mqtt5.0")
    return int(qos_text), version


def mqtt_message(headers: Mapping[str, str], body: bytes) -> bytes:
    """``{"metadata": {headers}, "body": <Notification>}`` (clause 7.2).

    ``body`` is already serialized JSON, so it is spliced in rather than parsed again.
    """
    return b'{"metadata":' + orjson.dumps(dict(headers)) + b',"body":' + body + b"}"


class MqttTransport:
    """Publishes deliveries to MQTT brokers, one connection per broker login."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: dict[BrokerLogin, MqttConnection] = {}

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        # paho's disconnect joins its network thread, which blocks.
        await asyncio.gather(*(asyncio.to_thread(c.close) for c in connections))

    async def send(self, delivery: Delivery) -> None:
        try:
            endpoint = parse_mqtt_endpoint(delivery.uri)
            qos, version = parse_notifier_info(delivery.notifier_info)
        except ValueError as exc:
            raise DeliveryFailed(str(exc), retryable=False) from None
        connection = self._connection(endpoint, version)
        payload = delivery.body if delivery.raw else mqtt_message(delivery.headers, delivery.body)
        try:
            async with asyncio.timeout(delivery.timeout):
                await connection.publish(endpoint.topic, payload, qos)
        except TimeoutError:
            raise DeliveryFailed(f"timeout after {delivery.timeout} s") from None

    def _connection(self, endpoint: MqttEndpoint, version: MQTTProtocolVersion) -> MqttConnection:
        if self._loop is None:
            raise RuntimeError("MqttTransport.open() was not called")
        login = BrokerLogin(
            tls=endpoint.tls,
            host=endpoint.host,
            port=endpoint.port,
            username=endpoint.username,
            password=endpoint.password,
            version=version,
        )
        connection = self._connections.get(login)
        if connection is None:
            connection = self._connections[login] = MqttConnection(self._loop, login)
        return connection
