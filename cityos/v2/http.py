"""Request and response plumbing of the NGSI-v2 handlers.

``Fiware-Service`` is the tenant: Orion lower-cases it and allows 1-50 letters, digits and
underscores, so ``Fiware-Service: Takamatsu`` is the tenant ``NGSILD-Tenant: takamatsu``;
without it (or empty) the default tenant. Bodies are ``application/json`` (415 otherwise),
with a length (411) under the size limit (413); a body that is not JSON is ``ParseError``.
Responses are JSON, unless the client accepts neither ``application/json`` nor ``*/*``
(406).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.config import Settings
from cityos.core.contexts import ContextRegistry
from cityos.errors import (
    BadRequestData,
    LengthRequired,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from cityos.notifier import Notifier
from cityos.scope import services_of
from cityos.storage.base import Store
from cityos.v2.errors import ParseError, orion_response
from cityos.v2.names import Names, load_names
from cityos.v2.servicepath import PathFilter, read_paths, write_path

__all__ = [
    "Endpoint",
    "accept",
    "guard",
    "json",
    "names_of",
    "options_of",
    "read_body",
    "read_filter",
    "services",
    "tenant_of",
    "write_scope",
]

Endpoint = Callable[[Request], Awaitable[Response]]
_SERVICE = re.compile(r"^\w{1,50}$", re.ASCII)
# Options Orion accepts everywhere that change nothing here: normalized is the default,
# there is no forwarding to skip, every update notifies and writes are always flow-controlled.
_HARMLESS = frozenset({"normalized", "skipForwarding", "forcedUpdate", "flowControl"})


class Services(Protocol):
    """What v2 handlers use of ``app.state.services`` (built by ``cityos.app``)."""

    settings: Settings
    store: Store
    contexts: ContextRegistry
    notifier: Notifier


def services(request: Request) -> Services:
    """As ``cityos.api.deps.services``: with authentication on, the store is the request's
    principal's GuardedStore, so NGSI-v2 reads and writes obey the same policy."""
    svc: Services = services_of(request)
    return svc


def tenant_of(request: Request) -> str:
    service = request.headers.get("fiware-service", "").strip()
    if not service:
        return ""
    if not _SERVICE.match(service):
        raise BadRequestData(
            f"Fiware-Service {service!r} is not 1-50 letters, digits or underscores"
        )
    return service.lower()


def write_scope(request: Request) -> str | None:
    return write_path(request.headers.get("fiware-servicepath"))


def read_filter(request: Request) -> PathFilter:
    return read_paths(request.headers.get("fiware-servicepath"))


async def names_of(request: Request) -> Names:
    svc = services(request)
    return await load_names(svc.contexts, svc.settings.v2_context, svc.settings.v2_id_prefix)


def _fits(media: str, offer: str) -> bool:
    if media == "*/*":
        return True
    if media.endswith("/*"):
        return offer.startswith(media[:-1])
    return media == offer


def accept(request: Request, offers: tuple[str, ...] = ("application/json",)) -> str:
    """The response media type: the first of Accept that one of ``offers`` fits; 406 if none."""
    header = request.headers.get("accept")
    if not header:
        return offers[0]
    for part in header.split(","):
        media = part.split(";", 1)[0].strip().lower()
        for offer in offers:
            if _fits(media, offer):
                return offer
    raise NotAcceptable(f"Accept {header} allows none of {', '.join(offers)}")


def options_of(request: Request, allowed: frozenset[str]) -> set[str]:
    raw = request.query_params.get("options")
    if raw is None:
        return set()
    options = {o.strip() for o in raw.split(",")}
    unknown = options - allowed - _HARMLESS
    if unknown:
        raise BadRequestData(f"Invalid value for URI param options: {', '.join(sorted(unknown))}")
    return options


async def read_body(request: Request, media: tuple[str, ...] = ("application/json",)) -> Any:
    """The body as JSON (or the text of a text/plain body, when ``media`` allows it)."""
    content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type not in media:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'} is not supported; use {' or '.join(media)}"
        )
    body = await _read(request, services(request).settings.max_body_bytes)
    if content_type == "text/plain":
        return body.decode("utf-8", errors="replace")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"Errors found in incoming JSON buffer: {exc.msg}") from exc


async def _read(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "")
    if (length is None and not chunked) or length == "0":
        raise LengthRequired("Zero/No Content-Length in PUT/POST/PATCH request")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
    return body


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def guard(endpoint: Endpoint) -> Endpoint:
    """Every error of a v2 handler becomes Orion's error response, in the handler's frame;
    every response carries a ``Fiware-Correlator``."""

    async def guarded(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except Exception as exc:  # rendered (and logged when unexpected) by orion_response
            response = orion_response(exc, request.method, request.url.path)
        # Orion tags every response (and passes a client's tag on) for tracing across
        # IoT Agents and brokers.
        response.headers["Fiware-Correlator"] = request.headers.get("fiware-correlator") or str(
            uuid.uuid4()
        )
        return response

    guarded.__name__ = endpoint.__name__
    return guarded
