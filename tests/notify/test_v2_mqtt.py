"""NGSI-v2 Subscriptions notify over MQTT as Orion does: the bare notification, no
clause 7.2 envelope (a real Mosquitto and a real paho subscriber)."""

from __future__ import annotations

import asyncio
import json

import httpx

from .conftest import Subscriber


async def test_a_v2_subscription_publishes_the_bare_notification(
    client: httpx.AsyncClient, mqtt_broker: int, subscriber: Subscriber, topic: str
) -> None:
    subscription = {
        "subject": {"entities": [{"idPattern": ".*", "type": "Room"}]},
        "notification": {"mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_broker}", "topic": topic}},
    }
    created = await client.post("/v2/subscriptions", json=subscription)
    assert created.status_code == 201, created.text
    room = {"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 23}}
    assert (await client.post("/v2/entities", json=room)).status_code == 201
    for _ in range(100):
        if subscriber.messages:
            break
        await asyncio.sleep(0.05)
    message = json.loads(subscriber.messages[0].payload)
    assert set(message) == {"subscriptionId", "data"}
    assert message["data"] == [
        {
            "id": "Room1",
            "type": "Room",
            "temperature": {"type": "Number", "value": 23, "metadata": {}},
        }
    ]
