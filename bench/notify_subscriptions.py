"""The benchmark's Subscriptions: created for one workload, deleted after it, whatever
happens, so they never notify during another workload."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bench.engine import POST_HEADERS
from bench.notify_load import ENTITY_TYPE

__all__ = ["DeliveryStatus", "SetupFailed", "delivery_status", "subscribed"]


class SetupFailed(RuntimeError):
    """The server refused what a workload needs (an Entity or a Subscription)."""


@dataclass(frozen=True)
class DeliveryStatus:
    """Sums of the Subscriptions' ``notification.timesSent`` and ``timesFailed``
    (GS CIM 009 clause 5.2.14, NotificationParams): attempts, not notifications."""

    sent: int
    failed: int


@contextlib.asynccontextmanager
async def subscribed(
    session: aiohttp.ClientSession, api: str, prefix: str, endpoints: list[dict[str, Any]]
) -> AsyncIterator[list[str]]:
    """One Subscription to every ``WaterObserved`` change per Endpoint, ids ``prefix-NNN``."""
    ids: list[str] = []
    try:
        for index, endpoint in enumerate(endpoints):
            subscription_id = f"urn:ngsi-ld:Subscription:{prefix}-{index:03d}"
            await _create(session, api, subscription_id, endpoint)
            ids.append(subscription_id)
        yield ids
    finally:
        for subscription_id in ids:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.delete(_url(api, subscription_id)) as response:
                    await response.read()


async def _create(
    session: aiohttp.ClientSession, api: str, subscription_id: str, endpoint: dict[str, Any]
) -> None:
    body = {
        "id": subscription_id,
        "type": "Subscription",
        "entities": [{"type": ENTITY_TYPE}],
        "notification": {"endpoint": endpoint},
    }
    url = URL(f"{api}/subscriptions", encoded=True)
    async with session.post(url, data=orjson.dumps(body), headers=POST_HEADERS) as response:
        answer = await response.read()
        if response.status != 201:
            raise SetupFailed(f"POST /subscriptions -> {response.status}: {answer[:300]!r}")


async def delivery_status(
    session: aiohttp.ClientSession, api: str, subscription_ids: list[str]
) -> DeliveryStatus:
    sent = failed = 0
    for subscription_id in subscription_ids:
        async with session.get(_url(api, subscription_id)) as response:
            answer = await response.read()
        if response.status != 200:
            raise SetupFailed(f"GET {subscription_id} -> {response.status}: {answer[:300]!r}")
        notification = orjson.loads(answer).get("notification", {})
        sent += int(notification.get("timesSent", 0))
        failed += int(notification.get("timesFailed", 0))
    return DeliveryStatus(sent, failed)


def _url(api: str, subscription_id: str) -> URL:
    return URL(f"{api}/subscriptions/{subscription_id}", encoded=True)
