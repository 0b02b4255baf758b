"""Request and response plumbing shared by every NGSI-LD handler (GS CIM 009 clause 6.3).

Content negotiation (clause 6.3.4-6.3.6), the JSON-LD ``Link`` header (6.3.5), bodies with
their size limits, the ``NGSILD-Tenant`` header (6.3.14) and rendering with the response's
@context. Handlers call these, then ``core``, then render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.core.contexts import CORE_CONTEXT_URL, ContextRegistry, ContextValue
from cityos.core.jsonld import CompiledContext
from cityos.errors import (
    BadRequestData,
    InvalidRequest,
    LengthRequired,
    NonexistentTenant,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)

__all__ = [
    "JSON",
    "JSONLD",
    "GEOJSON",
    "RequestContext",
    "json_response",
    "read_json",
    "request_context",
    "tenant_of",
]

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_TENANT = re.compile(r"^[A-Za-z0-9_\-.:/]{1,256}$")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The @context a request brought, compiled, and how to repeat it in the response."""

    compiled: CompiledContext
    value: ContextValue | None  # as the client gave it; None for the core context
    accept: str  # JSON, JSONLD or GEOJSON

    def link_header(self) -> str:
        url = self.value if isinstance(self.value, str) else CORE_CONTEXT_URL
        return f'<{url}>; rel="{LINK_REL}"; type="{JSONLD}"'

    def body_context(self) -> ContextValue:
        return self.value if self.value is not None else CORE_CONTEXT_URL


def tenant_of(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant")
    if tenant is None or tenant == "":
        return ""
    if not _TENANT.match(tenant):
        raise BadRequestData(f"Tenant {tenant!r} is not a valid tenant name")
    return tenant


async def require_tenant(request: Request, exists: bool) -> str:
    tenant = tenant_of(request)
    if tenant and not exists:
        raise NonexistentTenant(f"Tenant {tenant} does not exist")
    return tenant


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def negotiate(request: Request, allow_geo: bool = False) -> str:
    """Picks the response media type from Accept (clause 6.3.6); 406 if none fits."""
    header = request.headers.get("accept")
    if not header:
        return JSON
    offers = (JSON, JSONLD, GEOJSON) if allow_geo else (JSON, JSONLD)
    best, best_q = None, 0.0
    for part in header.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = _quality(params)
        for offer in offers:
            if q > best_q and _covers(media, offer):
                best, best_q = offer, q
    if best is None:
        raise NotAcceptable(f"None of the media types in Accept: {header} can be produced")
    return best


def _covers(media: str, offer: str) -> bool:
    if media in ("*/*", "application/*"):
        return offer == JSON
    return media == offer


def _quality(params: str) -> float:
    for p in params.split(";"):
        key, _, val = p.strip().partition("=")
        if key == "q":
            try:
                return float(val)
            except ValueError:
                return 0.0
    return 1.0


def link_context(request: Request) -> str | None:
    """The @context URL of a JSON-LD Link header (clause 6.3.5), or None."""
    header = request.headers.get("link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        if LINK_REL in params:
            return url.strip()
    return None


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON; 411 without a length, 413 past the limit, 400 if not JSON."""
    length = request.headers.get("content-length")
    if length is None and "chunked" not in request.headers.get("transfer-encoding", ""):
        raise LengthRequired("The request has no Content-Length header")
    if length is not None:
        if not length.isdigit():
            raise InvalidRequest(f"Content-Length {length!r} is not a number")
        if int(length) > max_bytes:
            raise PayloadTooLarge(
                f"The request body of {length} bytes is larger than the limit of {max_bytes} bytes"
            )
    body = await request.body()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the limit of {max_bytes} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}") from exc


def check_content_type(request: Request, allowed: tuple[str, ...] = (JSON, JSONLD)) -> str:
    media = _media_type(request.headers.get("content-type"))
    if media not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'} is not supported here; use {' or '.join(allowed)}"
        )
    return media


async def request_context(
    request: Request,
    registry: ContextRegistry,
    body: Any = None,
    *,
    accept: str = JSON,
    link_for_query: bool = False,
) -> RequestContext:
    """The request's @context: from the body for application/ld+json, else from Link."""
    media = _media_type(request.headers.get("content-type"))
    link = link_context(request)
    value: ContextValue | None
    if body is not None and not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    if link_for_query and media == JSONLD and link is not None and not _has_context(body):
        media = JSON  # a Query (clause 5.2.23) is no Entity: its terms may come by Link
    if body is not None and media == JSONLD:
        if link is not None:
            raise BadRequestData(
                "A Link header @context is not allowed with Content-Type application/ld+json"
            )
        value = _body_context(body)
    else:
        if body is not None and _has_context(body):
            raise BadRequestData("@context in the body needs Content-Type application/ld+json")
        value = link
    return RequestContext(await registry.compile(value), value, accept)


def _body_context(body: Any) -> ContextValue:
    items = body if isinstance(body, list) else [body]
    contexts = [item.get("@context") for item in items if isinstance(item, dict)]
    if not contexts or any(c is None for c in contexts):
        raise BadRequestData(
            "Content-Type application/ld+json needs an @context member in the body"
        )
    if any(c != contexts[0] for c in contexts):
        raise BadRequestData("Every Entity of the request must have the same @context")
    return contexts[0]  # type: ignore[return-value]


def _has_context(body: Any) -> bool:
    items = body if isinstance(body, list) else [body]
    return any(isinstance(item, dict) and "@context" in item for item in items)


def json_response(
    data: Any, rctx: RequestContext | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Renders data with the response's @context: in the body for JSON-LD, else in Link."""
    out_headers = dict(headers or {})
    media = JSON if rctx is None else rctx.accept
    if rctx is not None and media == JSONLD:
        ctx = rctx.body_context()
        if isinstance(data, list):
            data = [{**item, "@context": ctx} if isinstance(item, dict) else item for item in data]
        elif isinstance(data, dict):
            data = {**data, "@context": ctx}
    elif rctx is not None:  # pagination links (if any) and the @context link share Link
        out_headers["Link"] = ", ".join(filter(None, [out_headers.get("Link"), rctx.link_header()]))
    return Response(orjson.dumps(data), status_code=status, media_type=media, headers=out_headers)


def created(path: str, resource_id: str, tenant: str = "") -> Response:
    """201 Created with the new resource's Location (and its tenant, clause 6.3.14)."""
    headers = {"Location": f"/ngsi-ld/v1/{path}/" + quote(resource_id, safe=":")}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return Response(status_code=201, headers=headers)
