"""HTTP transport against a real aiohttp receiver: what counts as success, what is retried."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cityos.notify.http import is_retryable_status

from .conftest import Attempts, Receiver, free_port, make_delivery


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (302, True), (400, False), (401, False),
     (404, False), (410, False), (408, True), (429, True)],
)  # fmt: skip
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_is_success(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver, status: int
) -> None:
    receiver.script("/notify", status)
    deliverer = await deliverers()
    deliverer.submit(make_delivery(1, receiver.url()))
    await attempts.wait_finals(1)
    assert [(a.ok, a.error) for a in attempts] == [(True, None)]


@pytest.mark.parametrize(("status", "tries"), [(400, 1), (404, 1), (410, 1), (408, 3), (429, 3)])
async def test_4xx_fails_at_once_except_408_and_429(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver, status: int, tries: int
) -> None:
    receiver.script("/notify", *[status] * 5)
    deliverer = await deliverers(max_attempts=3)
    deliverer.submit(make_delivery(1, receiver.url()))
    await attempts.wait_finals(1)
    assert [a.error for a in attempts] == [f"HTTP {status}"] * tries
    assert [a.final for a in attempts] == [False] * (tries - 1) + [True]
    assert len(receiver.requests) == tries


async def test_a_redirect_is_not_followed(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    receiver.script("/notify", 307, 307, 307)
    deliverer = await deliverers()
    deliverer.submit(make_delivery(1, receiver.url()))
    await attempts.wait_finals(1)
    assert [a.error for a in attempts] == ["HTTP 307"] * 3


async def test_nothing_listening_is_connection_refused(
    deliverers: Callable[..., Any], attempts: Attempts
) -> None:
    deliverer = await deliverers()
    deliverer.submit(make_delivery(1, f"http://127.0.0.1:{free_port()}/notify"))
    await attempts.wait_finals(1)
    assert [(a.error, a.final) for a in attempts] == [
        ("connection refused", False),
        ("connection refused", False),
        ("connection refused", True),
    ]


async def test_a_receiver_that_never_answers_times_out(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    receiver.hanging.add("/notify")
    deliverer = await deliverers(max_attempts=2)
    deliverer.submit(make_delivery(1, receiver.url(), timeout=0.2))
    await attempts.wait_finals(1)
    assert [a.error for a in attempts] == ["timeout after 0.2 s"] * 2


async def test_connections_are_reused(
    deliverers: Callable[..., Any], attempts: Attempts, receiver: Receiver
) -> None:
    deliverer = await deliverers(per_endpoint_concurrency=1)
    for key in range(20):
        deliverer.submit(make_delivery(key, receiver.url()))
    await attempts.wait_finals(20)
    assert all(
        r.headers.get("Connection", "keep-alive").lower() != "close" for r in receiver.requests
    )
