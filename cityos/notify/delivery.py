"""The notification delivery engine: queues, ordering, retries (GS CIM 009 V1.8.1 clause 5.8).

The producer writes each Notification to an outbox row in the same transaction as the
change that caused it, then ``submit()``s a :class:`Delivery` per row. The
:class:`Deliverer` sends it over HTTP (:mod:`cityos.notify.http`) or MQTT
(:mod:`cityos.notify.mqtt`, clause 7) and reports every try as an :class:`Attempt`; an
Attempt with ``final=True`` means the row may be deleted.

Queueing, drawn once::

    Deliverer
     └── one queue per endpoint (HTTP origin; MQTT broker login + topic)
          └── per_endpoint_concurrency lanes, picked by hash(entity_id)
               └── deliveries in key order; the lane retries its head before moving on

So a dead endpoint delays only its own lanes, and deliveries of one Entity to one
endpoint are attempted in ``key`` order. Delivery is at least once: a stop, a crash or a
lost acknowledgement means the row is sent again later. ``cancel()`` forgets the
deliveries of a deleted Subscription, so its retries hold up no lane.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from cityos.core.model import now_iso
from cityos.notify.http import HttpTransport
from cityos.notify.mqtt import MqttTransport
from cityos.notify.transport import DeliveryFailed, EndpointKey, Transport, endpoint_key

__all__ = ["Attempt", "Deliverer", "Delivery", "backoff_delay"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Notification to send to one Endpoint (clause 5.2.15)."""

    key: int
    """Outbox row id: unique, increasing in commit order."""
    tenant: str
    subscription_id: str
    entity_id: str
    """Deliveries of one Entity to one endpoint keep their ``key`` order."""
    uri: str
    """``http://``, ``https://``, ``mqtt://`` or ``mqtts://`` Endpoint URI."""
    headers: Mapping[str, str]
    """HTTP headers to send; for MQTT, the message's ``metadata`` (clause 7.2)."""
    body: bytes
    """The serialized Notification (JSON)."""
    notifier_info: Mapping[str, str] = field(default_factory=dict)
    """Endpoint notifierInfo, e.g. ``{"MQTT-QoS": "1", "MQTT-Version": "mqtt5.0"}``."""
    timeout: float = 5.0
    raw: bool = False
    """MQTT: publish the body alone, without the clause 7.2 envelope (NGSI-v2
    Subscriptions: Orion publishes the bare notification)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one try at a Delivery."""

    delivery: Delivery
    ok: bool
    final: bool
    """Success, or the last allowed try failed: the outbox row may be deleted."""
    error: str | None
    """Why it failed, e.g. ``"HTTP 500"``, ``"timeout after 5.0 s"``, ``"connection refused"``."""
    at: str
    """When the try started, ISO 8601 UTC, e.g. ``2026-11-22T04:35:00.123456Z``."""


OnAttempt = Callable[[Attempt], Awaitable[None]] | Callable[[Attempt], None]


