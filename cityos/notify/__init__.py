"""Notification delivery: sends each Notification to its Endpoint and reports every attempt.

GS CIM 009 V1.8.1 clause 5.8 (Subscriptions) and clause 7 (MQTT notification binding).
The modules::

    delivery.py         Delivery, Attempt, Deliverer: queues, per-Entity order, retries
    transport.py        DeliveryFailed, the Transport protocol, endpoint keys
    http.py             HttpTransport: POST over one shared aiohttp session
    mqtt.py             MqttTransport: clause 7.2 Endpoint URI and message
    mqtt_connection.py  MqttConnection: one paho-mqtt connection per broker login
"""

from __future__ import annotations

from cityos.notify.delivery import Attempt, Deliverer, Delivery

__all__ = ["Attempt", "Deliverer", "Delivery"]
