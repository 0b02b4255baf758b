"""HTTP notification transport: POST the Notification to an http(s) Endpoint.

GS CIM 009 V1.8.1 clause 5.2.15 (Endpoint) and 5.8 (Subscriptions). One
:class:`aiohttp.ClientSession` is shared by every endpoint, so connections are pooled
and kept alive; the connector caps connections per host at the Deliverer's
``per_endpoint_concurrency``. Only a 2xx answer counts as delivered.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import aiohttp

from cityos.notify.transport import DeliveryFailed

if TYPE_CHECKING:
    from cityos.notify.delivery import Delivery

__all__ = ["HttpTransport", "is_retryable_status"]


def is_retryable_status(status: int) -> bool:
    """Whether another attempt may help: a 4xx says the request itself is refused,
    except 408 Request Timeout and 429 Too Many Requests, which ask to come back later."""
    return not 400 <= status < 500 or status in (408, 429)


class HttpTransport:
    """POSTs ``delivery.body`` with ``delivery.headers`` to ``delivery.uri``."""

    def __init__(self, limit_per_host: int) -> None:
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self._limit_per_host,
            # https endpoints are verified against the system CA store.
            ssl=ssl.create_default_context(),
        )
        self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, delivery: Delivery) -> None:
        if self._session is None:
            raise RuntimeError("HttpTransport.open() was not called")
        try:
            status = await self._post(self._session, delivery)
        except TimeoutError:
            raise DeliveryFailed(f"timeout after {delivery.timeout} s") from None
        except aiohttp.InvalidURL as exc:
            raise DeliveryFailed(f"invalid endpoint URI {exc}", retryable=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryFailed(_describe_connect_error(exc)) from None
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}", retryable=is_retryable_status(status))

    @staticmethod
    async def _post(session: aiohttp.ClientSession, delivery: Delivery) -> int:
        async with session.post(
            delivery.uri,
            data=delivery.body,
            headers=dict(delivery.headers),
            timeout=aiohttp.ClientTimeout(total=delivery.timeout),
            # A redirect is not an acknowledgement; re-POSTing elsewhere is not ours to do.
            allow_redirects=False,
        ) as response:
            # Reading the (normally empty) answer lets the connection go back to the pool.
            await response.read()
            return response.status


def _describe_connect_error(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host} is not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
    return f"cannot connect to {exc.host}:{exc.port}: {reason}"
