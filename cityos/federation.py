"""Calling Context Sources (GS CIM 009 V1.8.1 clauses 4.3.6, 6.3.18): one pooled HTTP
client, the registrations of each tenant kept at hand, and each call's bookkeeping.

A forwarded request carries:
  * ``Via``: the incoming Via with this City OS's alias appended, so a loop of brokers is
    detected by the one that sees its own alias come back (clause 6.3.18);
  * the registration's ``tenant`` as ``NGSILD-Tenant`` and its ``contextSourceInfo``
    key-value pairs as headers (clause 5.2.9) -- this is how the credentials a town gives
    for its neighbour's City OS (``Authorization``, ``X-Api-Key``) reach that source;
  * the client's @context, by ``Link`` or in the body, as the client gave it.

Each call is bounded by the registration's ``management.timeout`` (milliseconds) or the
``federation_timeout`` setting; a source that failed is skipped for its
``management.cooldown``. The registration's status members (``timesSent``,
``timesFailed``, ``lastSuccess``, ``lastFailure``, ``status``) are updated in the store
in the background, batched, so a busy federated query costs no write per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from cityos.config import Settings
from cityos.core.federation import Target
from cityos.core.model import now_iso
from cityos.core.registrations import Registration
from cityos.errors import CityOSError
from cityos.storage.base import Store

__all__ = ["Call", "Federation", "Reply"]

log = logging.getLogger("cityos.federation")
API = "/ngsi-ld/v1"
_CACHE_SECONDS = 2.0  # another worker's registration change is seen within this time


@dataclass(frozen=True, slots=True)
class Reply:
    """What a Context Source answered, or why it could not (``error`` set, status 0 when it
    never answered)."""

    target: Target
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    invalid: bool = False  # an answer arrived, but not one that can be used

    @property
    def ok(self) -> bool:
        return self.error is None and not self.invalid and 200 <= self.status < 300

    def problem(self) -> dict[str, Any]:
        """The source's ProblemDetails, or one describing why there is none."""
        if isinstance(self.body, dict) and "type" in self.body and "status" in self.body:
            return self.body
        status = self.status or 504
        return {
            "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            "title": "Context source failed",
            "status": status,
            "detail": self.error or f"{self.target.endpoint} answered HTTP {self.status}",
        }

    def warning(self) -> str:
        """An ``NGSILD-Warning`` value naming the source that failed, with the code of
        clause 6.3.17 (Table 6.3.17-1): 199 no answer in time, 111 an invalid answer,
        299 an error response."""
        code = 199 if self.status == 0 else 111 if self.invalid else 299
        reason = (self.error or f"HTTP {self.status}").replace('"', "'")
        return f'{code} {self.target.reg.id} "{reason}"'


# Headers that belong to HTTP or to this City OS, never to a registration (clause 4.3.6.5).
_BINDING_HEADERS = frozenset(
    {
        *("ngsild-tenant", "via", "link", "host", "connection", "content-length"),
        *("content-type", "transfer-encoding", "accept", "keep-alive", "upgrade", "te"),
    }
)


# contextSourceInfo keys that instruct the broker rather than name headers (4.3.6.6).
_INSTRUCTIONS = frozenset({"accept", "contentType", "jsonldContext"})


