"""MQTT notification binding (clause 7.2) against a real Mosquitto and a real paho subscriber."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from cityos.notify.mqtt import MqttEndpoint, mqtt_message, parse_mqtt_endpoint, parse_notifier_info

from .conftest import (
    Attempts,
    Subscriber,
    free_port,
    make_delivery,
    start_mosquitto,
    stop_mosquitto,
    wait_until,
)

V311, V5 = MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5
HEADERS = {
    "Content-Type": "application/json",
    "Link": '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"',
    "Custom-Header": "from receiverInfo",
}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mqtt://broker/notify", MqttEndpoint(False, "broker", 1883, "notify")),
        ("mqtts://broker/a/b/c", MqttEndpoint(True, "broker", 8883, "a/b/c")),
        ("MQTT://Broker:1999/t", MqttEndpoint(False, "broker", 1999, "t")),
        ("mqtt://user@broker/t", MqttEndpoint(False, "broker", 1883, "t", "user")),
        (
            "mqtts://us%40er:p%3Aw@10.0.0.1:8884/room%201/temp",
            MqttEndpoint(True, "10.0.0.1", 8884, "room 1/temp", "us@er", "p:w"),
        ),
    ],
)
def test_parse_mqtt_endpoint(uri: str, expected: MqttEndpoint) -> None:
    assert parse_mqtt_endpoint(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "http://broker/t",
        "mqtt://broker",
        "mqtt://broker/",
        "mqtt:///t",
        "mqtt://b/a/+/c",
        "mqtt://b/a/#",
    ],
)
def test_parse_mqtt_endpoint_refuses(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_mqtt_endpoint(uri)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({}, (0, V311)),
        ({"MQTT-QoS": "1"}, (1, V311)),
        ({"MQTT-QoS": "2", "MQTT-Version": "mqtt5.0"}, (2, V5)),
        ({"MQTT-Version": "mqtt3.1.1"}, (0, V311)),
    ],
)
def test_parse_notifier_info(info: dict[str, str], expected: tuple[int, int]) -> None:
    assert parse_notifier_info(info) == expected


@pytest.mark.parametrize(
    "info", [{"MQTT-QoS": "3"}, {"MQTT-QoS": "one"}, {"MQTT-Version": "mqtt4"}]
)
def test_parse_notifier_info_refuses(info: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        parse_notifier_info(info)


def test_message_is_metadata_and_body() -> None:
    body = b'{"id":"urn:ngsi-ld:Notification:1","type":"Notification","data":[]}'
    assert json.loads(mqtt_message(HEADERS, body)) == {
        "metadata": HEADERS,
        "body": json.loads(body),
    }


@pytest.mark.parametrize("version", ["mqtt3.1.1", "mqtt5.0"])
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publishes_metadata_and_body_at_the_requested_qos(  # noqa: PLR0913
    deliverers: Callable[..., Any],
    attempts: Attempts,
    mqtt_broker: int,
    topic: str,
    subscriber: Subscriber,
    qos: int,
    version: str,
) -> None:
    deliverer = await deliverers()
    info = {"MQTT-QoS": str(qos), "MQTT-Version": version}
    delivery = make_delivery(
        1, f"mqtt://127.0.0.1:{mqtt_broker}/{topic}", headers=HEADERS, notifier_info=info
    )
    deliverer.submit(delivery)
    await attempts.wait_finals(1)
    await wait_until(lambda: len(subscriber.messages) == 1)

    assert [(a.ok, a.final, a.error) for a in attempts] == [(True, True, None)]
    [message] = subscriber.messages
    assert (message.topic, message.qos) == (topic, qos)
    assert json.loads(message.payload) == {"metadata": HEADERS, "body": json.loads(delivery.body)}


async def test_keeps_per_entity_order_at_qos_1(
    deliverers: Callable[..., Any],
    attempts: Attempts,
    mqtt_broker: int,
    topic: str,
    subscriber: Subscriber,
) -> None:
    deliverer = await deliverers()
    uri = f"mqtt://127.0.0.1:{mqtt_broker}/{topic}"
    for key in range(300):
        delivery = make_delivery(
            key, uri, entity=f"urn:ngsi-ld:Room:{key % 10}", notifier_info={"MQTT-QoS": "1"}
        )
        deliverer.submit(delivery)
    await attempts.wait_finals(300)
    await wait_until(lambda: len(subscriber.messages) == 300)

    assert all(a.ok for a in attempts)
    keys_by_entity: dict[str, list[int]] = defaultdict(list)
    for message in subscriber.messages:
        body = json.loads(message.payload)["body"]
        keys_by_entity[body["entity"]].append(body["key"])
    assert len(keys_by_entity) == 10
    assert all(keys == sorted(keys) and len(keys) == 30 for keys in keys_by_entity.values())


async def test_broker_down_is_a_failed_attempt_then_retried(
    deliverers: Callable[..., Any], attempts: Attempts
) -> None:
    port = free_port()
    deliverer = await deliverers()
    deliverer.submit(
        make_delivery(1, f"mqtt://127.0.0.1:{port}/t", notifier_info={"MQTT-QoS": "1"})
    )
    await attempts.wait_finals(1)
    error = f"cannot connect to MQTT broker 127.0.0.1:{port}"
    assert [(a.ok, a.final, a.error) for a in attempts] == [
        (False, False, error),
        (False, False, error),
        (False, True, error),
    ]


async def test_a_bad_notifier_info_fails_at_once(
    deliverers: Callable[..., Any], attempts: Attempts, mqtt_broker: int
) -> None:
    deliverer = await deliverers()
    uri = f"mqtt://127.0.0.1:{mqtt_broker}/t"
    deliverer.submit(make_delivery(1, uri, notifier_info={"MQTT-QoS": "7"}))
    await attempts.wait_finals(1)
    assert [(a.final, a.error) for a in attempts] == [(True, "MQTT-QoS '7' is not 0, 1 or 2")]


@pytest.mark.parametrize("version", ["mqtt3.1.1", "mqtt5.0"])
async def test_user_and_password_from_the_uri(
    deliverers: Callable[..., Any],
    attempts: Attempts,
    auth_broker: tuple[int, str, str],
    version: str,
) -> None:
    port, user, password = auth_broker
    quoted = (
        password.replace("%", "%25").replace(":", "%3A").replace("@", "%40").replace("/", "%2F")
    )
    info = {"MQTT-QoS": "1", "MQTT-Version": version}
    deliverer = await deliverers()
    deliverer.submit(
        make_delivery(1, f"mqtt://{user}:{quoted}@127.0.0.1:{port}/t", notifier_info=info)
    )
    deliverer.submit(
        make_delivery(2, f"mqtt://{user}:wrong@127.0.0.1:{port}/t", notifier_info=info)
    )
    deliverer.submit(make_delivery(3, f"mqtt://127.0.0.1:{port}/t", notifier_info=info))
    await attempts.wait_finals(3)

    assert [(a.ok, a.error) for a in attempts.of(1)] == [(True, None)]
    for key in (2, 3):
        refusals = attempts.of(key)
        assert len(refusals) == 3 and not any(a.ok for a in refusals)
        assert all("refused the connection" in str(a.error) for a in refusals), refusals


async def test_reconnects_after_the_broker_restarts(
    deliverers: Callable[..., Any], attempts: Attempts
) -> None:
    port = free_port()
    broker = start_mosquitto(port)
    try:
        deliverer = await deliverers(max_attempts=20, backoff_initial=0.1, backoff_max=0.3)
        uri, info = f"mqtt://127.0.0.1:{port}/t", {"MQTT-QoS": "1"}
        deliverer.submit(make_delivery(1, uri, notifier_info=info))
        await attempts.wait_finals(1)
        stop_mosquitto(broker)
        deliverer.submit(make_delivery(2, uri, notifier_info=info))
        await wait_until(lambda: len(attempts.of(2)) >= 2)
        broker = start_mosquitto(port)
        await attempts.wait_finals(2, timeout=10)
    finally:
        stop_mosquitto(broker)

    *failures, success = attempts.of(2)
    assert success.ok and success.final
    assert failures and not any(a.ok or a.final for a in failures)
    # "connection ... lost", "not connected to ..." or "cannot connect to ...", by timing.
    assert all(f"MQTT broker 127.0.0.1:{port}" in str(a.error) for a in failures), failures
