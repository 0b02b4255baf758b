"""Handlers of /v2/subscriptions and /v2/subscriptions/{id}.

A v2 Subscription is created, kept and restored as an NGSI-LD Subscription with a ``v2``
member (``cityos.v2.subscriptions``); these handlers list and show only those. Its id is
Orion-like (24 hex digits); NGSI-LD knows it as ``urn:ngsi-ld:Subscription:<id>``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.core.model import now_iso
from cityos.core.subscriptions import Subscription, parse_subscription
from cityos.errors import BadRequestData, ResourceNotFound
from cityos.notifier import stored_form
from cityos.scope import sees_subscription
from cityos.v2.http import accept, json, names_of, options_of, read_body, services, tenant_of
from cityos.v2.query import parse_paging
from cityos.v2.servicepath import read_paths
from cityos.v2.subscriptions import LD_PREFIX, V2_MEMBER, ld_body, render_subscription

__all__ = [
    "create_subscription",
    "delete_subscription",
    "list_subscriptions",
    "retrieve_subscription",
    "update_subscription",
]


def _v2_subscriptions(request: Request) -> list[Subscription]:
    tenant = tenant_of(request)
    subs = services(request).notifier.subs
    return sorted(
        (
            s
            for (t, i), s in subs.items()
            if t == tenant and V2_MEMBER in s.body and sees_subscription(request, t, i)
        ),
        key=lambda s: s.id,
    )


def _find(request: Request) -> Subscription:
    tenant, sub_id = tenant_of(request), LD_PREFIX + request.path_params["sub_id"]
    sub = services(request).notifier.subs.get((tenant, sub_id))
    if sub is None or V2_MEMBER not in sub.body or not sees_subscription(request, tenant, sub_id):
        raise ResourceNotFound("The requested subscription has not been found. Check id")
    return sub


async def _parse(request: Request, doc: Any, service_path: str, sub_id: str | None) -> Subscription:
    names = await names_of(request)
    body = ld_body(doc, names, read_paths(service_path), service_path, sub_id)
    context = services(request).settings.v2_context or None
    return parse_subscription(body, names.ctx, tenant_of(request), context, now_iso())


async def _keep(request: Request, sub: Subscription) -> None:
    svc = services(request)
    await svc.store.save_subscription(sub.tenant, sub.id, stored_form(sub))
    svc.notifier.put(sub)


async def create_subscription(request: Request) -> Response:
    doc = await read_body(request)
    path = (request.headers.get("fiware-servicepath") or "").strip() or "/#"
    sub = await _parse(request, doc, path, None)
    await _keep(request, sub)
    return Response(
        status_code=201, headers={"Location": "/v2/subscriptions/" + sub.body[V2_MEMBER]["id"]}
    )


async def list_subscriptions(request: Request) -> Response:
    accept(request)
    options = options_of(request, frozenset({"count"}))
    params = request.query_params
    limit, offset = parse_paging(
        params.get("limit"), params.get("offset"), services(request).settings.max_limit
    )
    subs = _v2_subscriptions(request)
    path = request.headers.get("fiware-servicepath")
    if path and path.strip():
        subs = [s for s in subs if s.body[V2_MEMBER]["servicePath"] == path.strip()]
    now = now_iso()
    page = [render_subscription(s, now) for s in subs[offset : offset + limit]]
    headers = {"Fiware-Total-Count": str(len(subs))} if "count" in options else None
    return json(page, headers=headers)


async def retrieve_subscription(request: Request) -> Response:
    accept(request)
    return json(render_subscription(_find(request), now_iso()))


async def update_subscription(request: Request) -> Response:
    """PATCH: the members given replace the Subscription's; counters are kept."""
    fragment = await read_body(request)
    sub = _find(request)
    meta = sub.body[V2_MEMBER]
    if not isinstance(fragment, dict) or not fragment:
        raise BadRequestData("A subscription update must be a non-empty JSON object")
    updated = await _parse(request, {**meta["doc"], **fragment}, meta["servicePath"], meta["id"])
    updated.status = sub.status
    await _keep(request, updated)
    return Response(status_code=204)


async def delete_subscription(request: Request) -> Response:
    sub = _find(request)
    svc = services(request)
    await svc.store.delete_subscription(sub.tenant, sub.id)
    svc.notifier.remove(sub.tenant, sub.id)
    return Response(status_code=204)
