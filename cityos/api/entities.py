"""HTTP handlers of /ngsi-ld/v1/entities (GS CIM 009 V1.8.1 clauses 5.6, 5.7, 6.4-6.7).

Each handler parses the request, calls ``core`` and the store, and renders. No SQL, no
update semantics here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import distributed, http
from cityos.api.deps import Services, existing_tenant, now_iso, services
from cityos.api.params import parse_csv, parse_flag, parse_options, render_options
from cityos.api.problems import problem_response
from cityos.api.querying import (
    View,
    entity_query,
    local_window,
    parse_projection,
    render_entities,
    type_test,
)
from cityos.core import changes
from cityos.core.entities import (
    check_name,
    check_uri,
    parse_attribute,
    parse_attribute_fragment,
    parse_entity,
    parse_types,
)
from cityos.core.linked import parse_join
from cityos.core.model import StoredEntity
from cityos.core.operations import UpdateResult
from cityos.errors import BadRequestData, InvalidRequest, MethodNotAllowed, ResourceNotFound
from cityos.storage.base import Change, EntityQuery

__all__ = ["ROUTES"]

# Clause 4.20: the operations by which a source can answer a retrieval or a query.
_RETRIEVAL_OPS = ("retrieveEntity", "queryEntity", "queryBatch")
_QUERY_OPS = ("queryEntity", "queryBatch")


async def _write_context(
    request: Request, allowed: tuple[str, ...] = (http.JSON, http.JSONLD)
) -> tuple[Any, http.RequestContext]:
    http.check_content_type(request, allowed)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    return body, rctx


def _entity_id(request: Request) -> str:
    entity_id: str = request.path_params["entity_id"]
    if entity_id.endswith("/attrs") or "/attrs/" in entity_id:
        # /entities/{id}/attrs[/{attr}] with a method those resources do not have
        raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    return check_uri(entity_id)


def _attr_name(request: Request, rctx: http.RequestContext) -> str:
    return rctx.compiled.expand(check_name(request.path_params["attr"]))


def update_result_response(result: UpdateResult) -> Response:
    """204 when everything was updated, else 207 with an UpdateResult (clause 5.2.18).
    Attribute names are given expanded, as the ETSI suite expects."""
    if not result.not_updated:
        return Response(status_code=204)
    body = {
        "updated": result.updated,
        "notUpdated": [{"attributeName": n, "reason": r} for n, r in result.not_updated],
    }
    return http.json_response(body, None, status=207)


async def create_entity(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity = parse_entity(body, rctx.compiled, now_iso())
    tenant = http.tenant_of(request)
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        part = entity if kept is None else {**entity, "attrs": _only(entity["attrs"], kept)}
        await store.write(tenant, entity["id"], changes.create(part))
        return http.created("entities", entity["id"], tenant)

    plan = await distributed.plan_write(
        request, "createEntity", entity["id"], entity["type"], entity["attrs"]
    )
    if plan is None:
        return await local(None)
    forward = distributed.Forward(
        "POST", "/entities", body, rctx.compiled, _forwarded_params(request)
    )
    return await plan.run(local, forward, created=True)


def _only(attrs: dict[str, Any], kept: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k in kept}


def _path(entity_id: str, *rest: str) -> str:
    return "/".join(("/entities", quote(entity_id, safe=":"), *rest))


async def retrieve_entity(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    entity_id = _entity_id(request)
    tenant = http.tenant_of(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    projection = parse_projection(request.query_params, rctx.compiled)
    render_options(request.query_params)  # a bad option is 400 whether or not the Entity exists
    parse_join(request.query_params)
    targets = await distributed.read_plan(
        request, _RETRIEVAL_OPS, entity_id, None, projection.attrs
    )
    headers: dict[str, str] = {}
    if targets:  # clause 5.7.1.4: the Entity as the local store and its sources hold it
        sel = distributed.Selection({"id": entity_id}, projection.attrs, rctx)
        entity, failed = await distributed.retrieve_everywhere(
            request, targets, await _local_entity(svc, tenant, entity_id), sel
        )
        headers = distributed.warning_headers(failed)
        if entity is None:
            return problem_response(ResourceNotFound(f"Entity {entity_id} not found"), headers)
    else:
        await existing_tenant(request)
        entity = await svc.store.get_entity(tenant, entity_id)
    if "attrs" in request.query_params and not any(
        a in entity.get("attrs", {}) for a in projection.attrs or []
    ):
        raise ResourceNotFound(
            f"Entity {entity_id} has none of the attributes {request.query_params['attrs']}"
        )
    view = View(rctx, request.query_params, projection, svc.store, tenant)
    response = await render_entities([entity], view, single=True, headers=headers)
    if response.body == b"{}":
        raise ResourceNotFound(f"Entity {entity_id} has nothing left after pick/omit")
    return response


async def _local_entity(svc: Services, tenant: str, entity_id: str) -> StoredEntity | None:
    try:
        return await svc.store.get_entity(tenant, entity_id)
    except ResourceNotFound:
        return None


async def query_entities(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    query, projection = entity_query(
        request.query_params, rctx.compiled, http.tenant_of(request), svc.settings
    )
    view = View(rctx, request.query_params, projection, svc.store, query.tenant)
    targets = await distributed.read_plan(
        request, _QUERY_OPS, None, type_test(query.types), projection.attrs
    )
    if targets:  # clause 5.7.2.4: the local Entities and the sources' answers, merged
        if query.order_by:
            raise BadRequestData(
                "orderBy needs local=true here: the query reaches registered context sources"
            )  # clause 5.7.2.4 (V1.9.1)
        sel = distributed.Selection(dict(request.query_params), projection.attrs, rctx)
        entities, count, failed = await distributed.query_everywhere(
            request, targets, local_window(svc.store, query), sel, (query.offset, query.limit)
        )
        headers = distributed.warning_headers(failed)
        if query.count:
            headers["NGSILD-Results-Count"] = str(count)
        return await render_entities(entities, view, headers=headers)
    await http.require_tenant(request, await svc.store.tenant_exists(query.tenant))
    page = await svc.store.query_entities(query)
    headers = {} if page.count is None else {"NGSILD-Results-Count": str(page.count)}
    return await render_entities(page.entities, view, headers=headers)


async def replace_entity(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    if isinstance(body, dict) and body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id} in the URL")
    entity = parse_entity(
        {**body, "id": entity_id} if isinstance(body, dict) else body, rctx.compiled, now_iso()
    )
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        part = entity if kept is None else {**entity, "attrs": _only(entity["attrs"], kept)}
        await store.write(http.tenant_of(request), entity_id, changes.replace(part))
        return Response(status_code=204)

    plan = await distributed.plan_write(
        request, "replaceEntity", entity_id, entity["type"], entity["attrs"]
    )
    if plan is None:
        return await local(None)
    forward = distributed.Forward(
        "PUT", _path(entity_id), body, rctx.compiled, _forwarded_params(request)
    )
    return await plan.run(local, forward)


async def merge_entity(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    fragment = _fragment(body, _entity_id(request), rctx)
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        await store.write(
            http.tenant_of(request), fragment.entity_id, changes.merge(_cut(fragment, kept))
        )
        return Response(status_code=204)

    return await _distribute(request, "mergeEntity", fragment, local, ("PATCH", body, rctx))


def _cut(fragment: changes.Fragment, kept: frozenset[str] | None) -> changes.Fragment:
    return fragment if kept is None else replace(fragment, attrs=_only(fragment.attrs, kept))


async def _distribute(
    request: Request,
    op: str,
    fragment: changes.Fragment,
    local: distributed.LocalWrite,
    how: tuple[str, Any, http.RequestContext],
    *rest: str,
) -> Response:
    """A write of the fragment's Attributes, locally and to the sources registered for
    them (clause 4.3.6.3); ``how`` is the method, body and @context forwarded."""
    plan = await distributed.plan_write(request, op, fragment.entity_id, None, fragment.attrs)
    if plan is None:
        return await local(None)
    method, body, rctx = how
    path = _path(fragment.entity_id, *rest)
    forward = distributed.Forward(method, path, body, rctx.compiled, _forwarded_params(request))
    return await plan.run(local, forward)


def _forwarded_params(request: Request) -> dict[str, str] | None:
    """The request's parameters for its sources: all but ``local``."""
    return {k: v for k, v in request.query_params.items() if k != "local"} or None


