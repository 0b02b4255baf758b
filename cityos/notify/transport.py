"""What every notification transport shares: the failure it raises and the endpoint key.

A transport (:mod:`cityos.notify.http`, :mod:`cityos.notify.mqtt`) sends one Delivery
once and raises :class:`DeliveryFailed` when that did not succeed; retrying, ordering and
reporting are :class:`cityos.notify.delivery.Deliverer`'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cityos.notify.delivery import Delivery

__all__ = ["DEFAULT_PORTS", "DeliveryFailed", "EndpointKey", "Transport", "endpoint_key"]

# Clause 5.2.15 (Endpoint) allows http(s); clause 7.2 adds mqtt(s) with ports 1883 and 8883.
DEFAULT_PORTS = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}

EndpointKey = tuple[str, ...]


class DeliveryFailed(Exception):
    """One attempt did not deliver; ``error`` is the short reason put in the Attempt.

    ``retryable=False`` marks failures that another attempt cannot fix, such as an HTTP
    404 or an endpoint URI that names no supported transport.
    """

    def __init__(self, error: str, *, retryable: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


class Transport(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, delivery: Delivery) -> None:
        """Deliver once, or raise :class:`DeliveryFailed`."""
        ...


def endpoint_key(uri: str) -> EndpointKey:
    """The queue a delivery waits in: one per HTTP origin, one per MQTT broker login and topic.

    Deliveries with the same key share ``per_endpoint_concurrency`` lanes, so one dead
    endpoint holds up only its own lanes. URIs that cannot be parsed share one key; their
    attempts fail at once without retry.
    """
    try:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return ("invalid",)
    host = (parts.hostname or "").lower()
    if scheme in ("http", "https"):
        return (scheme, host, str(port))
    if scheme in ("mqtt", "mqtts"):
        return (scheme, host, str(port), parts.username or "", parts.password or "", parts.path)
    return ("invalid",)
