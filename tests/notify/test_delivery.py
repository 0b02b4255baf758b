"""The Deliverer against real HTTP receivers: reporting, retries, isolation, per-Entity order."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

import cityos.notify
from cityos.notify import Attempt, Deliverer
from cityos.notify.delivery import backoff_delay

from .conftest import Attempts, Receiver, free_port, make_delivery, wait_until

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_public_names() -> None:
    assert cityos.notify.__all__ == ["Attempt", "Deliverer", "Delivery"]


async def test_success_is_one_final_attempt(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    deliverer = await deliverers()
    headers = {
        "Content-Type": "application/json",
        "Link": '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"',
        "NGSILD-Tenant": "city",
    }
    delivery = make_delivery(1, receiver.url(), headers=headers)
    deliverer.submit(delivery)
    await attempts.wait_finals(1)

    [attempt] = attempts
    assert (attempt.delivery, attempt.ok, attempt.final, attempt.error) == (
        delivery,
        True,
        True,
        None,
    )
    assert ISO_UTC.match(attempt.at)
    [request] = receiver.requests
    assert request.body == delivery.body
    assert {k: request.headers[k] for k in headers} == headers
    assert deliverer.pending() == 0


async def test_a_500_is_retried_until_success(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    receiver.script("/flaky", 500, 503)
    deliverer = await deliverers(max_attempts=5)
    deliverer.submit(make_delivery(1, receiver.url("/flaky")))
    await attempts.wait_finals(1)

    assert [(a.ok, a.final, a.error) for a in attempts] == [
        (False, False, "HTTP 500"),
        (False, False, "HTTP 503"),
        (True, True, None),
    ]
    assert len(receiver.requests) == 3


async def test_gives_up_after_max_attempts(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    receiver.script("/down", *[500] * 10)
    deliverer = await deliverers(max_attempts=3)
    deliverer.submit(make_delivery(1, receiver.url("/down")))
    await attempts.wait_finals(1)

    assert [(a.ok, a.final) for a in attempts] == [(False, False), (False, False), (False, True)]
    assert deliverer.pending() == 0


async def test_async_on_attempt_is_awaited(
    deliverers: Callable[..., Any], receiver: Receiver
) -> None:
    seen: list[Attempt] = []

    async def on_attempt(attempt: Attempt) -> None:
        await asyncio.sleep(0)
        seen.append(attempt)

    deliverer = await deliverers(on_attempt=on_attempt)
    deliverer.submit(make_delivery(1, receiver.url()))
    await wait_until(lambda: deliverer.pending() == 0)
    assert [a.ok for a in seen] == [True]


async def test_a_failing_on_attempt_does_not_stop_the_lane(
    deliverers: Callable[..., Any], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    def on_attempt(attempt: Attempt) -> None:
        raise RuntimeError("outbox is gone")

    deliverer = await deliverers(on_attempt=on_attempt, per_endpoint_concurrency=1)
    for key in (1, 2):
        deliverer.submit(make_delivery(key, receiver.url()))
    await wait_until(lambda: deliverer.pending() == 0)
    assert len(receiver.requests) == 2
    assert "on_attempt failed for delivery 1" in caplog.text


@pytest.mark.parametrize(
    "uri",
    ["ftp://example.org/x", "not a uri", "http://127.0.0.1:99999/x", "mqtt://127.0.0.1/"],
)
async def test_a_bad_endpoint_is_a_final_failure_at_once(
    deliverers: Callable[..., Any], attempts: Attempts, uri: str
) -> None:
    deliverer = await deliverers(max_attempts=5)
    deliverer.submit(make_delivery(1, uri))
    await attempts.wait_finals(1)
    [attempt] = attempts
    assert not attempt.ok and attempt.final and attempt.error


async def test_a_key_already_pending_is_ignored(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    receiver.hanging.add("/hang")
    deliverer = await deliverers()
    deliverer.submit(make_delivery(1, receiver.url("/hang")))
    deliverer.submit(make_delivery(1, receiver.url("/hang")))
    assert deliverer.pending() == 1
    await wait_until(lambda: len(receiver.requests) == 1)


async def test_deliveries_submitted_before_start_go_out_in_key_order(
    attempts: Attempts, receiver: Receiver
) -> None:
    deliverer = Deliverer(attempts, per_endpoint_concurrency=1)
    for key in (5, 3, 4, 1, 2):
        deliverer.submit(make_delivery(key, receiver.url()))
    assert deliverer.pending() == 5
    await deliverer.start()
    try:
        await attempts.wait_finals(5)
    finally:
        await deliverer.stop()
    assert [json.loads(r.body)["key"] for r in receiver.requests] == [1, 2, 3, 4, 5]


async def test_stop_leaves_undelivered_items_pending_and_start_resumes(
    attempts: Attempts, receiver: Receiver
) -> None:
    receiver.hanging.add("/hang")
    deliverer = Deliverer(attempts)
    await deliverer.start()
    deliverer.submit(make_delivery(1, receiver.url("/hang")))
    await wait_until(lambda: len(receiver.requests) == 1)
    await deliverer.stop()
    assert deliverer.pending() == 1 and attempts == []

    receiver.hanging.clear()
    await deliverer.start()
    try:
        await attempts.wait_finals(1)
    finally:
        await deliverer.stop()
    assert [a.ok for a in attempts] == [True]


async def test_per_entity_order_under_concurrency_and_retries(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    """200 deliveries for 10 Entities, answered slowly and sometimes with a 500."""
    rng = random.Random(7)
    original = receiver.handle

    async def erratic(request: web.Request) -> web.Response:
        await asyncio.sleep(rng.uniform(0, 0.003))
        if rng.random() < 0.1:
            receiver.script(request.path, 500)
        return await original(request)

    receiver.handle = erratic  # type: ignore[method-assign]
    deliverer = await deliverers(max_attempts=10, backoff_initial=0.001, backoff_max=0.005)
    for key in range(200):
        deliverer.submit(make_delivery(key, receiver.url(), entity=f"urn:ngsi-ld:Room:{key % 10}"))
    await attempts.wait_finals(200, timeout=10)

    assert all(a.ok for a in attempts.finals())
    keys_by_entity: dict[str, list[int]] = defaultdict(list)
    for request in receiver.requests:
        body = json.loads(request.body)
        keys_by_entity[body["entity"]].append(body["key"])
    for entity, keys in keys_by_entity.items():
        assert keys == sorted(keys), entity
        assert sorted(set(keys)) == list(range(int(entity.rsplit(":", 1)[1]), 200, 10))


async def test_dead_endpoints_do_not_delay_a_live_one(
    deliverers: Callable[..., Any], attempts: Attempts, receivers: Callable[..., Any]
) -> None:
    live, silent = await receivers(), await receivers()
    silent.hanging.add("/notify")
    dead_uri, silent_uri = f"http://127.0.0.1:{free_port()}/notify", silent.url()
    deliverer = await deliverers(max_attempts=5, backoff_initial=0.4, backoff_max=1.0)
    started = time.monotonic()
    for key in range(300):
        uri = (live.url(), dead_uri, silent_uri)[key % 3]
        deliverer.submit(
            make_delivery(key, uri, entity=f"urn:ngsi-ld:Room:{key % 30}", timeout=0.3)
        )

    live_keys = set(range(0, 300, 3))
    await wait_until(lambda: live_keys <= {a.delivery.key for a in attempts.finals()}, timeout=2)
    assert time.monotonic() - started < 2
    assert all(a.ok for a in attempts if a.delivery.key in live_keys)
    received = [json.loads(r.body)["key"] for r in live.requests]
    assert sorted(received) == sorted(live_keys)
    for entity in range(0, 30, 3):
        mine = [k for k in received if k % 30 == entity]
        assert mine == sorted(mine)
    # Meanwhile the dead and the silent endpoint fail and keep retrying.
    await wait_until(lambda: any(a.error == "timeout after 0.3 s" for a in attempts), timeout=1)
    others = [a for a in attempts if a.delivery.key not in live_keys]
    assert {a.error for a in others} == {"connection refused", "timeout after 0.3 s"}
    assert not any(a.final for a in others)
    assert deliverer.pending() == 200


@pytest.mark.parametrize(("retry", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0)])
def test_backoff_doubles_with_jitter(retry: int, low: float, high: float) -> None:
    delays = [backoff_delay(retry, 0.5, 30.0) for _ in range(200)]
    assert low <= min(delays) and max(delays) <= high
    assert len(set(delays)) > 1


def test_backoff_is_capped() -> None:
    assert all(1.5 <= backoff_delay(r, 0.5, 3.0) <= 3.0 for r in (4, 10, 1000))


@pytest.mark.parametrize("options", [{"per_endpoint_concurrency": 0}, {"max_attempts": 0}])
def test_options_are_checked(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Deliverer(lambda attempt: None, **options)


async def test_stop_before_the_lanes_ran_then_start_again(
    attempts: Attempts, receiver: Receiver
) -> None:
    deliverer = Deliverer(attempts)
    await deliverer.start()
    deliverer.submit(make_delivery(1, receiver.url()))
    await deliverer.stop()
    await deliverer.start()
    try:
        await attempts.wait_finals(1)
    finally:
        await deliverer.stop()
    assert [a.ok for a in attempts] == [True]


async def test_cancel_frees_the_lane_of_a_subscription_being_retried(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    # One lane: the other Subscription's delivery waits behind the failing one, whose
    # retry is 5-10 s away. Cancelling ends the wait, and the queued one is never tried.
    receiver.script("/down", *[500] * 10)
    deliverer = await deliverers(
        per_endpoint_concurrency=1, max_attempts=10, backoff_initial=10, backoff_max=10
    )
    gone = "urn:ngsi-ld:Subscription:gone"
    deliverer.submit(make_delivery(1, receiver.url("/down"), subscription_id=gone))
    deliverer.submit(make_delivery(2, receiver.url("/down"), subscription_id=gone))
    deliverer.submit(make_delivery(3, receiver.url("/up")))
    await wait_until(lambda: len(attempts) == 1)
    deliverer.cancel("city", gone)
    await attempts.wait_finals(1, timeout=2)
    assert [(a.delivery.key, a.ok) for a in attempts] == [(1, False), (3, True)]
    assert [r.path for r in receiver.requests] == ["/down", "/up"]
    await wait_until(lambda: deliverer.pending() == 0)