def _params(target: Target, params: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """A localOnly registration (clause 5.2.9) is asked for its own data: ``local=true``."""
    members = target.reg.members
    if members.get("localOnly") is True or members.get("management", {}).get("localOnly") is True:
        return {**(params or {}), "local": "true"}
    return params


@dataclass(frozen=True, slots=True)
class Call:
    """One request for a source: ``path`` is below its ``/ngsi-ld/v1``."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: Any = None
    content_type: str = "application/json"
    incoming: Mapping[str, str] = field(default_factory=dict)  # the triggering request's headers
    link: str | None = None


@dataclass
class _Bookkeeping:
    sent: int = 0
    failed: int = 0
    last_success: str | None = None
    last_failure: str | None = None


class Federation:
    """The forwarding side of distributed operations, one per app."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.alias = settings.alias
        self._store = store
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[str, tuple[float, list[Registration]]] = {}
        self._cooldown: dict[str, float] = {}
        self._books: dict[tuple[str, str], _Bookkeeping] = {}
        self._tenant_of: dict[str, str] = {}  # registration id -> its tenant
        self._flusher: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush()
        if self._client is not None:
            await self._client.aclose()

    # -- registrations ---------------------------------------------------------------

    async def registrations(self, tenant: str) -> list[Registration]:
        cached = self._cache.get(tenant)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        regs = [Registration.from_doc(d) for d in await self._store.registrations(tenant)]
        self._cache[tenant] = (now, regs)
        self._tenant_of.update((r.id, tenant) for r in regs)
        return regs

    def forget(self, tenant: str) -> None:
        """Called when a registration of the tenant changed in this process."""
        self._cache.pop(tenant, None)

    def loop_detected(self, via: str | None) -> bool:
        """Whether this City OS already handled the request (its alias is in ``Via``)."""
        return via is not None and any(
            hop.split()[-1] == self.alias for hop in via.split(",") if hop.strip()
        )

    def cooling(self, target: Target) -> bool:
        until = self._cooldown.get(target.reg.id)
        return until is not None and time.monotonic() < until

    # -- calls -----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
            )
        return self._client

    def headers(self, target: Target, req: Call) -> dict[str, str]:
        """Clause 4.3.6.5: the registration's contextSourceInfo pairs as headers, but never
        one the binding or the tenant owns; ``urn:ngsi-ld:request`` copies the triggering
        request's header of that name, if it has one."""
        out = {"Accept": "application/json"}
        for pair in target.reg.members.get("contextSourceInfo", []):
            key, value = str(pair["key"]), str(pair["value"])
            if key == "accept" and value in ("application/json", "application/ld+json"):
                out["Accept"] = value  # clause 4.3.6.6: the format the source answers in
                continue
            if key.lower() in _BINDING_HEADERS or key in _INSTRUCTIONS:
                continue
            if value == "urn:ngsi-ld:request":
                if key not in req.incoming:
                    continue
                value = req.incoming[key]
            out[key] = value
        via, link = req.incoming.get("via"), req.link
        tenant = target.reg.members.get("tenant")
        if tenant:
            out["NGSILD-Tenant"] = str(tenant)
        if link:
            out["Link"] = link
        hop = f"1.1 {self.alias}"
        out["Via"] = f"{via}, {hop}" if via else hop
        return out

    def _timeout(self, target: Target) -> float:
        ms = target.reg.members.get("management", {}).get("timeout")
        return (
            ms / 1000
            if isinstance(ms, int | float) and ms > 0
            else self.settings.federation_timeout
        )

    async def call(self, target: Target, req: Call) -> Reply:
        """One request to the source at ``{endpoint}/ngsi-ld/v1{path}``; never raises."""
        if self.cooling(target):
            return Reply(target, 0, error=f"{target.endpoint} is cooling down after a failure")
        url = target.endpoint.rstrip("/") + API + req.path
        headers = self.headers(target, req)
        content = None
        if req.body is not None:
            content = orjson.dumps(req.body)
            headers["Content-Type"] = req.content_type
        try:
            response = await self._http().request(
                req.method,
                url,
                params=_params(target, req.params),
                content=content,
                headers=headers,
                timeout=self._timeout(target),
            )
        except httpx.TimeoutException:
            reply = Reply(target, 0, error=f"{target.endpoint} did not answer in time")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            reply = Reply(target, 0, error=f"{target.endpoint}: {exc.__class__.__name__}")
        else:
            reply = self._reply(target, response)
        self._account(target, reply)
        return reply

    def _reply(self, target: Target, response: httpx.Response) -> Reply:
        status, headers = response.status_code, response.headers
        if len(response.content) > self.settings.max_body_bytes:
            detail = f"answered more than {self.settings.max_body_bytes} bytes"
            return Reply(target, status, None, headers, detail, invalid=True)
        if not response.content:
            return Reply(target, status, None, headers)
        try:
            return Reply(target, status, orjson.loads(response.content), headers)
        except orjson.JSONDecodeError:
            return Reply(target, status, None, headers, "answered no JSON", invalid=True)

    def _account(self, target: Target, reply: Reply) -> None:
        reg = target.reg
        book = self._books.setdefault((self._tenant_of.get(reg.id, ""), reg.id), _Bookkeeping())
        book.sent += 1
        failed = reply.status == 0 or reply.status >= 500
        if failed:
            book.failed += 1
            book.last_failure = now_iso()
            cooldown = reg.members.get("management", {}).get("cooldown")
            if isinstance(cooldown, int | float) and cooldown > 0:
                self._cooldown[reg.id] = time.monotonic() + cooldown / 1000
        else:
            book.last_success = now_iso()
            self._cooldown.pop(reg.id, None)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0.5)
        await self._flush()

    async def _flush(self) -> None:
        books, self._books = self._books, {}
        for (tenant, reg_id), book in books.items():
            try:
                await self._store.update_registration(tenant, reg_id, _apply(book))
            except CityOSError:
                continue  # the registration was deleted meanwhile
            except Exception:
                log.exception("could not record the status of registration %s", reg_id)
        for tenant, _ in books:
            self.forget(tenant)


def _apply(book: _Bookkeeping) -> Any:
    def change(doc: Any) -> Any:
        status = dict(doc.get("status", {}))
        status["timesSent"] = status.get("timesSent", 0) + book.sent
        if book.failed:
            status["timesFailed"] = status.get("timesFailed", 0) + book.failed
        if book.last_success:
            status["lastSuccess"] = book.last_success
        if book.last_failure:
            status["lastFailure"] = book.last_failure
        newest_ok = (book.last_success or "") >= (book.last_failure or "")
        status["status"] = "ok" if newest_ok else "failed"
        return {**doc, "status": status}

    return change
