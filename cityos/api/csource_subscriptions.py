"""HTTP handlers of /ngsi-ld/v1/csourceSubscriptions (GS CIM 009 V1.8.1 clauses 5.11.2-5.11.6,
6.12-6.13 of the binding): subscriptions to context source registrations.

They are Subscriptions (clause 5.2.12) and are validated, stored and rendered as such
(``api.subscriptions``); their notifications come from
:class:`~cityos.csource_notifier.CSourceNotifier`, kept in ``app.state.csource_notifier``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import now_iso, services
from cityos.api.params import parse_paging
from cityos.api.subscriptions import notification_context, page_links, render_subscription
from cityos.core.csource_subscriptions import apply_csource_fragment, parse_csource_subscription
from cityos.core.entities import check_uri
from cityos.core.jsonld import CompiledContext
from cityos.core.subscriptions import Subscription
from cityos.csource_notifier import CSourceNotifier
from cityos.errors import AlreadyExists, ResourceNotFound
from cityos.notifier import stored_form

__all__ = ["ROUTES", "csource_notifier"]

PATH = "/ngsi-ld/v1/csourceSubscriptions"
_ID = "Context source registration subscription id"


def csource_notifier(request: Request) -> CSourceNotifier:
    notifier: CSourceNotifier = request.app.state.csource_notifier
    return notifier


def _render(sub: Subscription, now: str, ctx: CompiledContext) -> dict[str, Any]:
    """As an Entity Subscription, but without notificationTrigger, which selects Entity
    changes and has no meaning here (clause 5.11.7 notifies by triggerReason)."""
    out = render_subscription(sub, now, ctx)
    if "notificationTrigger" not in sub.body:
        out.pop("notificationTrigger", None)
    return out


def _find(request: Request) -> Subscription:
    sub_id = check_uri(request.path_params["sub_id"], _ID)
    sub = csource_notifier(request).subs.get((http.tenant_of(request), sub_id))
    if sub is None:
        raise ResourceNotFound(f"Context source registration subscription {sub_id} does not exist")
    return sub


async def create_csource_subscription(request: Request) -> Response:
    """POST /csourceSubscriptions (clause 5.11.2): 201 with Location, 409 if the id is
    taken; then the registrations it matches now are notified."""
    http.check_content_type(request)
    svc, notifier = services(request), csource_notifier(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    tenant = http.tenant_of(request)
    body, context = await notification_context(svc.contexts, body, rctx.value)
    sub = parse_csource_subscription(body, rctx.compiled, tenant, context, now_iso())
    if (tenant, sub.id) in notifier.subs:
        raise AlreadyExists(f"Context source registration subscription {sub.id} already exists")
    await svc.store.save_csource_subscription(tenant, sub.id, stored_form(sub))
    notifier.put(sub)
    await notifier.notify_matching(sub)
    return Response(status_code=201, headers={"Location": f"{PATH}/{quote(sub.id, safe=':')}"})


async def query_csource_subscriptions(request: Request) -> Response:
    """GET /csourceSubscriptions (clause 5.11.5): the tenant's, by id, paged."""
    svc = services(request)
    rctx = await http.request_context(request, svc.contexts, accept=http.negotiate(request))
    paging = parse_paging(request.query_params, svc.settings.default_limit, svc.settings.max_limit)
    tenant = http.tenant_of(request)
    subs = [s for (t, _), s in sorted(csource_notifier(request).subs.items()) if t == tenant]
    now = now_iso()
    page = [_render(s, now, rctx.compiled) for s in subs[paging.offset :][: paging.limit]]
    headers = {"NGSILD-Results-Count": str(len(subs))} if paging.count else {}
    links = page_links(PATH, paging.limit, paging.offset, len(subs))
    if links:
        headers["Link"] = links
    return http.json_response(page, rctx, headers=headers)


async def retrieve_csource_subscription(request: Request) -> Response:
    """GET /csourceSubscriptions/{id} (clause 5.11.4)."""
    svc = services(request)
    accept = http.negotiate(request)
    sub = _find(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    return http.json_response(_render(sub, now_iso(), rctx.compiled), rctx)


async def update_csource_subscription(request: Request) -> Response:
    """PATCH /csourceSubscriptions/{id} (clause 5.11.3): each member given replaces the
    stored one; 204. The registrations it matches then are notified (clause 5.11.7)."""
    svc, notifier = services(request), csource_notifier(request)
    sub = _find(request)
    # A body that is not JSON is InvalidRequest (clause 6.3.7) whatever it claims to be.
    body = await http.read_json(request, svc.settings.max_body_bytes)
    http.check_content_type(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    rctx = await http.request_context(request, svc.contexts, body)
    updated = apply_csource_fragment(sub, body, rctx.compiled, now_iso())
    await svc.store.save_csource_subscription(sub.tenant, sub.id, stored_form(updated))
    notifier.put(updated)
    await notifier.notify_matching(updated)
    return Response(status_code=204)


async def delete_csource_subscription(request: Request) -> Response:
    """DELETE /csourceSubscriptions/{id} (clause 5.11.6): its pending notifications go too."""
    sub = _find(request)
    await services(request).store.delete_csource_subscription(sub.tenant, sub.id)
    csource_notifier(request).remove(sub.tenant, sub.id)
    return Response(status_code=204)


_LIST = frozenset({"limit", "offset", "count"})
ROUTES: list[tuple[str, Any, list[str], frozenset[str] | None]] = [
    ("/csourceSubscriptions", query_csource_subscriptions, ["GET"], _LIST),
    ("/csourceSubscriptions", create_csource_subscription, ["POST"], frozenset()),
    ("/csourceSubscriptions/{sub_id:path}", retrieve_csource_subscription, ["GET"], frozenset()),
    ("/csourceSubscriptions/{sub_id:path}", update_csource_subscription, ["PATCH"], frozenset()),
    ("/csourceSubscriptions/{sub_id:path}", delete_csource_subscription, ["DELETE"], frozenset()),
]