def _fragment(body: Any, entity_id: str, rctx: http.RequestContext) -> changes.Fragment:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    if body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id} in the URL")
    return changes.fragment_from_body(body, entity_id, rctx.compiled, now_iso())


async def delete_entity(request: Request) -> Response:
    svc = services(request)
    entity_id = _entity_id(request)
    types = None
    if "type" in request.query_params:
        rctx = await http.request_context(request, svc.contexts)
        types = parse_types(parse_csv(request.query_params["type"]), rctx.compiled)

    async def local(kept: frozenset[str] | None) -> Response:
        await svc.store.write(http.tenant_of(request), entity_id, changes.delete(entity_id, types))
        return Response(status_code=204)

    plan = await distributed.plan_write(request, "deleteEntity", entity_id, types, None)
    if plan is None:
        return await local(None)
    forward = distributed.Forward("DELETE", _path(entity_id), params=_forwarded_params(request))
    return await plan.run(local, forward)


async def append_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request)
    fragment = _fragment(body, _entity_id(request), rctx)
    no_overwrite = "noOverwrite" in parse_options(request.query_params, frozenset({"noOverwrite"}))
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        change = changes.append(_cut(fragment, kept), no_overwrite)
        outcome = await store.write(http.tenant_of(request), fragment.entity_id, change)
        return update_result_response(outcome.result)

    return await _distribute(request, "appendAttrs", fragment, local, ("POST", body, rctx), "attrs")


