"""HTTP handlers of /ngsi-ld/v1/temporal (GS CIM 009 V1.8.1 clauses 5.6.11-5.6.16,
5.7.3, 5.7.4, 6.18-6.24).

The temporal representation is the history the store records with every change of the
current state, plus what is written here directly. Writes here add to the history and
also update the current Entity (its newest instance of each attribute wins, unless the
Entity already holds a newer observation); deleting a temporal Entity deletes the Entity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import distributed, distributed_temporal, http
from cityos.api.deps import existing_tenant, now_iso, services
from cityos.api.distributed_temporal import (
    query_temporal_everywhere,
    retrieve_temporal_everywhere,
)
from cityos.api.params import parse_csv, parse_flag, parse_options, parse_paging
from cityos.api.problems import problem_response
from cityos.api.querying import entity_query_from, geo_from_body, type_test
from cityos.core import changes
from cityos.core.entities import (
    check_name,
    check_uri,
    parse_attribute_fragment,
    parse_temporal_entity,
)
from cityos.core.federation import Target
from cityos.core.geo import parse_geoq
from cityos.core.linked import apply_shape, parse_shape
from cityos.core.query.typeexpr import expand_types, parse_types
from cityos.core.temporal import (
    TemporalEntity,
    TemporalQuery,
    check_representation,
    parse_temporal_query,
    render_temporal_entity,
)
from cityos.errors import BadRequestData, InvalidRequest, ResourceNotFound
from cityos.storage.base import EntityQuery

__all__ = ["ROUTES"]

_OPTIONS = frozenset({"temporalValues", "aggregatedValues", "sysAttrs", "normalized"})


def _entity_id(request: Request) -> str:
    entity_id: str = request.path_params["entity_id"]
    if "/attrs/" in entity_id or entity_id.endswith("/attrs"):
        raise BadRequestData(f"{request.url.path} names no valid attribute")
    return check_uri(entity_id)


async def _body(request: Request) -> tuple[Any, http.RequestContext]:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    return body, rctx


def _representation(params: Mapping[str, Any]) -> tuple[str, bool]:
    """options=temporalValues|aggregatedValues, or ``format`` (clause 6.3.7), which wins."""
    options = parse_options(params, _OPTIONS)
    fmt = params.get("format")
    if fmt is not None:
        if fmt not in ("normalized", "temporalValues", "aggregatedValues", "simplified"):
            raise InvalidRequest(f"Unknown format {fmt!r}")
        return ("temporalValues" if fmt == "simplified" else fmt), "sysAttrs" in options
    return check_representation(options), "sysAttrs" in options


def _temporal_query(
    params: Mapping[str, Any],
    rctx: http.RequestContext,
    representation: str,
    limit: int,
) -> TemporalQuery:
    attrs = params.get("attrs")
    if isinstance(attrs, str):
        for name in parse_csv(attrs):
            check_name(name)
    return parse_temporal_query(
        params,
        rctx.compiled.expand,
        aggregated=representation == "aggregatedValues",
        instance_limit=limit,
    )


def _content_range(entities: list[TemporalEntity]) -> dict[str, str]:
    """Clause 6.3.10: 206 with ``Content-Range: date-time <from>-<to>/<size>`` when
    instances were left out at the instance limit."""
    for entity in entities:
        if entity.content_range is not None:
            first, last, size = entity.content_range
            return {"Content-Range": f"date-time {first}-{last}/{size}"}
    return {}


@dataclass(frozen=True, slots=True)
class _Ask:
    """What a temporal read asks for: its @context, representation and temporal query."""

    rctx: http.RequestContext
    params: Mapping[str, Any]
    representation: str
    sys_attrs: bool
    tq: TemporalQuery


def _render(
    entities: list[TemporalEntity], ask: _Ask, single: bool, headers: dict[str, str]
) -> Response:
    rctx, tq = ask.rctx, ask.tq
    lang = ask.params.get("lang")
    shape = parse_shape(ask.params)
    rendered = [
        apply_shape(
            render_temporal_entity(e, rctx.compiled, ask.representation, ask.sys_attrs, tq, lang),
            shape,
        )
        for e in entities
    ]
    if single and not rendered[0]:
        raise ResourceNotFound(f"Temporal Entity {entities[0].id} has nothing left after pick/omit")
    if not single:
        rendered = [r for r in rendered if r]
    headers = {**headers, **_content_range(entities)}
    status = 206 if "Content-Range" in headers else 200
    body: Any = rendered[0] if single else rendered
    return http.json_response(body, rctx, status=status, headers=headers)


# -- provision ---------------------------------------------------------------------------


async def create_or_update(request: Request) -> Response:
    """POST /temporal/entities (clause 5.6.11): 201 when created, 204 when instances were
    added to an existing temporal Entity."""
    body, rctx = await _body(request)
    entity = parse_temporal_entity(body, rctx.compiled, now_iso())
    tenant = http.tenant_of(request)
    created = await services(request).store.temporal_add(
        tenant, entity, changes.absorb_history(entity), must_exist=False
    )
    if not created:
        return Response(status_code=204)
    return http.created("temporal/entities", entity["id"], tenant)


async def append_attrs(request: Request) -> Response:
    """POST /temporal/entities/{id}/attrs (clause 5.6.12)."""
    entity_id = _entity_id(request)
    body, rctx = await _body(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object of attributes")
    if body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id}")
    fragment = {k: v for k, v in body.items() if k not in ("id", "type", "@context")}
    if not fragment:
        raise BadRequestData("The body has no attributes to add")
    entity = parse_temporal_entity(
        {**fragment, "id": entity_id}, rctx.compiled, now_iso(), require_type=False
    )
    tenant = http.tenant_of(request)
    await services(request).store.temporal_add(
        tenant, entity, changes.absorb_history(entity), must_exist=True
    )
    return Response(status_code=204)


async def delete_temporal_entity(request: Request) -> Response:
    """DELETE /temporal/entities/{id} (clause 5.6.16)."""
    entity_id = _entity_id(request)
    svc = services(request)
    tenant = await existing_tenant(request)
    await svc.store.temporal_delete_entity(tenant, entity_id, changes.delete_if_present(entity_id))
    return Response(status_code=204)


def _attr(request: Request, rctx: http.RequestContext) -> str:
    return rctx.compiled.expand(check_name(request.path_params["attr"]))


async def delete_attribute(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attr} (clause 5.6.13)."""
    entity_id = _entity_id(request)
    svc = services(request)
    rctx = await http.request_context(request, svc.contexts)
    attr = _attr(request, rctx)
    params = request.query_params
    dataset_id = params.get("datasetId") or None
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")
    delete_all = parse_flag(params, "deleteAll")
    tenant = await existing_tenant(request)
    await svc.store.temporal_delete_attribute(
        tenant, entity_id, attr, dataset_id, delete_all, now_iso()
    )
    return Response(status_code=204)


