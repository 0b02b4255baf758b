"""HTTP handlers of /ngsi-ld/v1/entities (GS CIM 009 V1.8.1 clauses 5.6, 5.7, 6.4-6.7).

Each handler parses the request, calls ``core`` and the store, and renders. No SQL, no
update semantics here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import existing_tenant, now_iso, services
from cityos.api.params import parse_csv, parse_flag, parse_options, render_options
from cityos.api.querying import View, entity_query, parse_projection, render_entities
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
from cityos.core.operations import UpdateResult
from cityos.errors import BadRequestData, InvalidRequest, MethodNotAllowed, ResourceNotFound
from cityos.storage.base import Change

__all__ = ["ROUTES"]


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
    await services(request).store.write(tenant, entity["id"], changes.create(entity))
    return http.created("entities", entity["id"], tenant)


async def retrieve_entity(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    entity_id = _entity_id(request)
    tenant = await existing_tenant(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    projection = parse_projection(request.query_params, rctx.compiled)
    render_options(request.query_params)  # a bad option is 400 whether or not the Entity exists
    parse_join(request.query_params)
    entity = await svc.store.get_entity(tenant, entity_id)
    if "attrs" in request.query_params and not any(
        a in entity.get("attrs", {}) for a in projection.attrs or []
    ):
        raise ResourceNotFound(
            f"Entity {entity_id} has none of the attributes {request.query_params['attrs']}"
        )
    view = View(rctx, request.query_params, projection, svc.store, tenant)
    response = await render_entities([entity], view, single=True)
    if response.body == b"{}":
        raise ResourceNotFound(f"Entity {entity_id} has nothing left after pick/omit")
    return response


async def query_entities(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    query, projection = entity_query(
        request.query_params, rctx.compiled, http.tenant_of(request), svc.settings
    )
    await http.require_tenant(request, await svc.store.tenant_exists(query.tenant))
    page = await svc.store.query_entities(query)
    headers = {} if page.count is None else {"NGSILD-Results-Count": str(page.count)}
    view = View(rctx, request.query_params, projection, svc.store, query.tenant)
    return await render_entities(page.entities, view, headers=headers)


async def replace_entity(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    if isinstance(body, dict) and body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id} in the URL")
    entity = parse_entity(
        {**body, "id": entity_id} if isinstance(body, dict) else body, rctx.compiled, now_iso()
    )
    await services(request).store.write(http.tenant_of(request), entity_id, changes.replace(entity))
    return Response(status_code=204)


async def merge_entity(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    fragment = _fragment(body, _entity_id(request), rctx)
    await services(request).store.write(
        http.tenant_of(request), fragment.entity_id, changes.merge(fragment)
    )
    return Response(status_code=204)


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
    await svc.store.write(http.tenant_of(request), entity_id, changes.delete(entity_id, types))
    return Response(status_code=204)


async def append_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request)
    fragment = _fragment(body, _entity_id(request), rctx)
    no_overwrite = "noOverwrite" in parse_options(request.query_params, frozenset({"noOverwrite"}))
    outcome = await services(request).store.write(
        http.tenant_of(request), fragment.entity_id, changes.append(fragment, no_overwrite)
    )
    return update_result_response(outcome.result)


async def update_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    fragment = _fragment(body, _entity_id(request), rctx)
    outcome = await services(request).store.write(
        http.tenant_of(request), fragment.entity_id, changes.update(fragment)
    )
    return update_result_response(outcome.result)


async def partial_update_attr(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    entity_id = _entity_id(request)
    name = _attr_name(request, rctx)
    now = now_iso()
    fragments = _partial_fragments(request.path_params["attr"], body, rctx, now)
    change = changes.partial_update(entity_id, name, fragments, now)
    await services(request).store.write(http.tenant_of(request), entity_id, change)
    return Response(status_code=204)


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
    await services(request).store.write(http.tenant_of(request), entity_id, change)
    return Response(status_code=204)


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
    await svc.store.write(http.tenant_of(request), entity_id, change)
    return Response(status_code=204)


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
    tenant = await existing_tenant(request)
    query, _ = entity_query(
        {**params, "limit": str(svc.settings.max_limit), "local": "true"},
        rctx.compiled,
        tenant,
        svc.settings,
    )
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

    await svc.store.write_many(tenant, [(i, change(i)) for i in matched])
    return Response(status_code=204)


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
