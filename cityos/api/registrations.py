"""HTTP handlers of /ngsi-ld/v1/csourceRegistrations (GS CIM 009 V1.8.1 clauses 5.9, 5.10,
6.8-6.9): register, retrieve, query, update and delete context source registrations.

The registrations of a tenant are few (one per neighbouring platform or data provider),
so a query reads them all and matches them in Python (``core.registration_matching``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.csource_subscriptions import csource_notifier
from cityos.api.deps import now_iso, services
from cityos.api.params import parse_csv, parse_ids, parse_options, parse_paging
from cityos.core import geo
from cityos.core.entities import check_name, check_uri
from cityos.core.federation import conflict
from cityos.core.jsonld import CompiledContext
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types
from cityos.core.registration_matching import RegistrationQuery, matches, q_attributes
from cityos.core.registrations import (
    GEO_MEMBERS,
    Registration,
    check_id_pattern,
    merge_registration,
    parse_registration,
    render_registration,
)
from cityos.core.temporal import now_us, parse_temporal_query
from cityos.errors import BadRequestData, Conflict, ResourceNotFound

__all__ = ["ROUTES"]

PATH = "/ngsi-ld/v1/csourceRegistrations"
_ID = "Context source registration id"
_OPTIONS = frozenset({"sysAttrs"})  # clause 6.9.3.1: the only option of a registration


async def create_registration(request: Request) -> Response:
    """POST /csourceRegistrations (clause 5.9.2): 201 with Location, 409 if the id is taken."""
    http.check_content_type(request)
    svc = services(request)
    tenant = http.tenant_of(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    reg = parse_registration(body, rctx.compiled, now_iso())
    await _check_conflict(request, tenant, reg)
    notifier = csource_notifier(request)
    await svc.store.create_registration(tenant, reg.id, reg.to_doc(), notifier.outbox(tenant))
    request.app.state.federation.forget(tenant)
    notifier.kick()
    return Response(status_code=201, headers={"Location": f"{PATH}/{quote(reg.id, safe=':')}"})


async def _check_conflict(request: Request, tenant: str, reg: Registration) -> None:
    """409 Conflict when an exclusive or redirect registration contradicts what is held
    here or registered already (clauses 4.3.6.3, 5.9.2.4)."""
    if reg.members.get("mode") not in ("exclusive", "redirect"):
        return
    store = services(request).store
    local = {}
    for info in reg.information:
        for e in info.entities or ():
            if e.id is not None:
                with contextlib.suppress(ResourceNotFound):
                    local[e.id] = await store.get_entity(tenant, e.id)
    others = [Registration.from_doc(d) for d in await store.registrations(tenant)]
    reason = conflict(reg, others, local)
    if reason is not None:
        raise Conflict(reason)


async def retrieve_registration(request: Request) -> Response:
    """GET /csourceRegistrations/{id} (clause 5.10.1)."""
    svc = services(request)
    accept = http.negotiate(request)
    reg_id = check_uri(request.path_params["registration_id"], _ID)
    sys_attrs = "sysAttrs" in parse_options(request.query_params, _OPTIONS)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    doc = await svc.store.get_registration(http.tenant_of(request), reg_id)
    body = render_registration(Registration.from_doc(doc), rctx.compiled, sys_attrs)
    return http.json_response(body, rctx)


async def query_registrations(request: Request) -> Response:
    """GET /csourceRegistrations (clause 5.10.2): the registrations whose information may
    hold the Entities and Attributes asked for; paged like Entity queries."""
    svc = services(request)
    accept = http.negotiate(request)
    params = request.query_params
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    query = _registration_query(params, rctx.compiled)
    paging = parse_paging(params, svc.settings.default_limit, svc.settings.max_limit)
    sys_attrs = "sysAttrs" in parse_options(params, _OPTIONS)
    now = now_us()
    stored = map(Registration.from_doc, await svc.store.registrations(http.tenant_of(request)))
    # An expired registration is invalid (clause 5.2.9, expiresAt): it stays readable and
    # deletable by id, but no query discovers it.
    found = [reg for reg in stored if not reg.expired(now) and matches(reg, query)]
    page = found[paging.offset : paging.offset + paging.limit]
    headers = {"NGSILD-Results-Count": str(len(found))} if paging.count else {}
    links = _page_links(params, paging.limit, paging.offset, len(found))
    if links:
        headers["Link"] = links
    rendered = [render_registration(reg, rctx.compiled, sys_attrs) for reg in page]
    return http.json_response(rendered, rctx, headers=headers)


def _registration_query(params: Mapping[str, str], ctx: CompiledContext) -> RegistrationQuery:
    """The query parameters of clause 6.8.3.2 with every name expanded by ``ctx``."""
    # Clause 5.10.2.4: type, attrs, q or a geo-query must narrow the query. csf, which
    # selects by registration properties, narrows it as well.
    if not any(k in params for k in ("type", "attrs", "q", "csf", "georel")):
        raise BadRequestData("A query needs at least one of type, attrs, q, csf or a geo-query")
    q = expand_q(parse_q(params["q"]), ctx.expand) if "q" in params else None
    attrs = {ctx.expand(check_name(a)) for a in parse_csv(params.get("attrs"))}
    gq = geo.parse_geoq(
        params.get("georel"), params.get("geometry"), params.get("coordinates"),
        params.get("geoproperty"),
    )  # fmt: skip
    if gq is not None:
        attrs.add(ctx.expand(gq.geoproperty))
    id_pattern = params.get("idPattern")
    if id_pattern is not None:
        check_id_pattern(id_pattern)
    tq = parse_temporal_query(
        {k: params[k] for k in ("timerel", "timeAt", "endTimeAt", "timeproperty") if k in params},
        ctx.expand,
        aggregated=False,
    )
    return RegistrationQuery(
        types=expand_types(parse_types(params["type"]), ctx.expand) if "type" in params else None,
        ids=tuple(parse_ids(params)),
        id_pattern=id_pattern,
        attrs=frozenset(attrs | (q_attributes(q) if q is not None else set())),
        csf=expand_q(parse_q(params["csf"]), ctx.expand) if "csf" in params else None,
        scope_q=parse_scope_q(params["scopeQ"]) if "scopeQ" in params else None,
        geo=gq,
        geo_member=_geo_member(gq, ctx),
        timerel=tq.timerel,
        time_at=tq.time_at or 0,
        end_time_at=tq.end_time_at or 0,
        timeproperty=tq.timeproperty,
    )


def _geo_member(gq: geo.GeoQuery | None, ctx: CompiledContext) -> str | None:
    """The registration member (location, observationSpace, operationSpace) a geo-query's
    geoproperty names, compared as IRIs."""
    if gq is None:
        return None
    wanted = ctx.expand(gq.geoproperty)
    return next((m for m in GEO_MEMBERS if ctx.expand(m) == wanted), None)


def _page_links(params: Mapping[str, str], limit: int, offset: int, total: int) -> str:
    """Link headers to the previous and next pages (clause 6.3.13), keeping the query."""
    kept = [(k, v) for k, v in params.items() if k not in ("limit", "offset")]

    def link(at: int, rel: str) -> str:
        query = urlencode([*kept, ("limit", limit), ("offset", at)], safe=",:")
        return f'<{PATH}?{query}>;rel="{rel}";type="application/ld+json"'

    links = []
    if offset > 0:
        links.append(link(max(offset - limit, 0), "prev"))
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    return ",".join(links)


async def update_registration(request: Request) -> Response:
    """PATCH /csourceRegistrations/{id} (clause 5.9.3): the fragment is merged in the write
    transaction itself; 204."""
    http.check_content_type(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    svc = services(request)
    reg_id = check_uri(request.path_params["registration_id"], _ID)
    tenant = http.tenant_of(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    ctx = (await http.request_context(request, svc.contexts, body)).compiled
    now = now_iso()

    def change(doc: Any) -> Any:
        return merge_registration(Registration.from_doc(doc), body, ctx, now).to_doc()

    notifier = csource_notifier(request)
    await svc.store.update_registration(tenant, reg_id, change, notifier.outbox(tenant))
    request.app.state.federation.forget(tenant)
    notifier.kick()
    return Response(status_code=204)


async def delete_registration(request: Request) -> Response:
    """DELETE /csourceRegistrations/{id} (clause 5.9.4); 204."""
    svc = services(request)
    reg_id = check_uri(request.path_params["registration_id"], _ID)
    tenant = http.tenant_of(request)
    notifier = csource_notifier(request)
    await svc.store.delete_registration(tenant, reg_id, notifier.outbox(tenant))
    request.app.state.federation.forget(tenant)
    notifier.kick()
    return Response(status_code=204)


_QUERY = frozenset(
    {
        *("id", "idPattern", "type", "attrs", "q", "csf", "scopeQ"),
        *("georel", "geometry", "coordinates", "geoproperty"),
        *("timerel", "timeAt", "endTimeAt", "timeproperty"),
        *("limit", "offset", "count", "options"),
    }
)
_RETRIEVE = frozenset({"options"})
ROUTES: list[tuple[str, Any, list[str], frozenset[str] | None]] = [
    ("/csourceRegistrations", query_registrations, ["GET"], _QUERY),
    ("/csourceRegistrations", create_registration, ["POST"], frozenset()),
    ("/csourceRegistrations/{registration_id:path}", retrieve_registration, ["GET"], _RETRIEVE),
    ("/csourceRegistrations/{registration_id:path}", update_registration, ["PATCH"], frozenset()),
    ("/csourceRegistrations/{registration_id:path}", delete_registration, ["DELETE"], frozenset()),
]
