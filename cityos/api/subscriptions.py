"""HTTP handlers of /ngsi-ld/v1/subscriptions (GS CIM 009 V1.8.1 clauses 5.8, 6.10-6.11).

Plus a live stream of a Subscription's notifications as Server-Sent Events, for web
consoles and dashboards: ``GET /ngsi-ld/v1/subscriptions/{id}/stream``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cityos.api import http
from cityos.api.deps import now_iso, sees_subscription, services
from cityos.api.params import parse_paging
from cityos.core.entities import check_uri
from cityos.core.jsonld import CompiledContext
from cityos.core.query.typeexpr import expand_types
from cityos.core.subscriptions import (
    DEFAULT_TRIGGERS,
    EntitySelector,
    Subscription,
    apply_fragment,
    parse_subscription,
)
from cityos.errors import AlreadyExists, BadRequestData, InvalidRequest, ResourceNotFound
from cityos.notifier import stored_form

__all__ = ["ROUTES", "notification_context", "page_links", "render_subscription"]

_READ_ONLY = (
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastSuccess",
    "lastFailure",
)


def render_subscription(sub: Subscription, now: str, ctx: CompiledContext) -> dict[str, Any]:
    """The Subscription as given, with its state (clause 5.2.12: status, isActive, counters)
    and the defaults it got (notificationTrigger); names are compacted with the request's
    @context, as for Entities. The @context notifications are sent with shows as
    ``jsonldContext`` when the client set it, or when it was created from an inline one."""
    out = {k: v for k, v in sub.body.items() if k not in ("status",)}
    out.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
    if sub.entities:
        out["entities"] = [_selector(s, ctx) for s in sub.entities]
    if sub.watched is not None:
        out["watchedAttributes"] = sorted(ctx.compact(a) for a in sub.watched)
    notification = {k: v for k, v in out.get("notification", {}).items() if k not in _READ_ONLY}
    notification.update({k: v for k, v in sub.status.items() if k in _READ_ONLY})
    if sub.attributes is not None:
        notification["attributes"] = [ctx.compact(a) for a in sub.attributes]
    out["notification"] = notification
    if "isActive" in sub.body:
        out["isActive"] = sub.is_active
    expired = sub.expires_at is not None and sub.expires_at <= now
    out["status"] = "expired" if expired else ("active" if sub.is_active else "paused")
    return out


def _selector(selector: EntitySelector, ctx: CompiledContext) -> dict[str, Any]:
    out: dict[str, Any] = {"type": expand_types(selector.type, ctx.compact).render()}
    if selector.id is not None:
        out["id"] = selector.id
    if selector.id_pattern is not None:
        out["idPattern"] = selector.id_pattern
    return out


def _find(request: Request) -> Subscription:
    sub_id = request.path_params["sub_id"]
    tenant = http.tenant_of(request)
    sub = services(request).notifier.subs.get((tenant, sub_id))
    if sub is None or not sees_subscription(request, tenant, sub_id):
        raise ResourceNotFound(f"Subscription {sub_id} does not exist")
    return sub


async def create_subscription(request: Request) -> Response:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    tenant = http.tenant_of(request)
    body, context = await notification_context(svc.contexts, body, rctx.value)
    sub = parse_subscription(body, rctx.compiled, tenant, context, now_iso())
    if (tenant, sub.id) in svc.notifier.subs:
        raise AlreadyExists(f"Subscription {sub.id} already exists")
    await svc.store.save_subscription(tenant, sub.id, stored_form(sub))
    svc.notifier.put(sub)
    return Response(
        status_code=201,
        headers={"Location": "/ngsi-ld/v1/subscriptions/" + quote(sub.id, safe=":")},
    )


async def notification_context(registry: Any, body: Any, request_context: Any) -> tuple[Any, Any]:
    """The @context of a new subscription's notifications, and its body with that context
    as ``jsonldContext`` when it is an ImplicitlyCreated one (clause 5.13.2)."""
    context = await _notification_context(registry, body, request_context)
    if isinstance(body, dict) and "jsonldContext" not in body and _is_implicit(request_context):
        body = {**body, "jsonldContext": context}
    return body, context


def _is_implicit(request_context: Any) -> bool:
    """An inline or composite @context, which City OS stores as ImplicitlyCreated."""
    if request_context is None or isinstance(request_context, str):
        return False
    return not (
        isinstance(request_context, list)
        and len(request_context) == 1
        and isinstance(request_context[0], str)
    )


async def _notification_context(registry: Any, body: Any, request_context: Any) -> Any:
    """The @context of the notifications: ``jsonldContext`` if given (clause 5.2.12, it must
    resolve now: 503 LdContextNotAvailable if not), else the request's; an inline or
    composite one becomes an ImplicitlyCreated context with a URL (clause 5.13.2)."""
    if not isinstance(body, dict) or "jsonldContext" not in body:
        if isinstance(request_context, list) and len(request_context) == 1:
            # ["https://.../ctx.jsonld"] is that URL: notify with it in the Link header
            request_context = request_context[0]
        if request_context is None or isinstance(request_context, str):
            return request_context
        return (await registry.add_implicit(request_context)).url
    url = body["jsonldContext"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadRequestData(f"jsonldContext {url!r} is not an http(s) URL")
    await registry.compile(url)
    return url


async def list_subscriptions(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    paging = parse_paging(request.query_params, svc.settings.default_limit, svc.settings.max_limit)
    tenant = http.tenant_of(request)
    subs = sorted(
        (
            s
            for (t, i), s in svc.notifier.subs.items()
            if t == tenant and sees_subscription(request, t, i)
        ),
        key=lambda s: s.id,
    )
    now = now_iso()
    page = [
        render_subscription(s, now, rctx.compiled)
        for s in subs[paging.offset : paging.offset + paging.limit]
    ]
    headers = {"NGSILD-Results-Count": str(len(subs))} if paging.count else {}
    links = page_links("/ngsi-ld/v1/subscriptions", paging.limit, paging.offset, len(subs))
    if links:
        headers["Link"] = links
    return http.json_response(page, rctx, headers=headers)


def page_links(path: str, limit: int, offset: int, total: int) -> str:
    """Link headers to the previous and next pages (clause 6.3.13)."""
    links = []
    if offset > 0:
        prev = max(offset - limit, 0)
        links.append(f'<{path}?limit={limit}&offset={prev}>;rel="prev";type="application/ld+json"')
    if offset + limit < total:
        links.append(
            f'<{path}?limit={limit}&offset={offset + limit}>;rel="next";type="application/ld+json"'
        )
    return ",".join(links)


async def retrieve_subscription(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request)
    check_uri(request.path_params["sub_id"], "Subscription id")
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    return http.json_response(render_subscription(_find(request), now_iso(), rctx.compiled), rctx)


async def update_subscription(request: Request) -> Response:
    """PATCH /subscriptions/{id} (clause 5.8.2): members are replaced; isActive pauses."""
    http.check_content_type(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    svc = services(request)
    check_uri(request.path_params["sub_id"], "Subscription id")
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    sub = _find(request)
    updated = apply_fragment(sub, body, rctx.compiled, now_iso())
    await svc.store.save_subscription(sub.tenant, sub.id, stored_form(updated))
    svc.notifier.put(updated)
    return Response(status_code=204)


async def delete_subscription(request: Request) -> Response:
    svc = services(request)
    check_uri(request.path_params["sub_id"], "Subscription id")
    sub = _find(request)
    await svc.store.delete_subscription(sub.tenant, sub.id)
    svc.notifier.remove(sub.tenant, sub.id)
    return Response(status_code=204)


async def stream_subscription(request: Request) -> Response:
    """Server-Sent Events: each notification of the Subscription as one ``data:`` event."""
    sub = _find(request)
    notifier = services(request).notifier

    async def events() -> AsyncIterator[bytes]:
        async with notifier.stream(sub.tenant, sub.id) as queue:
            yield b": connected\n\n"
            while True:
                try:
                    body = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield b"event: notification\ndata: " + body + b"\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def missing_subscription_id(request: Request) -> Response:
    raise InvalidRequest(f"{request.method} needs a Subscription id in the path")


_LIST = frozenset({"limit", "offset", "count", "local"})
ROUTES: list[tuple[str, Any, list[str], frozenset[str] | None]] = [
    ("/subscriptions", list_subscriptions, ["GET"], _LIST),
    ("/subscriptions", create_subscription, ["POST"], frozenset()),
    ("/subscriptions/{sub_id:path}/stream", stream_subscription, ["GET"], frozenset()),
    ("/subscriptions/{sub_id:path}", retrieve_subscription, ["GET"], frozenset()),
    ("/subscriptions/{sub_id:path}", update_subscription, ["PATCH"], frozenset()),
    ("/subscriptions/{sub_id:path}", delete_subscription, ["DELETE"], frozenset()),
]