async def update_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    fragment = _fragment(body, _entity_id(request), rctx)
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        change = changes.update(_cut(fragment, kept))
        outcome = await store.write(http.tenant_of(request), fragment.entity_id, change)
        return update_result_response(outcome.result)

    return await _distribute(
        request, "updateAttrs", fragment, local, ("PATCH", body, rctx), "attrs"
    )


async def partial_update_attr(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    entity_id = _entity_id(request)
    name = _attr_name(request, rctx)
    now = now_iso()
    fragments = _partial_fragments(request.path_params["attr"], body, rctx, now)
    change = changes.partial_update(entity_id, name, fragments, now)
    return await _attribute_write(request, "updateAttrs", entity_id, name, change, ("PATCH", body))


def _partial_fragments(
    raw_name: str, body: Any, rctx: http.RequestContext, now: str
) -> list[dict[str, Any]]:
    items = body if isinstance(body, list) else [body]
    return [parse_attribute_fragment(raw_name, item, rctx.compiled, now) for item in items]


async def replace_attr(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    if request.path_params["attr"] in ("scope", "id", "type"):
        raise BadRequestData(f"{request.path_params['attr']} is an Entity member, not an Attribute")
    name = _attr_name(request, rctx)
    now = now_iso()
    instances = parse_attribute(request.path_params["attr"], body, rctx.compiled, now)
    change = changes.replace_attribute(entity_id, name, instances, now)
    return await _attribute_write(request, "replaceAttrs", entity_id, name, change, ("PUT", body))


async def _attribute_write(
    request: Request, op: str, entity_id: str, name: str, change: Change, how: tuple[str, Any]
) -> Response:
    """A write of one Attribute, locally and/or to the sources registered for it."""
    store = services(request).store

    async def local(kept: frozenset[str] | None) -> Response:
        await store.write(http.tenant_of(request), entity_id, change)
        return Response(status_code=204)

    plan = await distributed.plan_write(request, op, entity_id, None, [name])
    if plan is None:
        return await local(None)
    method, body = how
    path = _path(entity_id, "attrs", request.path_params["attr"])
    forward = distributed.Forward(method, path, body, params=_forwarded_params(request))
    return await plan.run(local, forward)


async def delete_attr(request: Request) -> Response:
    svc = services(request)
    entity_id = _entity_id(request)
    rctx = await http.request_context(request, svc.contexts)
    raw = request.path_params["attr"]
    name = "scope" if raw == "scope" else _attr_name(request, rctx)
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")
    delete_all = parse_flag(request.query_params, "deleteAll")
    change = changes.delete_attribute(entity_id, name, dataset_id, delete_all, now_iso())
    return await _attribute_write(request, "deleteAttrs", entity_id, name, change, ("DELETE", None))


async def purge_entities(request: Request) -> Response:
    """DELETE /entities (clause 5.6.21, V1.9.1): delete the matching Entities, or with
    ``drop``/``keep`` only remove attributes from them."""
    svc = services(request)
    params = request.query_params
    if not any(
        k in params
        for k in (
            "type",
            "id",
            "idPattern",
            "q",
            "scopeQ",
            "georel",
            "attrs",
            "local",
            "drop",
            "keep",
        )
    ):
        raise BadRequestData(
            "Purging needs at least one of type, id, idPattern, q, scopeQ or a geoQ"
        )
    if "drop" in params and "keep" in params:
        raise BadRequestData("drop and keep cannot be used together")
    rctx = await http.request_context(request, svc.contexts)
    query, _ = entity_query(
        {**params, "limit": str(svc.settings.max_limit), "local": "true"},
        rctx.compiled,
        http.tenant_of(request),
        svc.settings,
    )
    targets = [
        t
        for t in await distributed.read_plan(
            request, ("purgeEntity",), None, type_test(query.types), None
        )
        if t.mode != "auxiliary"
    ]

    async def local(kept: frozenset[str] | None) -> Response:
        await _purge_locally(request, query, rctx)
        return Response(status_code=204)

    if not targets:
        await existing_tenant(request)
        return await local(None)
    plan = distributed.WritePlan.whole(request, "", targets)
    forward = distributed.Forward("DELETE", "/entities", params=_forwarded_params(request))
    return await plan.run(local, forward)


async def _purge_locally(request: Request, query: EntityQuery, rctx: http.RequestContext) -> None:
    svc = services(request)
    params = request.query_params
    if not await svc.store.tenant_exists(query.tenant):
        return
    matched: list[str] = []
    while True:
        page = await svc.store.query_entities(replace(query, offset=len(matched)))
        matched += [e["id"] for e in page.entities]
        if len(page.entities) < query.limit:
            break
    attrs = {
        k: [rctx.compiled.expand(a) for a in parse_csv(params[k])]
        for k in ("drop", "keep")
        if k in params
    }
    now = now_iso()

    def change(entity_id: str) -> Change:
        if not attrs:
            return changes.delete(entity_id)
        return changes.prune(entity_id, attrs.get("drop"), attrs.get("keep"), now)

    await svc.store.write_many(query.tenant, [(i, change(i)) for i in matched])


async def attrs_not_allowed(request: Request) -> Response:
    raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")


async def missing_id(request: Request) -> Response:
    raise BadRequestData(
        f"{request.method} needs an Entity id in the path: /ngsi-ld/v1/entities/{{entityId}}"
    )


_QUERY = frozenset(
    {
        "id",
        "type",
        "idPattern",
        "attrs",
        "q",
        "csf",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "geometryProperty",
        "lang",
        "scopeQ",
        "options",
        "format",
        "limit",
        "offset",
        "count",
        "pick",
        "omit",
        "local",
        "datasetId",
        "containedBy",
        "join",
        "joinLevel",
        "entityMap",
        "orderBy",
    }
)
_RETRIEVE = frozenset(
    {
        "attrs",
        "type",
        "options",
        "format",
        "lang",
        "geometryProperty",
        "pick",
        "omit",
        "local",
        "datasetId",
        "containedBy",
        "join",
        "joinLevel",
        "entityMap",
    }
)
_WRITE = frozenset({"options", "local"})
_NONE: frozenset[str] = frozenset()

ROUTES: list[tuple[str, Any, list[str], frozenset[str] | None]] = [
    ("/entities", query_entities, ["GET"], _QUERY),
    ("/entities", create_entity, ["POST"], _WRITE),
    ("/entities", missing_id, ["PATCH", "PUT"], _WRITE),
    ("/entities", purge_entities, ["DELETE"], _QUERY | {"drop", "keep"}),
    ("/entities/{entity_id:path}/attrs/{attr}", partial_update_attr, ["PATCH"], _WRITE),
    ("/entities/{entity_id:path}/attrs/{attr}", replace_attr, ["PUT"], _WRITE),
    (
        "/entities/{entity_id:path}/attrs/{attr}",
        delete_attr,
        ["DELETE"],
        frozenset({"datasetId", "deleteAll", "lang", "local"}),
    ),
    ("/entities/{entity_id:path}/attrs", append_attrs, ["POST"], _WRITE),
    ("/entities/{entity_id:path}/attrs", attrs_not_allowed, ["GET", "PUT", "DELETE"], None),
    ("/entities/{entity_id:path}/attrs", update_attrs, ["PATCH"], _WRITE),
    ("/entities/{entity_id:path}", retrieve_entity, ["GET"], _RETRIEVE),
    ("/entities/{entity_id:path}", replace_entity, ["PUT"], _WRITE),
    ("/entities/{entity_id:path}", merge_entity, ["PATCH"], _WRITE | {"format"}),
    ("/entities/{entity_id:path}", delete_entity, ["DELETE"], frozenset({"type", "local"})),
]