def backoff_delay(retry: int, initial: float, cap: float) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry).

    Exponential (``initial``, doubling, at most ``cap``) with "equal jitter": a random
    point in the upper half, so endpoints that failed together do not retry in step.
    """
    delay = min(cap, initial * 2.0 ** min(retry - 1, 60))
    return delay / 2 + random.uniform(0, delay / 2)


class _Lane:
    """Deliveries in key order; one task works through them, head first."""

    __slots__ = ("queue", "task")

    def __init__(self) -> None:
        self.queue: deque[Delivery] = deque()
        self.task: asyncio.Task[None] | None = None

    def put(self, delivery: Delivery) -> None:
        queue = self.queue
        # The producer submits in commit order, so this is nearly always an append; an
        # outbox replayed after a restart may not be, but the head in flight stays first.
        index, first = len(queue), 1 if self.task is not None else 0
        while index > first and queue[index - 1].key > delivery.key:
            index -= 1
        queue.insert(index, delivery)


class _Endpoint:
    __slots__ = ("key", "lanes")

    def __init__(self, key: EndpointKey, lanes: int) -> None:
        self.key = key
        self.lanes = [_Lane() for _ in range(lanes)]

    def lane_for(self, entity_id: str) -> _Lane:
        return self.lanes[hash(entity_id) % len(self.lanes)]

    def is_idle(self) -> bool:
        return not any(lane.queue for lane in self.lanes)


class Deliverer:
    """Sends deliveries, retries failures, and reports every attempt to ``on_attempt``.

    ``submit`` and ``pending`` are called from the event loop's thread. Deliveries may be
    submitted before ``start()``; they wait until it. A key already pending is ignored.
    """

    def __init__(
        self,
        on_attempt: OnAttempt,
        *,
        per_endpoint_concurrency: int = 8,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        if per_endpoint_concurrency < 1 or max_attempts < 1:
            raise ValueError("per_endpoint_concurrency and max_attempts must be at least 1")
        self._on_attempt = on_attempt
        self._lanes_per_endpoint = per_endpoint_concurrency
        self._max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max)
        self._endpoints: dict[EndpointKey, _Endpoint] = {}
        self._pending: set[int] = set()
        self._cancelled: set[int] = set()  # keys being tried whose Subscription is gone
        self._backing_off: dict[int, asyncio.Event] = {}  # set by cancel() to stop waiting
        self._http = HttpTransport(limit_per_host=per_endpoint_concurrency)
        self._mqtt = MqttTransport()
        self._running = False

    async def start(self) -> None:
        if self._running:
            return
        await self._http.open()
        await self._mqtt.open()
        self._running = True
        for endpoint in self._endpoints.values():
            for lane in endpoint.lanes:
                if lane.queue and lane.task is None:
                    self._spawn(endpoint, lane)

    async def stop(self) -> None:
        """Cancel work in progress; undelivered items stay pending and unreported."""
        if not self._running:
            return
        self._running = False
        tasks = [
            lane.task for e in self._endpoints.values() for lane in e.lanes if lane.task is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before it ran never reached its own clean-up.
        for endpoint in self._endpoints.values():
            for lane in endpoint.lanes:
                lane.task = None
        await self._http.close()
        await self._mqtt.close()

    def submit(self, delivery: Delivery) -> None:
        """Queue ``delivery``; never blocks, and a bad endpoint shows up as a failed Attempt."""
        if delivery.key in self._pending:
            return
        self._pending.add(delivery.key)
        key = endpoint_key(delivery.uri)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = _Endpoint(key, self._lanes_per_endpoint)
        lane = endpoint.lane_for(delivery.entity_id)
        lane.put(delivery)
        if self._running and lane.task is None:
            self._spawn(endpoint, lane)

    def cancel(self, tenant: str, subscription_id: str) -> None:
        """Drop the deliveries of a deleted Subscription: those queued are never tried, and
        one being tried now is not retried (the try in progress is still reported)."""
        for endpoint in self._endpoints.values():
            for lane in endpoint.lanes:
                busy = 1 if lane.task is not None else 0
                for n, delivery in enumerate(list(lane.queue)):
                    if (delivery.tenant, delivery.subscription_id) != (tenant, subscription_id):
                        continue
                    if n < busy:
                        self._cancelled.add(delivery.key)
                        if delivery.key in self._backing_off:
                            self._backing_off[delivery.key].set()
                    else:
                        lane.queue.remove(delivery)
                        self._pending.discard(delivery.key)

    def pending(self) -> int:
        """Deliveries submitted and not yet reported final."""
        return len(self._pending)

    def _spawn(self, endpoint: _Endpoint, lane: _Lane) -> None:
        lane.task = asyncio.get_running_loop().create_task(self._drain(endpoint, lane))

    async def _drain(self, endpoint: _Endpoint, lane: _Lane) -> None:
        try:
            while lane.queue:
                delivery = lane.queue[0]
                await self._deliver(delivery)
                lane.queue.popleft()
                self._pending.discard(delivery.key)
                self._cancelled.discard(delivery.key)
        finally:
            lane.task = None
        if endpoint.is_idle() and self._endpoints.get(endpoint.key) is endpoint:
            del self._endpoints[endpoint.key]

    async def _deliver(self, delivery: Delivery) -> None:
        for number in range(1, self._max_attempts + 1):
            at = now_iso()
            error, retryable = await self._try(delivery)
            final = error is None or not retryable or number == self._max_attempts
            await self._report(Attempt(delivery, error is None, final, error, at))
            if final or delivery.key in self._cancelled:
                return
            await self._back_off(delivery.key, backoff_delay(number, *self._backoff))
            if delivery.key in self._cancelled:
                return

    async def _back_off(self, key: int, delay: float) -> None:
        """Waits ``delay`` seconds before a retry, or until ``cancel()`` drops the delivery."""
        cancelled = self._backing_off[key] = asyncio.Event()
        try:
            await asyncio.wait_for(cancelled.wait(), delay)
        except TimeoutError:
            pass
        finally:
            del self._backing_off[key]

    async def _try(self, delivery: Delivery) -> tuple[str | None, bool]:
        """``(error, retryable)``; ``error`` is None on success."""
        try:
            await self._transport(delivery.uri).send(delivery)
        except DeliveryFailed as exc:
            return exc.error, exc.retryable
        except Exception as exc:
            # A bug in a transport must fail this attempt, not stop the lane for good.
            _log.exception("Delivery %d to %s raised unexpectedly", delivery.key, delivery.uri)
            return f"internal error: {type(exc).__name__}", True
        return None, True

    def _transport(self, uri: str) -> Transport:
        scheme = uri.partition(":")[0].lower()
        if scheme in ("http", "https"):
            return self._http
        if scheme in ("mqtt", "mqtts"):
            return self._mqtt
        raise DeliveryFailed(f"unsupported endpoint URI scheme {scheme!r}", retryable=False)

    async def _report(self, attempt: Attempt) -> None:
        try:
            result = self._on_attempt(attempt)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The row stays in the outbox and is delivered again after a restart.
            _log.exception("on_attempt failed for delivery %d", attempt.delivery.key)
