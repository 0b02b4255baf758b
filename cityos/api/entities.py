"""HTTP handlers of /ngsi-ld/v1/entities (GS CIM 009 V1.8.1 clauses 5.6, 5.7, 6.4-6.7).

Each handler parses the request, calls ``core`` and the store, and renders. No SQL, no
update semantics here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import now_iso, services
from cityos.api.params import parse_flag, parse_options, render_options
from cityos.api.querying import entity_query, parse_projection, render_entities
from cityos.core import changes
from cityos.core.entities import check_name, check_uri, parse_attribute, parse_entity, parse_fragment, parse_types
from cityos.core.operations import UpdateResult
from cityos.core.render import render_entity
from cityos.errors import BadRequestData

__all__ = ["ROUTES"]


async def _write_context(request: Request, allowed: tuple[str, ...] = (http.JSON, http.JSONLD)) -> tuple[Any, http.RequestContext]:
    http.check_content_type(request, allowed)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    return body, rctx


def _entity_id(request: Request) -> str:
    return check_uri(request.path_params["entity_id"])


def _attr_name(request: Request, rctx: http.RequestContext) -> str:
    return rctx.compiled.expand(check_name(request.path_params["attr"]))


def update_result_response(result: UpdateResult, rctx: http.RequestContext) -> Response:
    """204 when everything was updated, else 207 with an UpdateResult (clause 5.2.18)."""
    if not result.not_updated:
        return Response(status_code=204)
    body = {
        "updated": [rctx.compiled.compact(n) for n in result.updated],
        "notUpdated": [{"attributeName": rctx.compiled.compact(n), "reason": r} for n, r in result.not_updated],
    }
    return http.json_response(body, None, status=207)


async def create_entity(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity = parse_entity(body, rctx.compiled, now_iso())
    tenant = http.tenant_of(request)
    await services(request).store.write(tenant, entity["id"], changes.create(entity))
    headers = {"Location": "/ngsi-ld/v1/entities/" + quote(entity["id"], safe=":")}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return Response(status_code=201, headers=headers)


async def retrieve_entity(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    entity_id = _entity_id(request)
    tenant = await http.require_tenant(request, await svc.store.tenant_exists(http.tenant_of(request)))
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    projection = parse_projection(request.query_params, rctx.compiled)
    entity = await svc.store.get_entity(tenant, entity_id)
    opts = render_options(request.query_params, projection.attrs)
    return render_entities([entity], rctx, opts, request.query_params, projection=projection, single=True)


async def query_entities(request: Request) -> Response:
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    query, projection = entity_query(request.query_params, rctx.compiled, http.tenant_of(request), svc.settings)
    await http.require_tenant(request, await svc.store.tenant_exists(query.tenant))
    page = await svc.store.query_entities(query)
    opts = render_options(request.query_params, projection.attrs)
    headers = {} if page.count is None else {"NGSILD-Results-Count": str(page.count)}
    return render_entities(page.entities, rctx, opts, request.query_params, projection=projection, headers=headers)


async def replace_entity(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    if isinstance(body, dict) and body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id} in the URL")
    entity = parse_entity({**body, "id": entity_id} if isinstance(body, dict) else body, rctx.compiled, now_iso())
    await services(request).store.write(http.tenant_of(request), entity_id, changes.replace(entity))
    return Response(status_code=204)


async def merge_entity(request: Request) -> Response:
    body, rctx = await _write_context(request, (http.JSON, http.JSONLD, http.MERGE_PATCH))
    entity_id = _entity_id(request)
    fragment = _fragment_body(body, entity_id)
    now = now_iso()
    types = parse_types(fragment["type"], rctx.compiled) if "type" in fragment else None
    attrs = parse_fragment(fragment, rctx.compiled, now)
    scope = None
    if "scope" in fragment:
        from cityos.core.entities import parse_scope

        scope = parse_scope(fragment["scope"])
    await services(request).store.write(http.tenant_of(request), entity_id, changes.merge(entity_id, attrs, now, types, scope))
    return Response(status_code=204)


def _fragment_body(body: Any, entity_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestData("The request body must be a JSON object")
    if body.get("id", entity_id) != entity_id:
        raise BadRequestData(f"The body's id {body.get('id')} differs from {entity_id} in the URL")
    return body


async def delete_entity(request: Request) -> Response:
    entity_id = _entity_id(request)
    await services(request).store.write(http.tenant_of(request), entity_id, changes.delete(entity_id))
    return Response(status_code=204)


async def append_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    fragment = _fragment_body(body, entity_id)
    no_overwrite = "noOverwrite" in parse_options(request.query_params, frozenset({"noOverwrite"}))
    now = now_iso()
    attrs = parse_fragment(fragment, rctx.compiled, now)
    types = parse_types(fragment["type"], rctx.compiled) if "type" in fragment else None
    change = changes.append(entity_id, attrs, now, no_overwrite, types)
    outcome = await services(request).store.write(http.tenant_of(request), entity_id, change)
    return update_result_response(outcome.result, rctx)


async def update_attrs(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    fragment = _fragment_body(body, entity_id)
    now = now_iso()
    attrs = parse_fragment(fragment, rctx.compiled, now)
    outcome = await services(request).store.write(http.tenant_of(request), entity_id, changes.update(entity_id, attrs, now))
    return update_result_response(outcome.result, rctx)


async def partial_update_attr(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
    name = _attr_name(request, rctx)
    now = now_iso()
    fragments = _partial_fragments(request.path_params["attr"], body, rctx, now)
    change = changes.partial_update(entity_id, name, fragments, now)
    await services(request).store.write(http.tenant_of(request), entity_id, change)
    return Response(status_code=204)


def _partial_fragments(raw_name: str, body: Any, rctx: http.RequestContext, now: str) -> list[dict[str, Any]]:
    items = body if isinstance(body, list) else [body]
    out = []
    for item in items:
        if not isinstance(item, dict) or not item:
            raise BadRequestData("An attribute fragment must be a non-empty JSON object")
        parsed = parse_attribute(raw_name, item if "type" in item else {**item}, rctx.compiled, now)[0]
        if "type" not in item:
            parsed.pop("type", None)
        parsed.pop("createdAt", None)
        if "value" not in item and parsed.get("type") != "Relationship" and "object" not in item:
            parsed.pop("value", None)
        out.append(parsed)
    return out


async def replace_attr(request: Request) -> Response:
    body, rctx = await _write_context(request)
    entity_id = _entity_id(request)
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
    name = _attr_name(request, rctx)
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")
    delete_all = parse_flag(request.query_params, "deleteAll")
    change = changes.delete_attribute(entity_id, name, dataset_id, delete_all, now_iso())
    await svc.store.write(http.tenant_of(request), entity_id, change)
    return Response(status_code=204)


def _render_one(entity: dict[str, Any], rctx: http.RequestContext, request: Request) -> Any:
    return render_entity(entity, rctx.compiled, render_options(request.query_params))


ROUTES: list[tuple[str, Any, list[str]]] = [
    ("/entities", query_entities, ["GET"]),
    ("/entities", create_entity, ["POST"]),
    ("/entities/{entity_id:path}/attrs/{attr}", partial_update_attr, ["PATCH"]),
    ("/entities/{entity_id:path}/attrs/{attr}", replace_attr, ["PUT"]),
    ("/entities/{entity_id:path}/attrs/{attr}", delete_attr, ["DELETE"]),
    ("/entities/{entity_id:path}/attrs", append_attrs, ["POST"]),
    ("/entities/{entity_id:path}/attrs", update_attrs, ["PATCH"]),
    ("/entities/{entity_id:path}", retrieve_entity, ["GET"]),
    ("/entities/{entity_id:path}", replace_entity, ["PUT"]),
    ("/entities/{entity_id:path}", merge_entity, ["PATCH"]),
    ("/entities/{entity_id:path}", delete_entity, ["DELETE"]),
]