def _instance_id(request: Request) -> str:
    return check_uri(request.path_params["instance_id"], "instanceId")


async def modify_instance(request: Request) -> Response:
    """PATCH /temporal/entities/{id}/attrs/{attr}/{instanceId} (clause 5.6.14)."""
    entity_id = _entity_id(request)
    body, rctx = await _body(request)
    attr_name = check_name(request.path_params["attr"])
    instance_id = _instance_id(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    # The body is a fragment naming the attribute: {"speed": {...}} (or the instance itself).
    member = body.get(attr_name, body)
    if isinstance(member, list):
        if len(member) != 1:
            raise BadRequestData("The body must hold exactly one attribute instance")
        member = member[0]
    fragment = parse_attribute_fragment(
        attr_name, {k: v for k, v in member.items() if k != "@context"}, rctx.compiled, now_iso()
    )
    tenant = http.tenant_of(request)
    await services(request).store.temporal_modify_instance(
        tenant, entity_id, rctx.compiled.expand(attr_name), instance_id, fragment, now_iso()
    )
    return Response(status_code=204)


async def delete_instance(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId} (clause 5.6.15)."""
    entity_id = _entity_id(request)
    svc = services(request)
    rctx = await http.request_context(request, svc.contexts)
    attr = _attr(request, rctx)
    instance_id = _instance_id(request)
    tenant = await existing_tenant(request)
    await svc.store.temporal_delete_instance(tenant, entity_id, attr, instance_id)
    return Response(status_code=204)


# -- consumption -------------------------------------------------------------------------


async def retrieve(request: Request) -> Response:
    """GET /temporal/entities/{id} (clause 5.7.3)."""
    svc = services(request)
    accept = http.negotiate(request)
    entity_id = _entity_id(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    params = request.query_params
    representation, sys_attrs = _representation(params)
    tq = _temporal_query(params, rctx, representation, svc.settings.temporal_max_instances)
    parse_shape(params)  # bad pick/omit is 400 whether or not the Entity exists
    ask = _Ask(rctx, params, representation, sys_attrs, tq)
    targets = await _temporal_targets(request, "retrieveTemporal", entity_id, None, tq)
    if targets:  # the history the sources keep of this Entity, joined (clause 4.3.6)
        sel = distributed.Selection({**params, "id": entity_id}, list(tq.attrs) or None, rctx)
        local = await _local_temporal(request, entity_id, tq)
        merged, headers = await retrieve_temporal_everywhere(request, targets, local, sel, tq)
        if merged is None:
            missing = ResourceNotFound(f"Temporal Entity {entity_id} does not exist")
            return problem_response(missing, headers)
        return _render([merged], ask, True, headers)
    tenant = await existing_tenant(request)
    entity = await svc.store.temporal_entity(tenant, entity_id, tq)
    if (
        tq.attrs
        and not (entity.attrs or entity.aggregates)
        and not await _has_attrs(request, tenant, entity_id, tq)
    ):
        raise ResourceNotFound(f"Temporal Entity {entity_id} has none of the attributes asked for")
    return _render([entity], ask, True, {})


async def _temporal_targets(
    request: Request, op: str, entity_id: str | None, types: Any, tq: TemporalQuery
) -> list[Target]:
    if not distributed_temporal.forwarded(request.query_params):
        return []
    return await distributed.read_plan(request, (op,), entity_id, types, tq.attrs or None)


async def _local_temporal(
    request: Request, entity_id: str, tq: TemporalQuery
) -> TemporalEntity | None:
    try:
        return await services(request).store.temporal_entity(http.tenant_of(request), entity_id, tq)
    except ResourceNotFound:
        return None


async def _has_attrs(request: Request, tenant: str, entity_id: str, tq: TemporalQuery) -> bool:
    """Whether the attributes exist at all, outside the query's time window."""
    plain = TemporalQuery(attrs=tq.attrs, last_n=1)
    found = await services(request).store.temporal_entity(tenant, entity_id, plain)
    return bool(found.attrs)


async def query(request: Request) -> Response:
    """GET /temporal/entities (clause 5.7.4)."""
    svc = services(request)
    accept = http.negotiate(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    params = request.query_params
    representation, sys_attrs = _representation(params)
    # clause 6.18.3.1, as for Entities: type, attrs, q or a geoQ must narrow the query.
    if not any(k in params for k in ("type", "attrs", "q", "georel", "local")):
        raise BadRequestData("A temporal query needs one of type, attrs, q, a geoQ or local=true")
    tq = _temporal_query(params, rctx, representation, svc.settings.temporal_max_instances)
    geo = parse_geoq(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
    )
    paging = parse_paging(params, svc.settings.default_limit, svc.settings.max_limit)
    ask = _Ask(rctx, params, representation, sys_attrs, tq)
    tenant = http.tenant_of(request)
    types = params.get("type")
    type_ok = type_test(expand_types(parse_types(types), rctx.compiled.expand)) if types else None
    targets = await _temporal_targets(request, "queryTemporal", None, type_ok, tq)
    if targets:  # clause 4.3.6: the local histories and the sources', merged by Entity
        window = paging.offset + paging.limit
        local_query = entity_query_from(
            params, rctx.compiled, tenant, geo, replace(paging, offset=0, limit=window)
        )
        local: list[TemporalEntity] = []
        if await svc.store.tenant_exists(tenant):
            local, _ = await svc.store.query_temporal(local_query, tq)
        sel = distributed.Selection(dict(params), list(tq.attrs) or None, rctx)
        found, headers = await query_temporal_everywhere(request, targets, local, sel, tq, window)
        if paging.count:
            headers["NGSILD-Results-Count"] = str(len(found))
        return _render(found[paging.offset : window], ask, False, headers)
    return await _answer(request, ask, [params], geo, paging)


async def _answer(
    request: Request, ask: _Ask, selections: Sequence[Mapping[str, Any]], geo: Any, paging: Any
) -> Response:
    """Runs a temporal query selecting the Entities that any of ``selections`` (query
    parameters, or one per EntitySelector of a POST query) selects, and renders it as
    ``ask`` says."""
    svc = services(request)
    tenant = await existing_tenant(request)
    queries: list[EntityQuery] = [
        entity_query_from(selection, ask.rctx.compiled, tenant, geo, paging)
        for selection in selections
    ]
    entities, count = await svc.store.query_temporal(queries[0], ask.tq, queries[1:])
    headers = {} if count is None else {"NGSILD-Results-Count": str(count)}
    return _render(entities, ask, False, headers)


async def query_post(request: Request) -> Response:
    """POST /temporal/entityOperations/query (clause 5.7.4, 6.24): a Query in the body with
    ``temporalQ``."""
    body, rctx = await _body(request)
    svc = services(request)
    rctx = http.RequestContext(rctx.compiled, rctx.value, http.negotiate(request))
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData('The body must be a Query: {"type": "Query", ...}')
    params = request.query_params
    representation, sys_attrs = _representation(params)
    temporal_q = body.get("temporalQ")
    if temporal_q is not None and not isinstance(temporal_q, dict):
        raise BadRequestData("temporalQ must be a JSON object")
    merged: dict[str, Any] = {**params, **(temporal_q or {})}
    if "attrs" in body:
        merged["attrs"] = body["attrs"]
    tq = _temporal_query(merged, rctx, representation, svc.settings.temporal_max_instances)
    entities_filter = body.get("entities") or []
    if not isinstance(entities_filter, list):
        raise BadRequestData("entities must be an array of EntitySelectors")
    shared = {key: body[key] for key in ("q", "scopeQ", "attrs") if key in body}
    selections = [{**selector, **shared} for selector in _selectors(entities_filter)] or [shared]
    if not entities_filter and not shared and "geoQ" not in body:
        raise BadRequestData("A temporal query needs entities, attrs, q or geoQ")
    paging = parse_paging(params, svc.settings.default_limit, svc.settings.max_limit)
    ask = _Ask(rctx, params, representation, sys_attrs, tq)
    return await _answer(request, ask, selections, geo_from_body(body), paging)


def _selectors(items: list[Any]) -> list[dict[str, Any]]:
    """EntitySelectors (clause 5.2.33) as query parameters, one set per selector: a
    temporal Entity is selected when any selector selects it."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise BadRequestData("Each EntitySelector must be a JSON object")
        if not isinstance(item.get("type"), str) or not item["type"]:
            raise BadRequestData("An EntitySelector needs a type, a non-empty string")
        selection: dict[str, Any] = {"type": item["type"]}
        if "id" in item:
            selection["id"] = [check_uri(item["id"])]
        if "idPattern" in item:
            selection["idPattern"] = item["idPattern"]
        out.append(selection)
    return out


_TEMPORAL = frozenset(
    {
        "timerel",
        "timeAt",
        "endTimeAt",
        "timeproperty",
        "lastN",
        "attrs",
        "options",
        "format",
        "aggrMethods",
        "aggrPeriodDuration",
        "lang",
        "local",
        "datasetId",
        "pick",
        "omit",
    }
)
_QUERY = _TEMPORAL | {
    "id",
    "type",
    "idPattern",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "scopeQ",
    "limit",
    "offset",
    "count",
    "orderBy",
}
_WRITE = frozenset({"local"})

ROUTES: list[tuple[str, Any, list[str], frozenset[str] | None]] = [
    ("/temporal/entities", query, ["GET"], _QUERY),
    ("/temporal/entities", create_or_update, ["POST"], _WRITE),
    ("/temporal/entityOperations/query", query_post, ["POST"], _QUERY),
    (
        "/temporal/entities/{entity_id:path}/attrs/{attr}/{instance_id:path}",
        modify_instance,
        ["PATCH"],
        _WRITE,
    ),
    (
        "/temporal/entities/{entity_id:path}/attrs/{attr}/{instance_id:path}",
        delete_instance,
        ["DELETE"],
        _WRITE,
    ),
    (
        "/temporal/entities/{entity_id:path}/attrs/{attr}",
        delete_attribute,
        ["DELETE"],
        frozenset({"datasetId", "deleteAll", "local"}),
    ),
    ("/temporal/entities/{entity_id:path}/attrs", append_attrs, ["POST"], _WRITE),
    ("/temporal/entities/{entity_id:path}", retrieve, ["GET"], _TEMPORAL),
    ("/temporal/entities/{entity_id:path}", delete_temporal_entity, ["DELETE"], _WRITE),
]
